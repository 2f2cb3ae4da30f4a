"""A claimed job kind, as one `JobKind` value: its run (`ClaimedRun`, `Archive`), its queueing,
its upkeep and its email, with the statements every kind shares made from its table.

The driver calls an archive's `settled`, then its `publish`, then hands the `Settled` back to
the run's generator; `finish` and `finished` get the last published archive (None before
one), `fail` what the last settled one left out."""

from __future__ import annotations

import abc
import threading
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
from arq.connections import ArqRedis

from ..core.codes import Code
from ..core.named_sql import Named
from ..storage.zip_names import ZipNames
from ..zipbuild.build import BuildResult, FileDigest, Trailing
from ..zipbuild.content import Artwork
from ..zipbuild.json_files import Extras
from .failures import PermanentError
from .queueing import OWNED, Queueing
from .restore import RestoreCheck

if TYPE_CHECKING:
    from ..core.db import Conn
    from ..core.settings import Settings
    from .context import WorkerState

SQL_OWNER = Named("SELECT handle, public_sqid FROM users WHERE id = :user")


@dataclass(frozen=True)
class Claim:
    """A row this run holds under `token`; `what` names it in log lines ("BDR <id>")."""

    what: str
    id: uuid.UUID
    token: uuid.UUID
    row: asyncpg.Record

    @property
    def owned(self) -> dict[str, object]:  # OWNED's `:id` and `:token`
        return {"id": self.id, "token": self.token}


class RowRun:
    """What every kind's run keeps of its claim: the worker, the row and the run's hold on it."""

    def __init__(self, st: WorkerState, claim: Claim):
        self.st = st
        self.pool = st.pool
        self.id = claim.id
        self.token = claim.token
        self.owned = claim.owned
        self.claim = claim.row
        self.attempts: int = claim.row["attempts"]


async def job_owner(pool: asyncpg.Pool, user_id: int, what: str) -> asyncpg.Record:
    """The handle and public sqid of the user a job's row is for (`what`: "download")."""
    user = await pool.fetchrow(*SQL_OWNER.bind({"user": user_id}))
    if user is None:
        raise PermanentError(
            f"The account this {what} belongs to no longer exists.", Code.USER_NOT_FOUND
        )
    return user


# What a row says a build left out: an entry per artwork or file (zipbuild/content.py).
Skipped = list[dict[str, Any]]


@dataclass(frozen=True)
class Settled:
    """A built archive as it is published: its result, and what it left out."""

    result: BuildResult
    skipped: Skipped


class Archive(abc.ABC):
    """One ZIP a run builds (a BDR's, an export's part): its content, place and row's hooks."""

    artworks: list[Artwork]
    comments: bool
    reactions: bool
    names: ZipNames  # where it is stored (storage/zip_names.py)
    prefix: str = ""  # the folder its artworks and JSON files go under
    gate: threading.Event | None = None  # waited on between artworks (clear: others go first)

    @abc.abstractmethod
    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> Iterable[tuple[str, Trailing]]:
        """The JSON files after the artworks, once what was added is known."""

    @abc.abstractmethod
    def closing(self, files: list[FileDigest]) -> Iterable[tuple[str, bytes]]:
        """The last files, made from the digests of every other one (a manifest)."""

    @abc.abstractmethod
    async def report(self, done: int) -> bool:
        """Progress (artworks done) and heartbeat; False when the run lost its row."""

    def over_cap(self, written: int, done: int) -> Exception | None:
        """An error to stop the build with once `written` bytes are too many, or None."""
        return None

    @abc.abstractmethod
    def settled(self, result: BuildResult) -> Settled:
        """The built ZIP as it is published; raises (`Refused`) when it must not be shipped."""

    @abc.abstractmethod
    async def publish(self, conn: Conn, file_path: str, settled: Settled) -> None:
        """Marks it ready, in the transaction that holds the run's row locked."""


class ClaimedRun(Protocol):
    """One claimed run of one row: its archives, then its end."""

    @property
    def attempts(self) -> int:
        """The run's attempt number (read again after a failure)."""

    def archives(self) -> AsyncGenerator[Archive, Settled]:
        """Yields each archive still to build, in order, and is given each back as published."""

    async def finish(self, last: Settled | None) -> None:
        """Once every archive is published: the row ready, if the run has not done it."""

    async def fail(self, message: str, code: Code, skipped: Skipped) -> object:
        """The row failed, with its message, its `error_code` and what was left out."""

    def finished(self, outcome: str, seconds: float, last: Settled | None) -> None:
        """ready, failed, cancelled or retry: the run's metrics or log line."""


@dataclass(frozen=True)
class Expiry:
    """A kind's part of the daily cleanup: rows expired (with their stored files) and purged."""

    expire: dict[uuid.UUID, tuple[str | None, ...]]
    purge: frozenset[uuid.UUID]


@dataclass(frozen=True)
class Expiring:
    """What the daily cleanup expires and purges of a kind, as of the plan's `:clock`; the purges
    take the retention `:days`, the names `purge_args` adds, and `:ids`."""

    sql_plan_expire: Named  # :clock → id, files (the stored paths that go with the row)
    sql_plan_purge: Named  # …, the :ids the plan expires (they count as expired) → id
    sql_expire: Named  # :clock, the planned :ids → id, files
    sql_purge: Named  # …, the planned :ids → id
    counted_as: str  # the summary's name for the files expired ("expired")
    purge_args: Callable[[Settings], Mapping[str, object]] = lambda settings: {}


@dataclass(frozen=True)
class Upkeep:
    """A kind's part of the sweep (upkeep/sweep.py), the cleanup and the restore check."""

    sweep_batch: int  # rows of each sweep query, the oldest first
    expiring: Expiring
    restore_checks: tuple[RestoreCheck, ...]  # what a restore may leave inconsistent
    # The kind's own part of each sweep, before its rows are enqueued again: jobs it enqueued.
    swept: Callable[[WorkerState, ArqRedis], Awaitable[int]]


@dataclass(frozen=True)
class Email:
    """Emails rows owe, which the sweep sends: a kind's ready/failed one, or a feature's."""

    sql_emails_owed: Named  # `tries` allowed → the ids whose email is owed
    # True if this call sent it (it takes the email first: at most one is sent).
    send_email: Callable[[asyncpg.Pool, Settings, uuid.UUID], Coroutine[Any, Any, bool]]


@dataclass(frozen=True)
class JobKind:
    """A feature's claimed job, as the driver, the worker, the sweep and the cleanup use it."""

    label: str  # "BDR": how a log line names one
    table: str  # its rows'
    sql_claim: Named  # :id, :token, :stale seconds → the row, or none
    start: Callable[[WorkerState, Claim], ClaimedRun]  # a claimed row's run
    queue: Queueing
    upkeep: Upkeep
    email: Email
    # Held while an attempt runs (a BDR holds the exports back).
    attempt_scope: Callable[[WorkerState], AbstractContextManager[None]] = lambda st: nullcontext()

    @property
    def name(self) -> str:
        """The job's tag and log name ("bdr")."""
        return self.queue.name

    @property
    def sql_release(self) -> Named:
        """:id, :token, :defer seconds: handed back for a retry, if the run still holds it."""
        return Named(f"""
UPDATE {self.table}
SET claim_token = NULL, heartbeat_at = NULL, retry_at = now() + make_interval(secs => :defer)
WHERE {OWNED}
""")

    @property
    def sql_stuck_pending(self) -> Named:
        """For the sweep: :grace seconds → id, age of the oldest pending rows."""
        return Named(f"""
SELECT id, extract(epoch FROM now() - created_at)::float8 AS age FROM {self.table}
WHERE status = 'pending' AND created_at < now() - make_interval(secs => :grace)
ORDER BY created_at LIMIT {self.upkeep.sweep_batch}
""")

    @property
    def sql_orphaned(self) -> Named:
        """For the sweep: :stale seconds, :grace past a retry's time → id, attempts of orphans."""
        return Named(f"""
SELECT id, attempts FROM {self.table}
WHERE status = 'processing'
  AND ((claim_token IS NOT NULL AND heartbeat_at < now() - make_interval(secs => :stale))
       OR (claim_token IS NULL AND coalesce(retry_at, updated_at) < now() - make_interval(secs => :grace)))
ORDER BY created_at LIMIT {self.upkeep.sweep_batch}
""")
