"""One claimed run of one BDR: plan, stream the ZIP on a thread (into a file or a bucket) while
reporting progress, publish it atomically."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiofiles.os
import asyncpg

from ...bdr.budget import human_bytes
from ...bdr.service import download_filename
from ...host.vault import (
    bdr_file_path,
    bdr_object_file_path,
    bdr_object_key,
    bdr_temp_name,
    bdr_zip_path,
)
from ..context import WorkerState
from ..failures import MAX_ATTEMPTS, TRANSIENT, PermanentError, TransientError, nothing_added
from ..streaming import Job, stream_zip
from ..zip.build import (
    BuildCancelled,
    BuildResult,
    FileDigest,
    Sink,
    Trailer,
    Trailing,
    discard,
    file_sink,
    object_sink,
    publish,
    sha256sum_lines,
)
from ..zip.content import Plan, json_files, plan_artworks, skipped_entries
from ..zip.json_files import Extras
from .sql import SQL_FAILED, SQL_LOCK_OWNED, SQL_PROGRESS, SQL_READY, SQL_USER

if TYPE_CHECKING:
    from obstore import Attributes

log = logging.getLogger(__name__)


def root_manifest(files: list[FileDigest]) -> list[tuple[str, bytes]]:
    """A BDR's `manifest-sha256.txt`: every other file, `sha256sum -c` run where it is unzipped."""
    return [("manifest-sha256.txt", sha256sum_lines(files))]


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
        claim = self.claim
        user = await self.pool.fetchrow(SQL_USER, claim["user_id"])
        if user is None:
            raise PermanentError("The account this download belongs to no longer exists.")
        user_sqid = user["public_sqid"] or self.st.public_ids.encode(claim["user_id"])
        plan = await plan_artworks(
            self.pool, claim["user_id"], claim["post_ids"], self.st.public_ids
        )
        if self.st.zips.store is None:
            result = await self._build_file(plan, user["handle"], user_sqid)
        else:
            result = await self._build_object(plan, user["handle"], user_sqid)
        log.info(
            "BDR %s ready: %d artworks, %d skipped, %d bytes",
            self.bdr_id, len(result.added), len(self.skipped_json), result.size,
        )  # fmt: skip

    async def _build_file(self, plan: Plan, handle: str, user_sqid: str) -> BuildResult:
        """Into BDR_PATH: a temp file beside the final name, fsynced, renamed when ready."""
        file_path = bdr_file_path(user_sqid, self.bdr_id)
        final = bdr_zip_path(self.st.settings.bdr_path, file_path)
        await aiofiles.os.makedirs(final.parent, exist_ok=True)
        temp = final.with_name(bdr_temp_name(self.bdr_id, self.token.hex[:8]))
        try:
            result = await self._stream(plan, handle, file_sink(temp))
            self._check(plan, result)
            await self._publish(file_path, result, lambda: publish(temp, final))
        finally:
            await asyncio.to_thread(discard, temp)
        return result

    async def _build_object(self, plan: Plan, handle: str, user_sqid: str) -> BuildResult:
        """Into the BDR_STORE bucket: a multipart upload under this run's own name, fed while
        the ZIP is built; the object exists only once complete, and the row points at it only
        when this run still owns the claim (a run that lost it deletes its object)."""
        file_path = bdr_object_file_path(user_sqid, self.bdr_id, self.token.hex[:8])
        store = self.st.zips.store
        assert store is not None
        attributes: Attributes = {
            "Content-Type": "application/zip",
            # The browser saves the host's file name when it follows the signed URL.
            "Content-Disposition": f"attachment; filename={download_filename(self.bdr_id)}",
        }
        sink = object_sink(store, bdr_object_key(file_path), attributes)
        published = False
        try:
            result = await self._stream(plan, handle, sink)
            self._check(plan, result)
            await self._publish(file_path, result)
            published = True
        finally:
            if not published:  # an object completed by a run that did not make it ready
                try:
                    await self.st.zips.remove(file_path)
                except TRANSIENT:  # the cleanup removes it later; keep the run's own error
                    log.warning("BDR %s: could not remove %s", self.bdr_id, file_path)
        return result

    def _check(self, plan: Plan, result: BuildResult) -> None:
        """A complete ZIP that must not be shipped raises: nothing added, or a retry may add
        what the artwork server failed to give."""
        skipped = self.in_request_order(plan, result.skipped)
        self.skipped_json = skipped_entries(skipped, plan.sqids)
        if not result.added:
            raise nothing_added(skipped)
        if (
            any(why == "fetch_failed" for _, why in skipped)
            and self.claim["attempts"] < MAX_ATTEMPTS
        ):
            # The artwork server hiccuped: try again rather than ship an incomplete ZIP; only
            # the last attempt settles for what it could fetch.
            raise TransientError("Some artworks could not be fetched from the artwork server.")

    async def _publish(
        self, file_path: str, result: BuildResult, move: Callable[[], None] | None = None
    ) -> None:
        """Mark ready (after `move`, the rename into place) in one transaction holding the
        row's lock.

        Every run of a BDR in the folder targets the same final name, so only the run that
        still owns the claim may rename: the lock makes "still ours" true until commit (a
        takeover or a cancel waits for it, then finds the row ready). A run that lost its
        claim never touches the final name, so it can never replace or delete another run's
        ZIP.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(SQL_LOCK_OWNED, self.bdr_id, self.token) is None:
                raise BuildCancelled
            if move is not None:
                await asyncio.to_thread(move)
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
        self.result = result

    async def _stream(self, plan: Plan, handle: str, sink: Sink) -> BuildResult:
        pre_skipped = len(plan.skipped)
        cap = self.st.settings.bdr_max_bytes

        def trailer(extras: Extras) -> Trailer:
            def files(
                added: list[int], skipped: list[tuple[int, str]]
            ) -> list[tuple[str, Trailing]]:
                return json_files(handle, plan, extras, added, self.in_request_order(plan, skipped))

            return files

        def over_cap(written: int, done: int) -> Exception | None:
            if written <= cap:
                return None
            return PermanentError(
                f"This download grew past the limit of {human_bytes(cap)} a download "
                f"(over {human_bytes(written)} after {done} of "
                f"{len(plan.artworks)} artworks); request fewer artworks at a time."
            )

        async def report(done: int) -> bool:
            still_ours = await self.pool.fetchval(
                SQL_PROGRESS, self.bdr_id, self.token, pre_skipped + done
            )
            return bool(still_ours)

        job = Job(
            plan.artworks,
            trailer,
            closing=root_manifest,
            comments=self.claim["include_comments"],
            reactions=self.claim["include_reactions"],
        )
        result = await stream_zip(self.st, job, sink, report, over_cap)
        if result.size > cap:
            raise PermanentError(
                f"This download is {human_bytes(result.size)}, past the limit of "
                f"{human_bytes(cap)} a download; request fewer artworks at a time."
            )
        return result
