"""The export's job kind: what the shared driver needs to claim an export, build its parts and
tell the user. An export runs for as long as its parts take; a run taken over keeps every part
already published."""

from __future__ import annotations

import contextlib
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
from .job_run import ExportRun
from .job_sql import (
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
from .mail import SQL_EXPORT_EMAILS_OWED, send_export_email
from .recurring import start_due_exports
from .restore import RESTORE_CHECKS

if TYPE_CHECKING:
    from ..core.db import Conn


class ExportKind:
    name = "export"
    label = "export"
    noun = "export"
    sql_claim = SQL_CLAIM
    sql_release = SQL_RELEASE_FOR_RETRY
    sql_lock_owned = SQL_LOCK_OWNED
    sql_stuck_pending = SQL_STUCK_PENDING
    sql_orphaned = SQL_ORPHANED
    restore_checks = RESTORE_CHECKS
    sql_emails_owed = SQL_EXPORT_EMAILS_OWED

    def run(self, st: WorkerState, claim: Claim) -> ExportRun:
        return ExportRun(st, claim.id, claim.token, claim.row)

    def attempt_scope(self, st: WorkerState) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # each part takes one of the worker's export slots

    async def send_email(self, pool: asyncpg.Pool, settings: Settings, row_id: uuid.UUID) -> bool:
        return await send_export_email(pool, settings, row_id)

    async def enqueue(self, redis: ArqRedis, row_id: uuid.UUID, retake: str | None) -> bool:
        return await queue.enqueue_export(redis, row_id, retake)

    def job_id(self, row_id: uuid.UUID) -> str:
        return queue.export_job_id(row_id)

    async def swept(self, st: WorkerState, redis: ArqRedis) -> int:
        return await start_due_exports(st, redis)  # recurring exports that are due

    async def plan_expiry(self, conn: Conn, at: datetime, days: int, settings: Settings) -> Expiry:
        expire = {r["id"]: tuple(r["parts"]) for r in await conn.fetch(SQL_PLAN_EXPIRE, at)}
        cooldown = float(settings.export_cooldown_seconds)
        purge = await conn.fetch(SQL_PLAN_PURGE, at, days, cooldown, list(expire))
        return Expiry(expire, frozenset(r["id"] for r in purge))

    async def expire(
        self, pool: asyncpg.Pool, at: datetime, plan: Expiry
    ) -> dict[uuid.UUID, tuple[str | None, ...]]:
        rows = await pool.fetch(SQL_EXPIRE, at, list(plan.expire))
        return {r["id"]: tuple(r["parts"]) for r in rows}

    async def purge(
        self, pool: asyncpg.Pool, at: datetime, days: int, settings: Settings, plan: Expiry
    ) -> frozenset[uuid.UUID]:
        cooldown = float(settings.export_cooldown_seconds)
        rows = await pool.fetch(SQL_PURGE, at, days, cooldown, list(plan.purge))
        return frozenset(r["id"] for r in rows)

    def summary(self, expiry: Expiry) -> dict[str, int]:
        return {"export_parts_expired": sum(map(len, expiry.expire.values()))}


EXPORT = ExportKind()


async def process_export(ctx: dict[str, Any], export_id: str) -> str:
    return await process(ctx, EXPORT, export_id)
