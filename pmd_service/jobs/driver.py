"""The one path of every claimed job, whatever its kind: claim → attempt → stream → place →
publish → metrics → email.

A job may run more than once, so the claim is one UPDATE only one run can win and every later
write is guarded by its token; the order of a run's hooks is described in jobs/kind.py."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiofiles.os
from arq import Retry
from arq.typing import WorkerCoroutine

from ..core import error_reports
from ..core.codes import Code, item_error
from ..core.logs import request_id_set
from ..storage.zip_names import own_zip_path, zip_object_key
from ..zipbuild.build import BuildCancelled, BuildResult, discard, file_sink, object_sink, publish
from .context import WorkerState, state
from .failures import BACKOFF_CAP_SECONDS, TRANSIENT, PermanentError, Refused
from .kind import Archive, Claim, ClaimedRun, JobKind, Settled, Skipped
from .queueing import MAX_ATTEMPTS, lock_owned
from .streaming import stream_zip

if TYPE_CHECKING:
    from obstore import Attributes

log = logging.getLogger(__name__)


@dataclass
class _Latest:
    """The run's last published archive and what the last settled one left out: the earlier
    ones are let go, as the digests of an export's parts would add up part after part."""

    published: Settled | None = None
    left_out: Skipped = field(default_factory=list)


async def process(ctx: dict[str, Any], kind: JobKind, raw_id: str) -> str:
    """The job of `kind` for row `raw_id`: its outcome; raises Retry when one may succeed."""
    st = state(ctx)
    claim = await _claim(st, kind, raw_id)
    if isinstance(claim, str):
        return claim
    # The id of the POST that asked for it: every line of this run and its email carry it.
    with request_id_set(claim.row["request_id"]):
        run = kind.start(st, claim)
        started = time.monotonic()
        latest = _Latest()
        try:
            with kind.attempt_scope(st):
                outcome = await _attempt(st, kind, claim, run, latest)
        except Retry:
            run.finished("retry", time.monotonic() - started, latest.published)
            raise
        run.finished(outcome, time.monotonic() - started, latest.published)
        if outcome != "cancelled" and claim.row["send_email"]:
            await kind.email.send_email(st.pool, st.settings, claim.id)
        return outcome


def job_function(kind: JobKind) -> WorkerCoroutine:
    """The coroutine arq runs for `kind`'s jobs, under its function name (`process_bdr`)."""

    async def run(ctx: dict[str, Any], raw_id: str) -> str:
        return await process(ctx, kind, raw_id)

    run.__name__ = run.__qualname__ = kind.queue.function
    return run


async def _claim(st: WorkerState, kind: JobKind, raw_id: str) -> Claim | str:
    """The row claimed, or why not: "invalid" or "not claimable"."""
    try:
        row_id = uuid.UUID(raw_id)
    except ValueError:
        log.error("process_%s called with %r, not a UUID", kind.name, raw_id)
        return "invalid"
    error_reports.tag(f"{kind.name}_id", raw_id)  # arq's integration gives each job a scope
    token = uuid.uuid4()
    what = f"{kind.label} {row_id}"
    asked = {"id": row_id, "token": token, "stale": float(st.settings.job_stale_seconds)}
    try:
        row = await st.pool.fetchrow(*kind.sql_claim.bind(asked))
    except TRANSIENT as exc:
        # Nothing is the run's yet: escaping, the error would fail the job and leave it to the sweep.
        defer = max(st.settings.job_retry_base_seconds, 1.0)
        log.warning("%s: could not claim it (%r); retry in %.0f s", what, exc, defer)
        raise Retry(defer=defer) from exc
    return "not claimable" if row is None else Claim(what, row_id, token, row)


async def _attempt(
    st: WorkerState,
    kind: JobKind,
    claim: Claim,
    run: ClaimedRun,
    latest: _Latest,
) -> str:
    """ready, failed or cancelled; raises Retry once the row is handed back for one."""
    what = claim.what
    if run.attempts > MAX_ATTEMPTS:
        await _fail(run, what, Code.INTERNAL, [], "no attempt left")
        return "failed"
    try:
        async with aclosing(run.archives()) as archives:
            archive = await anext(archives, None)
            while archive is not None:
                latest.published = await _place(st, kind, claim, archive, latest)
                try:  # the generator is given back the archive just published
                    archive = await archives.asend(latest.published)
                except StopAsyncIteration:
                    archive = None
        await run.finish(latest.published)
        return "ready"
    except BuildCancelled:
        return "cancelled"
    except PermanentError as exc:
        await _fail(run, what, exc.code, latest.left_out, str(exc))
    except TRANSIENT as exc:
        n = run.attempts
        if n >= MAX_ATTEMPTS:
            await _fail(run, what, Code.INTERNAL, latest.left_out, f"attempt {n}: {exc!r}")
        else:
            defer = min(BACKOFF_CAP_SECONDS, st.settings.job_retry_base_seconds * 4 ** (n - 1))
            log.warning("%s: attempt %d failed (%r); retry in %.0f s", what, n, exc, defer)
            with suppress(*TRANSIENT):
                await st.pool.execute(*kind.sql_release.bind(claim.owned | {"defer": defer}))
            raise Retry(defer=defer) from exc
    except Exception:
        log.exception("%s: unexpected error", what)
        await _fail(run, what, Code.UNEXPECTED, latest.left_out, "unexpected error")
    return "failed"


async def _fail(run: ClaimedRun, what: str, reason: Code, skipped: Skipped, why: str) -> None:
    """The row failed with its reason's fixed sentence; what happened is for the log only."""
    log.warning("%s: failed (%s): %s", what, reason, why)
    await run.fail(item_error(reason).message, reason, skipped)


def _settle(archive: Archive, built: BuildResult, latest: _Latest) -> Settled:
    """`archive.settled`, what it left out recorded whether it is shipped or refused."""
    try:
        settled = archive.settled(built)
    except Refused as refused:
        latest.left_out = refused.skipped
        raise refused.error from None
    latest.left_out = settled.skipped
    return settled


async def _place(
    st: WorkerState, kind: JobKind, claim: Claim, archive: Archive, latest: _Latest
) -> Settled:
    """Streams `archive` into ZIP_PATH or the ZIP_STORE bucket; what is not published goes."""
    if st.zips.store is None:
        final = own_zip_path(st.settings.zip_path, archive.names.file_path)
        temp = final.with_name(archive.names.temp_name)
        await aiofiles.os.makedirs(final.parent, exist_ok=True)
        try:
            settled = _settle(archive, await stream_zip(st, archive, file_sink(temp)), latest)
            await publish_archive(st, kind, claim, archive, archive.names.file_path, settled, temp)
        finally:
            await asyncio.to_thread(discard, temp)
        return settled
    attributes: Attributes = {
        "Content-Type": "application/zip",
        # The browser saves the host's file name when it follows the signed URL.
        "Content-Disposition": f"attachment; filename={archive.names.download_name}",
    }
    sink = object_sink(st.zips.store, zip_object_key(archive.names.object_path), attributes)
    try:
        settled = _settle(archive, await stream_zip(st, archive, sink), latest)
        await publish_archive(st, kind, claim, archive, archive.names.object_path, settled)
    except BaseException:  # an object completed by a run that did not make it ready
        try:
            await st.zips.remove(archive.names.object_path)
        except TRANSIENT:  # the cleanup removes it later; keep the run's own error
            log.warning("%s: could not remove %s", claim.what, archive.names.object_path)
        raise
    return settled


async def publish_archive(
    st: WorkerState,
    kind: JobKind,
    claim: Claim,
    archive: Archive,
    file_path: str,
    settled: Settled,
    temp: Path | None = None,
) -> None:
    """Marks it ready (after renaming `temp` into place) while the run's claim is locked."""
    async with st.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(*lock_owned(kind.table).bind(claim.owned)) is None:
            raise BuildCancelled
        if temp is not None:
            await asyncio.to_thread(publish, temp, own_zip_path(st.settings.zip_path, file_path))
        await archive.publish(conn, file_path, settled)
