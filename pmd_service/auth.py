"""Bearer JWT authentication (HS256 only) and the moderator `target_sqid` rules."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import jwt
from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import ProblemError, forbidden, not_found
from .keys import DB_POOL, PRINCIPAL, SELF_AUTHENTICATED, SETTINGS

ALGORITHM = "HS256"
STAFF_ROLES = frozenset({"moderator", "owner"})
NOT_STAFF = "Only moderators may act on another user's posts (`target_sqid`)."

_USER_COLUMNS = """
SELECT id, public_sqid, handle, email, roles, deactivated,
       coalesce(banned_until > now(), false) AS banned, banned_until
FROM users
"""
SQL_USER_BY_SQID = _USER_COLUMNS + "WHERE public_sqid = $1"
# Tokens the host minted before `sub` carry only `user_id`: the user's `user_key`.
SQL_USER_BY_KEY = _USER_COLUMNS + "WHERE user_key = $1"
# The callers and targets of every open stream of a process, re-checked in one query.
SQL_USERS_BY_ID = _USER_COLUMNS + "WHERE id = ANY($1::int[])"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    public_sqid: str
    handle: str
    email: str
    roles: frozenset[str]

    @property
    def is_staff(self) -> bool:
        return not STAFF_ROLES.isdisjoint(self.roles)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        roles = row["roles"] if isinstance(row["roles"], list) else []
        return cls(
            id=row["id"],
            public_sqid=row["public_sqid"],
            handle=row["handle"],
            email=row["email"],
            roles=frozenset(r for r in roles if isinstance(r, str)),
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls (`caller`), whose posts they act on (`target`), and until when."""

    caller: User
    target: User
    token_expires_at: float

    @property
    def as_moderator(self) -> bool:
        return self.caller.id != self.target.id


def mint_token(
    secret: str, sub: str, *, ttl_seconds: int = 3600, roles: list[str] | None = None
) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + ttl_seconds, "roles": roles or ["user"]}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def unauthorized(detail: str, error: str = "invalid_token") -> ProblemError:
    challenge = f'Bearer realm="pmd", error="{error}"'
    if error == "":
        challenge = 'Bearer realm="pmd"'
    return ProblemError(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge}
    )


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must satisfy besides its signature (from the settings)."""

    secret: str = field(repr=False)
    leeway: float = 30
    audience: str | None = None
    issuer: str | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a token names: `sub` (the public id), or, in the host's older tokens, only the
    legacy `user_id` claim (the user's `user_key`)."""

    sqid: str | None
    user_key: uuid.UUID | None
    expires_at: float


def decode_token(token: str, rules: TokenRules) -> Subject:
    """The subject of a valid access token; 401 otherwise. Only HS256, never `none`.

    Accepts what the host's `get_current_user` accepts: `sub`, or a legacy `user_id`; refuses
    its refresh tokens (`type` other than `access`). The leeway absorbs clock skew between the
    host that minted the token and this service (exp, iat, nbf). `aud` and `iss` are checked
    only when configured: the host sets neither.
    """
    require = ["exp", *(["aud"] if rules.audience else []), *(["iss"] if rules.issuer else [])]
    try:
        claims = jwt.decode(
            token,
            rules.secret,
            algorithms=[ALGORITHM],
            options={"require": require, "verify_aud": rules.audience is not None},
            leeway=rules.leeway,
            audience=rules.audience,
            issuer=rules.issuer,
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("The access token has expired; sign in again.") from None
    except jwt.ImmatureSignatureError:
        raise unauthorized(
            "The access token is not valid yet (`iat`/`nbf` in the future)."
        ) from None
    except jwt.MissingRequiredClaimError as e:
        raise unauthorized(
            f"The access token lacks the `{e.claim}` claim; sign in again."
        ) from None
    except jwt.InvalidAudienceError:
        raise unauthorized(
            f"The access token is not meant for {rules.audience!r} (`aud`)."
        ) from None
    except jwt.InvalidIssuerError:
        raise unauthorized(
            f"The access token was not issued by {rules.issuer!r} (`iss`)."
        ) from None
    except jwt.InvalidTokenError:
        raise unauthorized(
            "The access token is not valid (malformed, wrong signature or algorithm, "
            "or missing `exp`); sign in again."
        ) from None
    kind = claims.get("type", "access")
    if kind != "access":
        raise unauthorized(f"A {str(kind)[:20]!r} token cannot be used here; send an access token.")
    sub = claims.get("sub")
    legacy = claims.get("user_id")
    if sub is not None and (not isinstance(sub, str) or not sub):
        raise unauthorized("The access token's `sub` must be the user's public id.")
    user_key = None
    if legacy is not None:
        try:
            user_key = uuid.UUID(str(legacy))
        except ValueError:
            if sub is None:
                raise unauthorized("The access token's `user_id` is not a user key.") from None
    if sub is None and user_key is None:
        raise unauthorized("The access token names no user (`sub` or `user_id`); sign in again.")
    return Subject(sub, user_key, float(claims["exp"]))


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


async def load_user(pool: asyncpg.Pool, sqid: str) -> asyncpg.Record | None:
    # Not a sqid at all (too long, or a NUL PostgreSQL text cannot hold): nobody has it.
    if len(sqid) > 16 or "\x00" in sqid:
        return None
    row: asyncpg.Record | None = await pool.fetchrow(SQL_USER_BY_SQID, sqid)
    return row


async def caller_from_token(
    pool: asyncpg.Pool, token: str, rules: TokenRules
) -> tuple[User, float]:
    subject = decode_token(token, rules)
    row = await load_user(pool, subject.sqid) if subject.sqid is not None else None
    if row is None and subject.user_key is not None:
        # As the host does: `sub` first, then the legacy claim.
        row = await pool.fetchrow(SQL_USER_BY_KEY, subject.user_key)
    if row is None:
        raise unauthorized("The access token names a user that does not exist; sign in again.")
    denial = account_denial(row)
    if denial is not None:
        raise denial
    return User.from_row(row), subject.expires_at


def account_denial(row: asyncpg.Record) -> ProblemError | None:
    """Why this account (a row of `_USER_COLUMNS`) may not use the service now, if it may not.

    Applied to every token, every ticket redeemed and, every few seconds, to the callers of
    open streams (sse/access.py): one rule, so the three cannot drift apart.
    """
    if row["deactivated"]:
        return unauthorized("This account is deactivated.")
    if row["banned"]:
        until = row["banned_until"].isoformat()
        return forbidden(f"This account is banned until {until}; bulk tools are unavailable.")
    return None


def target_denial(caller: User, target: User) -> str | None:
    """Why `caller` may not act on `target`'s posts (a 403's detail), or None when it may."""
    if caller.id == target.id:
        return None
    if not caller.is_staff:
        return NOT_STAFF
    if "owner" in target.roles:
        return "An owner's posts can be managed only by that owner."
    # Moderators do not moderate each other: that is the site owner's call.
    if target.is_staff and "owner" not in caller.roles:
        return "A moderator's posts can be managed only by that moderator or an owner."
    return None


async def resolve_target(pool: asyncpg.Pool, caller: User, target_sqid: str | None) -> User:
    if target_sqid is None or target_sqid == caller.public_sqid:
        return caller
    if not caller.is_staff:  # before the lookup: a non-moderator learns nothing of who exists
        raise forbidden(NOT_STAFF)
    row = await load_user(pool, target_sqid)
    if row is None:
        raise not_found(f"No user has the public id {target_sqid[:32]!r}.")
    target = User.from_row(row)
    denial = target_denial(caller, target)
    if denial is not None:
        raise forbidden(denial)
    return target


async def authenticate(request: web.Request, token: str) -> Principal:
    pool = request.app[DB_POOL]
    settings = request.app[SETTINGS]
    rules = TokenRules(
        settings.jwt_secret_key,
        settings.jwt_leeway_seconds,
        settings.jwt_audience,
        settings.jwt_issuer,
    )
    caller, exp = await caller_from_token(pool, token, rules)
    target = await resolve_target(pool, caller, request.query.get("target_sqid"))
    return Principal(caller=caller, target=target, token_expires_at=exp)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/pmd/"):
        return await handler(request)
    route = request.match_info.route
    if request.method == "OPTIONS":
        return await handler(request)  # a CORS preflight (answered by aiohttp-cors), or a 405
    if route.resource is None or route.name in request.app[SELF_AUTHENTICATED]:
        return await handler(request)  # unknown route: let it 404; self-authenticated: its own
    token = bearer_token(request)
    if token is None:
        raise unauthorized("This endpoint needs `Authorization: Bearer <token>`.", "")
    request[PRINCIPAL] = await authenticate(request, token)
    return await handler(request)


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
