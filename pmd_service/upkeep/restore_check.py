"""`python -m pmd_service check-restore`: what a restore left inconsistent between the rows,
the ZIPs and the queue, changing nothing: every job kind's checks (jobs/restore.py) in one
read-only snapshot, and the stored files no ready row names."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix

from ..core.db import SET_NO_IDLE_BOUND
from ..core.problems import ProblemError
from ..features.registry import JOB_KINDS as KINDS
from ..jobs.context import WorkerState, state
from ..jobs.kind import JobKind
from ..jobs.restore import Look, RestoreCheck
from ..storage.object_tidy import own_objects, unnamed_paths
from ..storage.zip_files import STORE_ERRORS, ZipMissing
from ..storage.zip_names import EXPORTS_FOLDER, ZIP_PREFIX, is_export_part
from .cleanup import TEMP_MAX_AGE_SECONDS, old_export_files, old_files

FILE_UNNAMED = "file-unnamed"
_EXPORTS = f"{ZIP_PREFIX}{EXPORTS_FOLDER}/"
# HEADs (or stats) at once while the ready rows' files are looked for.
LOOKUPS_AT_ONCE = 16


class CheckFailed(Exception):
    """The check could not be made (the store does not answer): nothing is reported."""


@dataclass(frozen=True)
class Finding:
    check: str  # the check's name
    id: str  # the row's id (a schedule's: its user's), or the stored file's path
    detail: str
    repair: str  # what the service does about it by itself


@dataclass(frozen=True)
class RestoreReport:
    findings: list[Finding]
    looked_at: dict[str, int]  # each check's name → the rows (or files) it looked at

    @property
    def consistent(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        found = Counter(finding.check for finding in self.findings)
        return {name: found[name] for name in self.looked_at}

    def as_json(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "findings": [asdict(f) for f in self.findings],
            "counts": self.counts(),
            "looked_at": self.looked_at,
        }

    def render(self) -> str:
        looked = ", ".join(f"{name} {n}" for name, n in self.looked_at.items())
        if self.consistent:
            return f"consistent: no finding (looked at: {looked})"
        found = ", ".join(f"{name} {n}" for name, n in self.counts().items() if n)
        lines = [
            f"{f.check}: {f.detail}; the service repairs it: {f.repair}" for f in self.findings
        ]
        total = len(self.findings)
        last = f"{total} finding{'s' * (total != 1)} ({found}; looked at: {looked})"
        return "\n".join([*lines, last])


async def check_restore(ctx: dict[str, Any]) -> RestoreReport:
    """Every check of every job kind, and the stored files no ready row names."""
    st = state(ctx)
    files = await _stored_files(st)
    held = await held_jobs(ctx["redis"])
    findings: list[Finding] = []
    looked_at: dict[str, int] = {}
    try:
        async with (
            st.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            await conn.execute(SET_NO_IDLE_BOUND)  # the store is asked between the statements
            for kind in KINDS:
                for check in kind.upkeep.restore_checks:
                    rows = [dict(r) for r in await conn.fetch(check.sql, *check.args)]
                    looked_at[check.name] = len(rows)
                    findings += await _look(st, kind, check, rows, held)
            unnamed = await unnamed_paths(conn, files)
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError) as exc:
        raise CheckFailed(
            f"the database's schema is older than this release ({exc}): run `python -m "
            "pmd_service migrate` first (the service itself migrates when it starts)"
        ) from None
    looked_at[FILE_UNNAMED] = len(files)
    repair = f"the daily cleanup removes it once it is {TEMP_MAX_AGE_SECONDS // 60} minutes old"
    findings += [
        Finding(FILE_UNNAMED, path, f"the stored file {path} is named by no ready row", repair)
        for path in sorted(unnamed)
    ]
    return RestoreReport(findings, looked_at)


async def _look(
    st: WorkerState,
    kind: JobKind,
    check: RestoreCheck,
    rows: list[dict[str, Any]],
    held: set[str],
) -> list[Finding]:
    if check.look is Look.FILE:
        gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def contradiction(row: dict[str, Any]) -> str | None:
            async with gate:
                return await _file_contradiction(st, row)

        found = await asyncio.gather(*(contradiction(row) for row in rows))
    elif check.look is Look.JOB:
        found = [
            None if _has_job(kind, row["id"], held) else ", but no job for it is queued or running"
            for row in rows
        ]
    else:
        found = [""] * len(rows)
    return [
        Finding(check.name, str(row["id"]), _says(check, row) + clause, check.repair)
        for row, clause in zip(rows, found, strict=True)
        if clause is not None
    ]


def _says(check: RestoreCheck, row: dict[str, Any]) -> str:
    shown = {
        name: f"{value:%Y-%m-%d %H:%M} UTC" if isinstance(value, datetime) else value
        for name, value in row.items()
    }
    return check.says.format(**shown)


async def _file_contradiction(st: WorkerState, row: dict[str, Any]) -> str | None:
    """What the row's file says against the row (gone, another size), None when it agrees."""
    path = row["file_path"]
    try:
        stored = await st.zips.locate(path or "")
    except ZipMissing:
        return f", but its file {path} is gone"
    except ProblemError as exc:
        raise CheckFailed(exc.detail) from None
    expected = row.get("file_size_bytes")
    if expected is not None and stored.size != expected:  # `locate` would refuse it
        return f", but its file {path} holds {stored.size} bytes, not {expected}"
    return None


def _has_job(kind: JobKind, row_id: uuid.UUID, held: set[str]) -> bool:
    """Whether a job for the row is queued or running: its plain id, or a retake's."""
    plain = kind.queue.job_id(row_id)
    return plain in held or any(job.startswith(f"{plain}:") for job in held)


async def held_jobs(redis: ArqRedis) -> set[str]:
    """The ids of the jobs arq holds: queued (deferred ones too) or running."""
    queued = await redis.zrange(default_queue_name, 0, -1)
    running = [key async for key in redis.scan_iter(match=f"{in_progress_key_prefix}*")]
    return {job.decode() for job in queued} | {
        key.decode().removeprefix(in_progress_key_prefix) for key in running
    }


async def _stored_files(st: WorkerState) -> set[str]:
    """The stored paths of the finished ZIPs and export parts in the folder or bucket."""
    if st.zips.store is not None:
        try:
            return await own_objects(st.zips.store, None)
        except STORE_ERRORS as exc:
            raise CheckFailed(f"the bucket cannot be listed: {exc}") from None
    root, now = st.settings.zip_path, time.time()
    _, zips = await asyncio.to_thread(old_files, root, now, float("-inf"))
    exports = await asyncio.to_thread(old_export_files, root, now, float("-inf"))
    stored = {f"{ZIP_PREFIX}{p.relative_to(root).as_posix()}" for p in [*zips, *exports]}
    return {path for path in stored if not path.startswith(_EXPORTS) or is_export_part(path)}
