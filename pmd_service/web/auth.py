"""Bearer authentication of requests and the moderator `target_sqid` (endpoints.py applies it
to the routes that declare it)."""

from __future__ import annotations

from aiohttp import web

from ..access import Principal, caller_of, resolve_target
from ..problems import ProblemError, unauthorized
from ..tokens import Subject, TokenRules, decode_token
from .keys import DB_POOL, PRINCIPAL, SETTINGS


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Send the token as `Authorization: Bearer <token>`.", "invalid_request")
    if not token.isascii():  # a JWT is ASCII; anything else cannot be one (nor be encoded)
        raise unauthorized("The access token is not valid; sign in again.")
    return token.strip()


def required_bearer_token(request: web.Request) -> str:
    token = bearer_token(request)
    if token is None:
        raise unauthorized("This endpoint needs `Authorization: Bearer <token>`.", "")
    return token


def token_subject(request: web.Request, token: str) -> Subject:
    """Whom a valid token names (401 for any other), before any database lookup."""
    settings = request.app[SETTINGS]
    rules = TokenRules(
        settings.jwt_secret_key,
        settings.jwt_leeway_seconds,
        settings.jwt_audience,
        settings.jwt_issuer,
    )
    return decode_token(token, rules)


async def principal_of(request: web.Request, subject: Subject) -> Principal:
    """The caller a token's subject is and the target the query names, if the caller may act
    on that target's posts (else 401, 403 or 404)."""
    pool = request.app[DB_POOL]
    caller = await caller_of(pool, subject)
    target = await resolve_target(pool, caller, request.query.get("target_sqid"))
    return Principal(caller=caller, target=target, token_expires_at=subject.expires_at)


async def authenticate(request: web.Request, token: str) -> Principal:
    return await principal_of(request, token_subject(request, token))


async def retarget(request: web.Request, body_target: str | None) -> Principal:
    """The principal, honouring a `target_sqid` sent in a JSON body instead of the query."""
    principal = request[PRINCIPAL]
    if body_target is None:
        return principal
    query_target = request.query.get("target_sqid")
    if query_target is not None and query_target != body_target:
        raise ProblemError(
            400,
            "bad-request",
            "Bad request",
            "`target_sqid` in the query and in the body differ; send it once.",
        )
    target = await resolve_target(request.app[DB_POOL], principal.caller, body_target)
    return Principal(principal.caller, target, principal.token_expires_at)
