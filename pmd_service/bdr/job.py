"""The BDR's job kind: what the shared driver needs to claim a BDR, build its one ZIP, publish
it atomically and tell the user."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from arq.connections import ArqRedis

from ..core.settings import Settings
from ..jobs.context import WorkerState
from ..jobs.driver import process
from ..jobs.kind import Claim, Expiry
from . import queue
from .job_run import Run
from .job_sql import (
    SQL_ANNOUNCE_LEFT,
    SQL_CLAIM,
    SQL_EXPIRE,
    SQL_LOCK_OWNED,
    SQL_ORPHANED,
    SQL_PLAN_EXPIRE,
    SQL_PLAN_PURGE,
    SQL_PURGE,
    SQL_RELEASE_FOR_RETRY,
    SQL_STUCK_PENDING,
)
from .mail import SQL_EMAILS_OWED, send_bdr_email
from .restore import RESTORE_CHECKS

if TYPE_CHECKING:
    from ..core.db import Conn


class BdrKind:
    name = "bdr"
    label = "BDR"
    noun = "download"
    sql_claim = SQL_CLAIM
    sql_release = SQL_RELEASE_FOR_RETRY
    sql_lock_owned = SQL_LOCK_OWNED
    sql_stuck_pending = SQL_STUCK_PENDING
    sql_orphaned = SQL_ORPHANED
    restore_checks = RESTORE_CHECKS
    sql_emails_owed = SQL_EMAILS_OWED

    def run(self, st: WorkerState, claim: Claim) -> Run:
        return Run(st, claim.id, claim.token, claim.row)

    def attempt_scope(self, st: WorkerState) -> AbstractContextManager[None]:
        return st.building_bdr()  # the exports' parts wait while it is built

    async def send_email(self, pool: asyncpg.Pool, settings: Settings, row_id: uuid.UUID) -> bool:
        return await send_bdr_email(pool, settings, row_id)

    async def enqueue(self, redis: ArqRedis, row_id: uuid.UUID, retake: str | None) -> bool:
        return await queue.enqueue_bdr(redis, row_id, retake)

    def job_id(self, row_id: uuid.UUID) -> str:
        return queue.job_id(row_id)

    async def swept(self, st: WorkerState, redis: ArqRedis) -> int:
        await st.pool.execute(SQL_ANNOUNCE_LEFT, float(st.settings.job_pending_grace_seconds))
        return 0

    async def plan_expiry(self, conn: Conn, at: datetime, days: int, settings: Settings) -> Expiry:
        rows = await conn.fetch(SQL_PLAN_EXPIRE, at)
        expire: dict[uuid.UUID, tuple[str | None, ...]] = {r["id"]: (r["file_path"],) for r in rows}
        purge = await conn.fetch(SQL_PLAN_PURGE, at, days, list(expire))
        return Expiry(expire, frozenset(r["id"] for r in purge))

    async def expire(
        self, pool: asyncpg.Pool, at: datetime, plan: Expiry
    ) -> dict[uuid.UUID, tuple[str | None, ...]]:
        rows = await pool.fetch(SQL_EXPIRE, at, list(plan.expire))
        return {r["id"]: (r["file_path"],) for r in rows}

    async def purge(
        self, pool: asyncpg.Pool, at: datetime, days: int, settings: Settings, plan: Expiry
    ) -> frozenset[uuid.UUID]:
        return frozenset(r["id"] for r in await pool.fetch(SQL_PURGE, at, days, list(plan.purge)))

    def summary(self, expiry: Expiry) -> dict[str, int]:
        return {"expired": len(expiry.expire)}


BDR = BdrKind()


async def process_bdr(ctx: dict[str, Any], bdr_id: str) -> str:
    return await process(ctx, BDR, bdr_id)
