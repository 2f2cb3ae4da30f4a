"""Bearer authentication of requests and the moderator `target_sqid`."""

from __future__ import annotations

from aiohttp import web

from ..core.codes import Code
from ..core.problems import bad_request, unauthorized
from ..host.access import Principal, UserLoader, caller_from_token, resolve_target
from ..host.tokens import TokenRules
from . import tickets
from .keys import DB_POOL, PRINCIPAL, SETTINGS
from .validation import refuse_nul


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(
            "Send the token as `Authorization: Bearer <token>`.",
            "invalid_request",
            code=Code.TOKEN_INVALID,
        )
    if not token.isascii():  # a JWT is ASCII; anything else cannot be one (nor be encoded)
        raise unauthorized("The access token is not valid; sign in again.", code=Code.TOKEN_INVALID)
    return token.strip()


async def authenticate(
    request: web.Request, token: str, load: UserLoader | None = None
) -> Principal:
    pool = request.app[DB_POOL]
    settings = request.app[SETTINGS]
    rules = TokenRules(
        settings.jwt_secret_key,
        settings.jwt_leeway_seconds,
        settings.jwt_audience,
        settings.jwt_issuer,
    )
    caller, exp = await caller_from_token(pool, token, rules, load)
    target_sqid = request.query.get("target_sqid")
    refuse_nul(target_sqid, "target_sqid")
    target = await resolve_target(pool, caller, target_sqid, load)
    return Principal(caller=caller, target=target, token_expires_at=exp)


async def bearer(request: web.Request, load: UserLoader | None = None) -> Principal:
    """The principal of `Authorization: Bearer`, which this endpoint requires."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized(
            "This endpoint needs `Authorization: Bearer <token>`.", "", code=Code.TOKEN_MISSING
        )
    return await authenticate(request, token, load)


async def retarget(request: web.Request, body_target: str | None) -> Principal:
    """The principal, honouring a `target_sqid` sent in a JSON body instead of the query."""
    principal = request[PRINCIPAL]
    if body_target is None:
        return principal
    query_target = request.query.get("target_sqid")
    if query_target is not None and query_target != body_target:
        raise bad_request(
            "`target_sqid` in the query and in the body differ; send it once.",
            code=Code.TARGET_MISMATCH,
        )
    target = await resolve_target(request.app[DB_POOL], principal.caller, body_target)
    return Principal(principal.caller, target, principal.token_expires_at)


async def bearer_or_ticket(request: web.Request, load: UserLoader | None = None) -> Principal:
    """The Bearer header, or else `?ticket=` from POST /api/pmd/bdr/sse-ticket."""
    token = bearer_token(request)
    if token is not None:
        return await authenticate(request, token, load)
    ticket = request.query.get("ticket")
    if ticket is None:
        raise unauthorized(
            "This needs `Authorization: Bearer <token>`, or (for a browser's own request) "
            "`?ticket=` from POST /api/pmd/bdr/sse-ticket.",
            "",
            code=Code.TOKEN_MISSING,
        )
    return await tickets.redeem(request, ticket, load)
