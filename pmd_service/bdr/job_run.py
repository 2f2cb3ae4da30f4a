"""One claimed run of one BDR (its kind: bdr/job.py): plan its one ZIP, say what goes in it,
check it before it is shipped, mark it ready."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import asyncpg

from ..host.vault import bdr_file_path, bdr_object_file_path, bdr_temp_name
from ..jobs.context import WorkerState
from ..jobs.failures import MAX_ATTEMPTS, PermanentError, TransientError, nothing_added
from ..jobs.kind import Archive, job_owner
from ..storage.budget import human_bytes
from ..zipbuild.build import BuildResult, FileDigest, Trailing, sha256sum_lines
from ..zipbuild.content import (
    Plan,
    json_files,
    plan_artworks,
    skipped_entries,
    skipped_file_entries,
)
from ..zipbuild.json_files import Extras
from ..zipbuild.working_files import Wanted, sorted_out, split
from .job_sql import SQL_FAILED, SQL_PROGRESS, SQL_READY
from .service import download_filename

if TYPE_CHECKING:
    from ..core.db import Conn

log = logging.getLogger(__name__)


def root_manifest(files: list[FileDigest]) -> list[tuple[str, bytes]]:
    """A BDR's `manifest-sha256.txt`: every other file, `sha256sum -c` run where it is unzipped."""
    return [("manifest-sha256.txt", sha256sum_lines(files))]


class Run:
    """One claimed run of one BDR: its one archive."""

    def __init__(self, st: WorkerState, bdr_id: uuid.UUID, token: uuid.UUID, claim: asyncpg.Record):
        self.st = st
        self.pool = st.pool
        self.bdr_id = bdr_id
        self.token = token
        self.claim = claim
        self.skipped_json: list[dict[str, Any]] = []
        self.result: BuildResult | None = None  # set once the ZIP is published

    @property
    def attempts(self) -> int:
        return int(self.claim["attempts"])

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

    async def archives(self) -> AsyncGenerator[Archive]:
        claim = self.claim
        user = await job_owner(self.pool, claim["user_id"], "download")
        user_sqid = user["public_sqid"] or self.st.public_ids.encode(claim["user_id"])
        wanted = Wanted(layers=claim["include_layers"])
        plan = await plan_artworks(
            self.pool, claim["user_id"], claim["post_ids"], self.st.public_ids, wanted
        )
        yield BdrZip(self, plan, user["handle"], user_sqid)

    async def finish(self) -> None:
        assert self.result is not None
        log.info(
            "BDR %s ready: %d artworks, %d skipped, %d bytes",
            self.bdr_id,
            len(self.result.added),
            len(self.skipped_json),
            self.result.size,
        )

    def finished(self, outcome: str, seconds: float) -> None:
        self.st.metrics.finished(outcome, seconds, None if outcome == "retry" else self.result)


class BdrZip:
    """A BDR's ZIP: its artworks, then the JSON files, then `manifest-sha256.txt`."""

    prefix = ""
    gate: threading.Event | None = None  # a BDR goes first: it waits for nothing

    def __init__(self, run: Run, plan: Plan, handle: str, user_sqid: str) -> None:
        self.run = run
        self.plan = plan
        self.handle = handle
        self.artworks = plan.artworks
        self.comments: bool = run.claim["include_comments"]
        self.reactions: bool = run.claim["include_reactions"]
        bdr_id, run_name = run.bdr_id, run.token.hex[:8]
        self.file_path = bdr_file_path(user_sqid, bdr_id)
        self.temp_name = bdr_temp_name(bdr_id, run_name)
        self.object_path = bdr_object_file_path(user_sqid, bdr_id, run_name)
        self.download_name = download_filename(bdr_id)
        self.cap = run.st.settings.bdr_max_bytes
        self.arcnames = plan.working_arcnames()
        self.artworks_done = plan.artworks_done()

    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> list[tuple[str, Trailing]]:
        posts, post_skips, working = split(added, skipped, self.arcnames)
        ordered = self.run.in_request_order(self.plan, post_skips)
        return json_files(self.handle, self.plan, extras, posts, ordered, working=working)

    def closing(self, files: list[FileDigest]) -> list[tuple[str, bytes]]:
        return root_manifest(files)

    def over_cap(self, written: int, done: int) -> Exception | None:
        if written <= self.cap:
            return None
        return PermanentError(
            f"This download grew past the limit of {human_bytes(self.cap)} a download "
            f"(over {human_bytes(written)} after {self.artworks_done(done)} of "
            f"{len(self.plan.artworks)} artworks); request fewer artworks at a time."
        )

    async def report(self, done: int) -> bool:
        run = self.run
        still_ours = await run.pool.fetchval(
            SQL_PROGRESS, run.bdr_id, run.token, len(self.plan.skipped) + self.artworks_done(done)
        )
        return bool(still_ours)

    def settled(self, built: BuildResult) -> BuildResult:
        """A complete ZIP that must not be shipped raises: too big, nothing added, or a retry
        may add what the artwork server failed to give. The item's `skipped` names, in request
        order, the artworks left out and the working files (a missing layers file) of those in."""
        result, working = sorted_out(built, self.arcnames)
        if result.size > self.cap:
            raise PermanentError(
                f"This download is {human_bytes(result.size)}, past the limit of "
                f"{human_bytes(self.cap)} a download; request fewer artworks at a time."
            )
        run, plan = self.run, self.plan
        skipped = run.in_request_order(plan, result.skipped)
        order = {pid: i for i, pid in enumerate(run.claim["post_ids"])}
        run.skipped_json = sorted(
            skipped_entries(skipped, plan.sqids) + skipped_file_entries(working, plan.sqids),
            key=lambda entry: order[entry["post_id"]],
        )
        if not result.added:
            raise nothing_added(skipped)
        if any(why == "fetch_failed" for _, why in skipped) and run.attempts < MAX_ATTEMPTS:
            # The artwork server hiccuped: try again rather than ship an incomplete ZIP; only
            # the last attempt settles for what it could fetch.
            raise TransientError("Some artworks could not be fetched from the artwork server.")
        return result

    async def publish(self, conn: Conn, file_path: str, result: BuildResult) -> None:
        run = self.run
        await conn.execute(
            SQL_READY,
            run.bdr_id,
            run.token,
            file_path,
            result.size,
            result.sha256,
            run.skipped_json,
            run.st.settings.bdr_expiry_days,
        )

    def published(self, result: BuildResult) -> None:
        self.run.result = result
