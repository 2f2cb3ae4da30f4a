"""The host's access tokens: HS256 JWTs, decoded and checked (and minted, for dev and support)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import jwt

from ..core.codes import Code
from ..core.problems import ProblemError, unauthorized

ALGORITHM = "HS256"


def mint_token(
    secret: str, sub: str, *, ttl_seconds: int = 3600, roles: list[str] | None = None
) -> str:
    if not secret:  # a process started without JWT_SECRET_KEY (it needs none) signs nothing
        raise ValueError("no JWT_SECRET_KEY: tokens cannot be signed")
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + ttl_seconds, "roles": roles or ["user"]}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must satisfy besides its signature (from the settings)."""

    secret: str = field(repr=False)
    leeway: float = 30
    audience: str | None = None
    issuer: str | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a token names: `sub` (the public id), or an older token's `user_id` (`user_key`)."""

    sqid: str | None
    user_key: uuid.UUID | None
    expires_at: float


def decode_token(token: str, rules: TokenRules) -> Subject:
    """The subject of a token the host's `get_current_user` accepts, else 401; `aud` and `iss`
    are checked only when configured (the host sets neither)."""
    if not rules.secret:  # never an HMAC check against an empty key: no token is valid
        raise _invalid("The access token is not valid; sign in again.")
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
        raise unauthorized(
            "The access token has expired; sign in again.", code=Code.TOKEN_EXPIRED
        ) from None
    except jwt.ImmatureSignatureError:
        raise _invalid("The access token is not valid yet (`iat`/`nbf` in the future).") from None
    except jwt.MissingRequiredClaimError as e:
        raise _invalid(f"The access token lacks the `{e.claim}` claim; sign in again.") from None
    except jwt.InvalidAudienceError:
        raise _invalid(f"The access token is not meant for {rules.audience!r} (`aud`).") from None
    except jwt.InvalidIssuerError:
        raise _invalid(f"The access token was not issued by {rules.issuer!r} (`iss`).") from None
    except jwt.InvalidTokenError:
        raise _invalid(
            "The access token is not valid (malformed, wrong signature or algorithm, "
            "or missing `exp`); sign in again."
        ) from None
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        # PyJWT reads these through int(), so "1795456875" and True would pass as numbers.
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _invalid(
                f"The access token's `{name}` must be a number of seconds (a NumericDate), "
                f"not {type(value).__name__}; sign in again."
            )
    kind = claims.get("type", "access")
    if kind != "access":
        raise _invalid(f"A {str(kind)[:20]!r} token cannot be used here; send an access token.")
    # As the host's `get_current_user`: an empty `sub` or `user_id` counts as absent.
    sub = claims.get("sub") or None
    legacy = claims.get("user_id") or None
    if sub is not None:
        try:
            sub.encode()
        except UnicodeEncodeError:  # JSON's "\ud800": no database value equals it
            detail = "The access token's `sub` is not text (a lone surrogate); sign in again."
            raise _invalid(detail) from None
    user_key = None
    if legacy is not None:
        try:
            user_key = uuid.UUID(str(legacy))
        except ValueError:
            if sub is None:
                raise _invalid("The access token's `user_id` is not a user key.") from None
    if sub is None and user_key is None:
        raise _invalid("The access token names no user (`sub` or `user_id`); sign in again.")
    return Subject(sub, user_key, float(claims["exp"]))


def _invalid(detail: str) -> ProblemError:
    return unauthorized(detail, code=Code.TOKEN_INVALID)
