"""`process_bdr`: claim a BDR, build its ZIP, publish it atomically, tell the user.

A job may run more than once (arq re-runs jobs of a dead worker; the sweep re-enqueues). The
claim is one UPDATE that only one run can win, and every later write of the run is guarded by
the claim token, so a run that lost its claim (cancelled, or taken over after going stale)
can never overwrite the row. Status is `failed` only when no retry is left: the seed set it
before retrying, so its retries never ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiofiles.os
import aiohttp
import asyncpg
import redis.exceptions
from arq import Retry

from ..bdr.budget import human_bytes
from ..logs import request_id_set
from ..vault import bdr_file_path, bdr_temp_name, bdr_zip_path
from .archive_content import Plan, json_files, plan_artworks, skipped_entries
from .archive_json import Extras
from .context import WorkerState, state
from .notify import send_bdr_email
from .sources import bridge_to_thread, fetched_in_order, vault_entries
from .zipbuild import BuildCancelled, BuildResult, Trailing, build_zip, discard, publish

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # the first run and three retries
BACKOFF_CAP_SECONDS = 600.0
PROGRESS_EVERY = 0.25  # at most four progress events a second reach SSE
HEARTBEAT_EVERY = 5.0

SQL_CLAIM = """
UPDATE batch_download_requests
SET status = 'processing', claim_token = $2, heartbeat_at = now(), retry_at = NULL, announced = true,
    attempts = attempts + 1, started_at = coalesce(started_at, now()),
    progress_done = 0, skipped = '[]'::jsonb
WHERE id = $1
  AND (status = 'pending'
       OR (status = 'processing'
           AND (claim_token IS NULL OR heartbeat_at < now() - make_interval(secs => $3))))
RETURNING user_id, post_ids, include_comments, include_reactions, send_email, attempts,
          artwork_count, request_id
"""
SQL_USER = "SELECT handle, public_sqid FROM users WHERE id = $1"
SQL_PROGRESS = """
UPDATE batch_download_requests SET progress_done = $3, heartbeat_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'processing'
RETURNING 1
"""
SQL_LOCK_OWNED = """
SELECT 1 FROM batch_download_requests
WHERE id = $1 AND claim_token = $2 AND status = 'processing'
FOR UPDATE
"""
SQL_READY = """
UPDATE batch_download_requests
SET status = 'ready', file_path = $3, file_size_bytes = $4, file_sha256 = $5, skipped = $6,
    progress_done = artwork_count, completed_at = now(),
    expires_at = now() + make_interval(days => $7),
    claim_token = NULL, heartbeat_at = NULL, error_message = NULL
WHERE id = $1 AND claim_token = $2 AND status = 'processing'
"""
SQL_FAILED = """
UPDATE batch_download_requests
SET status = 'failed', error_message = left($3, 500), skipped = $4, completed_at = now(),
    claim_token = NULL, heartbeat_at = NULL, retry_at = NULL
WHERE id = $1 AND claim_token = $2 AND status = 'processing'
RETURNING 1
"""
SQL_RELEASE_FOR_RETRY = """
UPDATE batch_download_requests
SET claim_token = NULL, heartbeat_at = NULL, retry_at = now() + make_interval(secs => $3)
WHERE id = $1 AND claim_token = $2 AND status = 'processing'
"""


class PermanentError(Exception):
    """Retrying cannot help; the message is shown to the user as is."""


class TransientError(Exception):
    """Worth retrying; the message is shown if no retry is left."""


# Database, Redis, disk and network trouble: retried with backoff.
TRANSIENT = (
    TransientError,
    OSError,  # TimeoutError and ConnectionError included
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    redis.exceptions.RedisError,
    aiohttp.ClientError,
)

_REASON_TEXT = {
    "deleted": "deleted",
    "not_owner": "no longer yours",
    "playlist": "playlists",
    "file_missing": "missing their file",
    "fetch_failed": "unreachable on the artwork server",
}


def _nothing_added(skipped: list[tuple[int, str]]) -> Exception:
    counts = Counter(reason for _, reason in skipped)
    if counts.get("fetch_failed"):
        return TransientError(
            "The artwork server could not be reached for any of the requested artworks; "
            "please try again later."
        )
    parts = ", ".join(f"{n} {_REASON_TEXT[r]}" for r, n in counts.most_common())
    return PermanentError(
        f"None of the {len(skipped)} requested artworks could be added ({parts}); "
        "a ZIP without artworks is not made. Choose other posts and request again."
    )


def _transient_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == 28:
        return "The server ran out of disk space while building the ZIP; please request it again later."
    if isinstance(exc, TransientError):
        return str(exc)
    return (
        f"The download could not be prepared after {MAX_ATTEMPTS} attempts because of a "
        "temporary problem on our side; please request it again later."
    )


class Run:
    """One claimed run of one BDR."""

    def __init__(self, st: WorkerState, bdr_id: uuid.UUID, token: uuid.UUID, claim: asyncpg.Record):
        self.st = st
        self.pool = st.pool
        self.bdr_id = bdr_id
        self.token = token
        self.claim = claim
        self.skipped_json: list[dict[str, Any]] = []
        self.result: BuildResult | None = None  # set once the ZIP is published

    def in_request_order(
        self, plan: Plan, found_in_build: list[tuple[int, str]]
    ) -> list[tuple[int, str]]:
        order = {pid: i for i, pid in enumerate(self.claim["post_ids"])}
        return sorted(plan.skipped + found_in_build, key=lambda s: order[s[0]])

    async def fail(self, message: str) -> bool:
        row = await self.pool.fetchrow(
            SQL_FAILED, self.bdr_id, self.token, message, self.skipped_json
        )
        return row is not None

    async def build(self) -> None:
        claim, settings = self.claim, self.st.settings
        user = await self.pool.fetchrow(SQL_USER, claim["user_id"])
        if user is None:
            raise PermanentError("The account this download belongs to no longer exists.")
        user_sqid = user["public_sqid"] or self.st.public_ids.encode(claim["user_id"])
        plan = await plan_artworks(
            self.pool, claim["user_id"], claim["post_ids"], self.st.public_ids
        )
        file_path = bdr_file_path(user_sqid, self.bdr_id)
        final = bdr_zip_path(settings.bdr_path, file_path)
        await aiofiles.os.makedirs(final.parent, exist_ok=True)
        temp = final.with_name(bdr_temp_name(self.bdr_id, self.token.hex[:8]))
        try:
            result = await self._stream(plan, user["handle"], temp)
            skipped = self.in_request_order(plan, result.skipped)
            self.skipped_json = skipped_entries(skipped, plan.sqids)
            if not result.added:
                raise _nothing_added(skipped)
            if (
                any(why == "fetch_failed" for _, why in skipped)
                and claim["attempts"] < MAX_ATTEMPTS
            ):
                # The artwork server hiccuped: try again rather than ship an incomplete ZIP;
                # only the last attempt settles for what it could fetch.
                raise TransientError("Some artworks could not be fetched from the artwork server.")
            await self._publish(temp, final, file_path, result)
            self.result = result
        finally:
            await asyncio.to_thread(discard, temp)
        log.info(
            "BDR %s ready: %d artworks, %d skipped, %d bytes",
            self.bdr_id, len(result.added), len(skipped), result.size,
        )  # fmt: skip

    async def _publish(self, temp: Path, final: Path, file_path: str, result: BuildResult) -> None:
        """Rename into place and mark ready in one transaction holding the row's lock.

        Every run of a BDR targets the same final name, so only the run that still owns the
        claim may rename: the lock makes "still ours" true until commit (a takeover or a cancel
        waits for it, then finds the row ready). A run that lost its claim never touches the
        final name, so it can never replace or delete another run's ZIP.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(SQL_LOCK_OWNED, self.bdr_id, self.token) is None:
                raise BuildCancelled
            await asyncio.to_thread(publish, temp, final)
            await conn.execute(
                SQL_READY,
                self.bdr_id,
                self.token,
                file_path,
                result.size,
                result.sha256,
                self.skipped_json,
                self.st.settings.bdr_expiry_days,
            )

    async def _stream(self, plan: Plan, handle: str, temp: Any) -> BuildResult:
        settings = self.st.settings
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        extras = Extras(
            self.pool,
            loop,
            cancel,
            comments=self.claim["include_comments"],
            reactions=self.claim["include_reactions"],
        )
        pre_skipped = len(plan.skipped)
        done = pre_skipped
        source = None
        if settings.artwork_base_url and self.st.http is not None:
            source = fetched_in_order(
                self.st.http,
                settings.artwork_base_url,
                plan.artworks,
                settings.artwork_fetch_concurrency,
            )
            entries: Any = bridge_to_thread(source, loop)
        else:
            entries = vault_entries(settings.vault_path, plan.artworks)

        def on_progress(n: int) -> None:
            nonlocal done
            done = pre_skipped + n

        def from_thread(n: int) -> None:
            loop.call_soon_threadsafe(on_progress, n)

        def trailer(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, Trailing]]:
            return json_files(handle, plan, extras, added, self.in_request_order(plan, skipped))

        task = asyncio.ensure_future(
            asyncio.to_thread(
                build_zip,
                temp,
                entries,
                trailer,
                from_thread,
                cancel,
            )
        )
        reported, last_beat = -1, time.monotonic()
        cap = settings.bdr_max_bytes
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=PROGRESS_EVERY)
                # Declared sizes were checked at request time; the files may be bigger. The cap
                # is enforced on what is written, overshooting by one interval's writes at most.
                written = await asyncio.to_thread(_size_of, temp)
                if written > cap:
                    cancel.set()
                    with contextlib.suppress(BaseException):
                        await task
                    raise PermanentError(
                        f"This download grew past the limit of {human_bytes(cap)} a download "
                        f"(over {human_bytes(written)} after {done - pre_skipped} of "
                        f"{len(plan.artworks)} artworks); request fewer artworks at a time."
                    )
                now = time.monotonic()
                if task.done() or (done == reported and now - last_beat < HEARTBEAT_EVERY):
                    continue
                still_ours = await self.pool.fetchval(SQL_PROGRESS, self.bdr_id, self.token, done)
                reported, last_beat = done, now
                if not still_ours:
                    cancel.set()  # the build thread stops before the next artwork
            result = await task
            if result.size > cap:
                raise PermanentError(
                    f"This download is {human_bytes(result.size)}, past the limit of "
                    f"{human_bytes(cap)} a download; request fewer artworks at a time."
                )
            return result
        finally:
            if not task.done():
                cancel.set()
                with contextlib.suppress(BaseException):
                    await task
            await extras.aclose()  # the build thread has ended: no fetch of it is left to run
            if source is not None:
                await source.aclose()


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # not created yet
        return 0


async def process_bdr(ctx: dict[str, Any], bdr_id: str) -> str:
    st = state(ctx)
    try:
        uid = uuid.UUID(bdr_id)
    except ValueError:
        log.error("process_bdr called with %r, not a UUID", bdr_id)
        return "invalid"
    token = uuid.uuid4()
    claim = await st.pool.fetchrow(SQL_CLAIM, uid, token, float(st.settings.bdr_stale_seconds))
    if claim is None:
        return "not claimable"  # finished, cancelled, or another run holds it
    # The id of the POST that asked for it: every line of this run and its email carry it.
    with request_id_set(claim["request_id"]):
        return await _run(st, uid, token, claim)


async def _run(st: WorkerState, uid: uuid.UUID, token: uuid.UUID, claim: asyncpg.Record) -> str:
    run = Run(st, uid, token, claim)
    started = time.monotonic()
    try:
        outcome = await _attempt(st, run)
    except Retry:
        st.metrics.finished("retry", time.monotonic() - started)
        raise
    st.metrics.finished(outcome, time.monotonic() - started, run.result)
    if outcome != "cancelled" and claim["send_email"]:
        await send_bdr_email(st.pool, st.settings, uid)
    return outcome


async def _attempt(st: WorkerState, run: Run) -> str:
    """ready, failed or cancelled; raises Retry when a later attempt may succeed."""
    uid, attempts = run.bdr_id, run.claim["attempts"]
    if attempts > MAX_ATTEMPTS:
        await run.fail(_transient_message(TimeoutError()))
        return "failed"
    try:
        await run.build()
        return "ready"
    except BuildCancelled:
        return "cancelled"
    except PermanentError as exc:
        await run.fail(str(exc))
    except TRANSIENT as exc:
        if attempts >= MAX_ATTEMPTS:
            log.warning("BDR %s: attempt %d failed (%r); giving up", uid, attempts, exc)
            await run.fail(_transient_message(exc))
        else:
            defer = min(
                BACKOFF_CAP_SECONDS, st.settings.bdr_retry_base_seconds * 4 ** (attempts - 1)
            )
            log.warning(
                "BDR %s: attempt %d failed (%r); retry in %.0f s", uid, attempts, exc, defer
            )
            with contextlib.suppress(*TRANSIENT):
                await st.pool.execute(SQL_RELEASE_FOR_RETRY, uid, run.token, defer)
            raise Retry(defer=defer) from exc
    except Exception:
        log.exception("BDR %s: unexpected error", uid)
        await run.fail(
            "An unexpected error stopped this download; it has been logged. "
            "Please request it again."
        )
    return "failed"
