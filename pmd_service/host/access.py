"""Who calls, whose posts they act on, and whether they may: the rules every request, ticket and
open stream is held to (no HTTP here; api/auth.py applies them to requests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from ..core.codes import Code
from ..core.problems import ProblemError, forbidden, not_found, unauthorized
from .tokens import TokenRules, decode_token

STAFF_ROLES = frozenset({"moderator", "owner"})
NOT_STAFF = "Only moderators may act on another user's posts (`target_sqid`)."
OWNERS_ONLY = "An owner's posts can be managed only by that owner."
MODERATORS_ONLY = "A moderator's posts can be managed only by that moderator or an owner."
# The host stores a permanent ban as 9999-12-31T23:59:59Z (a far-future date, never NULL).
PERMANENT_BAN_YEAR = 9999
# The code of each refusal `target_denial` gives, and what the host's app reads beside it.
_DENIALS: dict[str, tuple[Code, dict[str, str]]] = {
    NOT_STAFF: (Code.FORBIDDEN_ROLE, {"required": "moderator"}),
    OWNERS_ONLY: (Code.OWNER_PROTECTED, {}),
    MODERATORS_ONLY: (Code.MODERATOR_PROTECTED, {}),
}

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
# A ticket's caller who has no public id (the host's column allows NULL).
SQL_USER_BY_ID = _USER_COLUMNS + "WHERE id = $1"
# The callers of many stream openings at once (sse/user_lookups.py).
SQL_USERS_BY_SQIDS = _USER_COLUMNS + "WHERE public_sqid = ANY($1::text[])"

# A user's row by public id, or None: load_user, or what batches the lookups of openings.
UserLoader = Callable[[str], Awaitable[asyncpg.Record | None]]


@dataclass(frozen=True, slots=True)
class User:
    id: int
    public_sqid: str | None  # NULL in the host's column for some users (older tokens name them)
    handle: str
    email: str
    roles: frozenset[str]

    @property
    def is_staff(self) -> bool:
        return not STAFF_ROLES.isdisjoint(self.roles)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        roles = row["roles"] if isinstance(row["roles"], list) else []
        strings = frozenset(r for r in roles if isinstance(r, str))
        return cls(row["id"], row["public_sqid"], row["handle"], row["email"], strings)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls (`caller`), whose posts they act on (`target`), and until when."""

    caller: User
    target: User
    token_expires_at: float

    @property
    def as_moderator(self) -> bool:
        return self.caller.id != self.target.id


def valid_sqid(sqid: str) -> bool:
    # Not a sqid at all (too long, or a NUL PostgreSQL text cannot hold): nobody has it.
    return len(sqid) <= 16 and "\x00" not in sqid


async def load_user(pool: asyncpg.Pool, sqid: str) -> asyncpg.Record | None:
    if not valid_sqid(sqid):
        return None
    return await pool.fetchrow(SQL_USER_BY_SQID, sqid)


async def load_user_by_id(pool: asyncpg.Pool, user_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow(SQL_USER_BY_ID, user_id)


async def caller_from_token(
    pool: asyncpg.Pool, token: str, rules: TokenRules, load: UserLoader | None = None
) -> tuple[User, float]:
    subject = decode_token(token, rules)
    row = None
    if subject.sqid is not None:
        row = await (load(subject.sqid) if load else load_user(pool, subject.sqid))
    if row is None and subject.user_key is not None:
        # As the host does: `sub` first, then the legacy claim.
        row = await pool.fetchrow(SQL_USER_BY_KEY, subject.user_key)
    caller = signed_in(row, "The access token names a user that does not exist; sign in again.")
    return caller, subject.expires_at


def signed_in(row: asyncpg.Record | None, nobody: str) -> User:
    """The user a token or ticket names: 401 saying `nobody` when none, else any account denial."""
    if row is None:
        raise unauthorized(nobody, code=Code.TOKEN_INVALID)
    if (denial := account_denial(row)) is not None:
        raise denial
    return User.from_row(row)


def account_denial(row: asyncpg.Record) -> ProblemError | None:
    """Why this account may not use the service now, for tokens, tickets and open streams."""
    if row["deactivated"]:
        return forbidden("This account is deactivated.", code=Code.ACCOUNT_DEACTIVATED)
    if row["banned"]:
        until = row["banned_until"]
        permanent = until.year >= PERMANENT_BAN_YEAR
        return forbidden(
            "This account is banned for good; bulk tools are unavailable."
            if permanent
            else f"This account is banned until {until.isoformat()}; bulk tools are unavailable.",
            code=Code.ACCOUNT_BANNED,
            details={"banned_until": until.isoformat(), "permanent": permanent},
        )
    return None


def refusal(denial: str) -> ProblemError:
    """The 403 of a `target_denial`."""
    code, details = _DENIALS[denial]
    return forbidden(denial, code=code, details=details)


def target_denial(caller: User, target: User) -> str | None:
    """Why `caller` may not act on `target`'s posts (a 403's detail), or None when it may."""
    if caller.id == target.id:
        return None
    if not caller.is_staff:
        return NOT_STAFF
    if "owner" in target.roles:
        return OWNERS_ONLY
    # Moderators do not moderate each other: that is the site owner's call.
    if target.is_staff and "owner" not in caller.roles:
        return MODERATORS_ONLY
    return None


async def resolve_target(
    pool: asyncpg.Pool, caller: User, target_sqid: str | None, load: UserLoader | None = None
) -> User:
    """The user `caller` acts for: itself, or a moderator's `target_sqid` (looked up by `load`)."""
    if target_sqid is None or target_sqid == caller.public_sqid:
        return caller
    if not caller.is_staff:  # before the lookup: a non-moderator learns nothing of who exists
        raise refusal(NOT_STAFF)
    row = await (load(target_sqid) if load else load_user(pool, target_sqid))
    if row is None:
        raise not_found(
            f"No user has the public id {target_sqid[:32]!r}.", code=Code.TARGET_NOT_FOUND
        )
    target = User.from_row(row)
    if (denial := target_denial(caller, target)) is not None:
        raise refusal(denial)
    return target
