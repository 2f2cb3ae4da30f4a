"""One claimed run of one BDR: plan, stream the ZIP on a thread (into a file or a bucket) while
reporting progress, publish it atomically."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import asyncpg

from ..host.vault import bdr_file_path, bdr_object_file_path, bdr_temp_name, bdr_zip_path
from ..jobs.claims import job_owner
from ..jobs.context import WorkerState
from ..jobs.failures import MAX_ATTEMPTS, PermanentError, TransientError, nothing_added
from ..jobs.placing import Stream, into_file, into_object
from ..jobs.streaming import Job, stream_zip
from ..storage.budget import human_bytes
from ..zipbuild.build import (
    BuildCancelled,
    BuildResult,
    FileDigest,
    Sink,
    Trailer,
    Trailing,
    sha256sum_lines,
)
from ..zipbuild.content import (
    Plan,
    json_files,
    plan_artworks,
    skipped_entries,
    skipped_file_entries,
)
from ..zipbuild.json_files import Extras
from ..zipbuild.working_files import Outcome, Wanted, sorted_out, split
from .job_sql import SQL_FAILED, SQL_LOCK_OWNED, SQL_PROGRESS, SQL_READY
from .service import download_filename

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
        user = await job_owner(self.pool, claim["user_id"], "download")
        user_sqid = user["public_sqid"] or self.st.public_ids.encode(claim["user_id"])
        wanted = Wanted(layers=claim["include_layers"])
        plan = await plan_artworks(
            self.pool, claim["user_id"], claim["post_ids"], self.st.public_ids, wanted
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
        file_path = bdr_file_path(user_sqid, self.bdr_id)
        final = bdr_zip_path(self.st.settings.bdr_path, file_path)
        temp = final.with_name(bdr_temp_name(self.bdr_id, self.token.hex[:8]))
        return await into_file(
            final, temp, self._checked_stream(plan, handle), partial(self._publish, file_path)
        )

    async def _build_object(self, plan: Plan, handle: str, user_sqid: str) -> BuildResult:
        file_path = bdr_object_file_path(user_sqid, self.bdr_id, self.token.hex[:8])
        attributes: Attributes = {
            "Content-Type": "application/zip",
            # The browser saves the host's file name when it follows the signed URL.
            "Content-Disposition": f"attachment; filename={download_filename(self.bdr_id)}",
        }
        return await into_object(
            self.st, f"BDR {self.bdr_id}", file_path, attributes,
            self._checked_stream(plan, handle), partial(self._publish, file_path),
        )  # fmt: skip

    def _checked_stream(self, plan: Plan, handle: str) -> Stream:
        async def stream(sink: Sink) -> BuildResult:
            result, working = await self._stream(plan, handle, sink)
            self._check(plan, result, working)
            return result

        return stream

    def _check(self, plan: Plan, result: BuildResult, working: Outcome) -> None:
        """A complete ZIP that must not be shipped raises: nothing added, or a retry may add
        what the artwork server failed to give. The item's `skipped` names, in request order,
        the artworks left out and the working files (a missing layers file) of those in."""
        skipped = self.in_request_order(plan, result.skipped)
        order = {pid: i for i, pid in enumerate(self.claim["post_ids"])}
        self.skipped_json = sorted(
            skipped_entries(skipped, plan.sqids) + skipped_file_entries(working, plan.sqids),
            key=lambda entry: order[entry["post_id"]],
        )
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

    async def _stream(self, plan: Plan, handle: str, sink: Sink) -> tuple[BuildResult, Outcome]:
        pre_skipped = len(plan.skipped)
        cap = self.st.settings.bdr_max_bytes
        arcnames = plan.working_arcnames()
        artworks_done = plan.artworks_done()

        def trailer(extras: Extras) -> Trailer:
            def files(
                added: list[int], skipped: list[tuple[int, str]]
            ) -> list[tuple[str, Trailing]]:
                posts, post_skips, working = split(added, skipped, arcnames)
                ordered = self.in_request_order(plan, post_skips)
                return json_files(handle, plan, extras, posts, ordered, working=working)

            return files

        def over_cap(written: int, done: int) -> Exception | None:
            if written <= cap:
                return None
            return PermanentError(
                f"This download grew past the limit of {human_bytes(cap)} a download "
                f"(over {human_bytes(written)} after {artworks_done(done)} of "
                f"{len(plan.artworks)} artworks); request fewer artworks at a time."
            )

        async def report(done: int) -> bool:
            still_ours = await self.pool.fetchval(
                SQL_PROGRESS, self.bdr_id, self.token, pre_skipped + artworks_done(done)
            )
            return bool(still_ours)

        job = Job(
            plan.artworks,
            trailer,
            closing=root_manifest,
            comments=self.claim["include_comments"],
            reactions=self.claim["include_reactions"],
        )
        result, working = sorted_out(
            await stream_zip(self.st, job, sink, report, over_cap), arcnames
        )
        if result.size > cap:
            raise PermanentError(
                f"This download is {human_bytes(result.size)}, past the limit of "
                f"{human_bytes(cap)} a download; request fewer artworks at a time."
            )
        return result, working
