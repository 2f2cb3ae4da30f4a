"""Open streams keep their access only while the accounts behind them still allow it: a stream
authorised when it opens may stay open as long as its token lasts (hours), so every
SSE_ACCESS_CHECK_SECONDS the hub asks here, in one query for all open streams of the process,
which (caller, target) pairs lost their access, by the rules of a new request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg

from ..core.codes import Code
from ..host.access import SQL_USERS_BY_ID, User, account_denial, target_denial
from . import frames

Pair = tuple[int, int]  # (caller id, target id) of one or more open streams
VERDICTS_A_TURN = 100  # ~10 us each


@dataclass(frozen=True, slots=True)
class Revoked:
    """Why a stream ends: the status a new request would now get, and its detail."""

    reason: str  # deactivated | banned | not_allowed | user_gone
    status: int
    detail: str

    def frame(self) -> bytes:  # its fields, in order, are the event's data
        return frames.event(b"access_revoked", self)


_CALLER_GONE = Revoked(
    "user_gone", 401, "The account this stream was opened with no longer exists; sign in again."
)
_TARGET_GONE = Revoked("user_gone", 404, "The user whose downloads this stream showed is gone.")


def verdict(caller_row: asyncpg.Record | None, target_row: asyncpg.Record | None) -> Revoked | None:
    if caller_row is None:
        return _CALLER_GONE
    denial = account_denial(caller_row)
    if denial is not None:
        return Revoked(
            "deactivated" if denial.reason == Code.ACCOUNT_DEACTIVATED else "banned",
            denial.status,
            denial.detail,
        )
    if target_row is None:
        return _TARGET_GONE
    detail = target_denial(User.from_row(caller_row), User.from_row(target_row))
    if detail is not None:
        return Revoked("not_allowed", 403, detail)
    return None


async def revocations(pool: asyncpg.Pool, pairs: Collection[Pair]) -> dict[Pair, Revoked]:
    """The pairs among `pairs` that may no longer stream, each with why."""
    ids = list({user_id for pair in pairs for user_id in pair})
    rows = {row["id"]: row for row in await pool.fetch(SQL_USERS_BY_ID, ids)}
    out = {}
    for n, (caller_id, target_id) in enumerate(pairs):
        if n and n % VERDICTS_A_TURN == 0:
            await asyncio.sleep(0)  # a process's every stream at once: the events go meanwhile
        revoked = verdict(rows.get(caller_id), rows.get(target_id))
        if revoked is not None:
            out[caller_id, target_id] = revoked
    return out
