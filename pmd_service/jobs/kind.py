"""A claimed job kind: what a feature tells the shared driver (jobs/driver.py) about its job.

A feature (bdr/, exports/) implements `JobKind` in one module: its name, its claim (one UPDATE
… RETURNING that only one run can win; every later write of the run is guarded by the claim
token), the run that plans its archives and publishes them, its email, and what the sweep and
the cleanup do with its rows. The driver, the sweep and the cleanup loop over the kinds and
hold no feature's SQL.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncGenerator, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import asyncpg
from arq.connections import ArqRedis

from ..mail.notify import Emailed
from ..zipbuild.build import BuildResult, FileDigest, Trailing
from ..zipbuild.content import Artwork
from ..zipbuild.json_files import Extras
from .failures import PermanentError
from .restore import RestoreCheck

if TYPE_CHECKING:
    from ..core.db import Conn
    from ..core.settings import Settings
    from .context import WorkerState

# The statements every claimed job shares, each feature's SQL completing them with its table.
# Which row a run may claim: pending, or processing but held by no run (released for a retry)
# or by a run whose heartbeat stopped $3 seconds ago (its worker is gone).
CLAIMABLE = """(status = 'pending'
       OR (status = 'processing'
           AND (claim_token IS NULL OR heartbeat_at < now() - make_interval(secs => $3))))"""
# Row $1 still held by the run of claim token $2.
OWNED = "id = $1 AND claim_token = $2 AND status = 'processing'"
# Hands row $1 back for a retry in $3 seconds, if the run of token $2 still holds it.
RELEASE_FOR_RETRY = f"""
SET claim_token = NULL, heartbeat_at = NULL, retry_at = now() + make_interval(secs => $3)
WHERE {OWNED}
"""
SQL_OWNER = "SELECT handle, public_sqid FROM users WHERE id = $1"


def stuck_pending(table: str, batch: int) -> str:
    """For the sweep: the rows of `table` pending for $1 seconds, the oldest `batch` of them."""
    return f"""
SELECT id, extract(epoch FROM now() - created_at)::float8 AS age FROM {table}
WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
ORDER BY created_at LIMIT {batch}
"""


def orphaned(table: str, batch: int) -> str:
    """For the sweep: the rows of `table` processing, but whose run's heartbeat stopped $1
    seconds ago, or whose scheduled retry is $2 seconds overdue; the oldest `batch` of them."""
    return f"""
SELECT id, attempts FROM {table}
WHERE status = 'processing'
  AND ((claim_token IS NOT NULL AND heartbeat_at < now() - make_interval(secs => $1))
       OR (claim_token IS NULL AND coalesce(retry_at, updated_at) < now() - make_interval(secs => $2)))
ORDER BY created_at LIMIT {batch}
"""


@dataclass(frozen=True)
class Claim:
    """A row this run holds under `token`; `what` names it in log lines ("BDR <id>")."""

    what: str
    id: uuid.UUID
    token: uuid.UUID
    row: asyncpg.Record


async def job_owner(pool: asyncpg.Pool, user_id: int, what: str) -> asyncpg.Record:
    """The handle and public sqid of the user a job's row is for (`what`: "download")."""
    user = await pool.fetchrow(SQL_OWNER, user_id)
    if user is None:
        raise PermanentError(f"The account this {what} belongs to no longer exists.")
    return user


class Archive(Protocol):
    """One ZIP a run builds (a BDR's, an export's part): what goes in, where it is stored, and
    what its row says while it is built and once it is published."""

    artworks: list[Artwork]
    prefix: str  # the folder its artworks and JSON files go under ("" for none)
    comments: bool
    reactions: bool
    gate: threading.Event | None  # waited on between artworks (clear: others go first)
    file_path: str  # its stored path once placed in the folder
    temp_name: str  # the temp file beside it while it is written there
    object_path: str  # this run's own stored path in a bucket
    download_name: str  # the file name a browser saves

    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> Iterable[tuple[str, Trailing]]:
        """The JSON files after the artworks, once what was added is known."""
        ...

    def closing(self, files: list[FileDigest]) -> Iterable[tuple[str, bytes]]:
        """The last files, made from the digests of every other one (a manifest)."""
        ...

    async def report(self, done: int) -> bool:
        """Progress (artworks done) and heartbeat; False when the run lost its row."""
        ...

    def over_cap(self, written: int, done: int) -> Exception | None:
        """An error to stop the build with once `written` bytes are too many, or None."""
        ...

    def settled(self, result: BuildResult) -> BuildResult:
        """The built ZIP as it is published; raises when it must not be shipped."""
        ...

    async def publish(self, conn: Conn, file_path: str, result: BuildResult) -> None:
        """Marks it ready, in the transaction that holds the run's row locked."""
        ...

    def published(self, result: BuildResult) -> None:
        """After the commit of its publish."""
        ...


class ClaimedRun(Protocol):
    """One claimed run of one row: its archives, then its end."""

    @property
    def attempts(self) -> int:
        """The run's attempt number (read again after a failure: an export's published part
        starts its count again)."""
        ...

    def archives(self) -> AsyncGenerator[Archive]:
        """Plans, then yields each archive still to build, in order."""
        ...

    async def finish(self) -> None:
        """Once every archive is published: the row ready, if the run has not done it."""
        ...

    async def fail(self, message: str) -> object:
        """The row failed, with what its user is told."""
        ...

    def finished(self, outcome: str, seconds: float) -> None:
        """ready, failed, cancelled or retry: the run's metrics or log line."""
        ...


class JobKind(Emailed, Protocol):
    """A feature's claimed job, as the driver, the sweep and the cleanup use it."""

    name: str  # "bdr": the job's tag and log name
    label: str  # "BDR": how a log line names one
    noun: str  # "download": how a message to its user names one
    sql_claim: str  # $1 id, $2 token, $3 stale seconds → the row, or none
    sql_release: str  # $1 id, $2 token, $3 seconds: handed back for a retry
    sql_lock_owned: str  # $1 id, $2 token: the row locked while still the run's
    sql_stuck_pending: str  # $1 grace seconds → id, age
    sql_orphaned: str  # $1 stale seconds, $2 retry grace → id, attempts
    restore_checks: tuple[RestoreCheck, ...]  # what a restore may leave inconsistent

    def run(self, st: WorkerState, claim: Claim) -> ClaimedRun: ...

    def attempt_scope(self, st: WorkerState) -> AbstractContextManager[None]:
        """Held while an attempt runs (a BDR holds the exports back)."""
        ...

    async def enqueue(self, redis: ArqRedis, row_id: uuid.UUID, retake: str | None) -> bool: ...

    def job_id(self, row_id: uuid.UUID) -> str: ...

    async def swept(self, st: WorkerState, redis: ArqRedis) -> int:
        """The kind's own part of each sweep; how many jobs it enqueued."""
        ...

    async def plan_expiry(self, conn: Conn, at: datetime, days: int, settings: Settings) -> Expiry:
        """What the daily cleanup at `at` expires, and purges (finished `days` ago)."""
        ...

    async def expire(
        self, pool: asyncpg.Pool, at: datetime, plan: Expiry
    ) -> dict[uuid.UUID, tuple[str | None, ...]]:
        """The planned expiries, each row's condition checked again: what was expired."""
        ...

    async def purge(
        self, pool: asyncpg.Pool, at: datetime, days: int, settings: Settings, plan: Expiry
    ) -> frozenset[uuid.UUID]:
        """The planned purges, each row's condition checked again: what was purged."""
        ...

    def summary(self, expiry: Expiry) -> dict[str, int]:
        """Its expiries as the cleanup's summary counts them."""
        ...


@dataclass(frozen=True)
class Expiry:
    """A kind's part of the daily cleanup: rows expired, with the stored files that go with
    them, and rows purged."""

    expire: dict[uuid.UUID, tuple[str | None, ...]]
    purge: frozenset[uuid.UUID]
