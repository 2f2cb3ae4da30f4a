"""A BDR's ZIP: what it holds, its cap, and its row's progress and publishing."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

from ...core.codes import Code
from ...host.mentions import Mentions
from ...jobs.failures import PermanentError, Refused, TransientError, nothing_added
from ...jobs.kind import Archive, RowRun, Settled
from ...jobs.queueing import MAX_ATTEMPTS
from ...storage.budget import human_bytes
from ...storage.zip_names import bdr_zip_names
from ...zipbuild.build import BuildResult, FileDigest, Trailing, sha256sum_lines
from ...zipbuild.content import Plan, json_files, skipped_entries, skipped_file_entries
from ...zipbuild.json_files import Extras
from ...zipbuild.working_files import sorted_out, split
from . import job_sql
from .service import download_filename

if TYPE_CHECKING:
    from ...core.db import Conn


def root_manifest(files: list[FileDigest]) -> list[tuple[str, bytes]]:
    """A BDR's `manifest-sha256.txt`: every other file, `sha256sum -c` run where it is unzipped."""
    return [("manifest-sha256.txt", sha256sum_lines(files))]


class BdrZip(Archive):
    """A BDR's ZIP: its artworks, the JSON files, then `manifest-sha256.txt`; no gate."""

    def __init__(
        self,
        run: RowRun,
        plan: Plan,
        handle: str,
        user_sqid: str,
        mentions: concurrent.futures.Future[Mentions],
    ) -> None:
        self.run = run
        self.plan = plan
        self.handle = handle
        self.mentions = mentions
        self.artworks = plan.artworks
        self.comments: bool = run.claim["include_comments"]
        self.reactions: bool = run.claim["include_reactions"]
        bdr_id, run_name = run.id, run.token.hex[:8]
        self.names = bdr_zip_names(user_sqid, bdr_id, run_name, download_filename(bdr_id))
        self.cap = run.st.settings.bdr_max_bytes
        self.arcnames = plan.working_arcnames()
        self.artworks_done = plan.artworks_done()
        self.order = {pid: i for i, pid in enumerate(run.claim["post_ids"])}  # the request's

    def _in_request_order(self, found_in_build: list[tuple[int, str]]) -> list[tuple[int, str]]:
        return sorted(self.plan.skipped + found_in_build, key=lambda s: self.order[s[0]])

    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> list[tuple[str, Trailing]]:
        posts, post_skips, working = split(added, skipped, self.arcnames)
        ordered = self._in_request_order(post_skips)
        mentions = self.mentions.result()  # on the build thread: the loop reads them
        return json_files(self.handle, self.plan, extras, posts, ordered, mentions, working=working)

    def closing(self, files: list[FileDigest]) -> list[tuple[str, bytes]]:
        return root_manifest(files)

    def over_cap(self, written: int, done: int) -> Exception | None:
        if written <= self.cap:
            return None
        return PermanentError(
            f"This download grew past the limit of {human_bytes(self.cap)} a download "
            f"(over {human_bytes(written)} after {self.artworks_done(done)} of "
            f"{len(self.plan.artworks)} artworks); request fewer artworks at a time.",
            Code.TOO_LARGE,
        )

    async def report(self, done: int) -> bool:
        run = self.run
        progress = {"done": len(self.plan.skipped) + self.artworks_done(done)}
        return bool(await run.pool.fetchval(*job_sql.SQL_PROGRESS.bind(run.owned | progress)))

    def settled(self, built: BuildResult) -> Settled:
        """Raises for a ZIP that must not ship; `skipped` lists what was left out."""
        result, working = sorted_out(built, self.arcnames)
        if result.size > self.cap:
            raise PermanentError(
                f"This download is {human_bytes(result.size)}, past the limit of "
                f"{human_bytes(self.cap)} a download; request fewer artworks at a time.",
                Code.TOO_LARGE,
            )
        run, plan = self.run, self.plan
        skipped = self._in_request_order(result.skipped)
        entries = sorted(
            skipped_entries(skipped, plan.sqids) + skipped_file_entries(working, plan.sqids),
            key=lambda entry: self.order[entry["post_id"]],
        )
        if not result.added:
            raise Refused(nothing_added(skipped), entries)
        if any(why == "fetch_failed" for _, why in skipped) and run.attempts < MAX_ATTEMPTS:
            # Only the last attempt settles for what the artwork server could give.
            error = TransientError("Some artworks could not be fetched from the artwork server.")
            raise Refused(error, entries)
        return Settled(result, entries)

    async def publish(self, conn: Conn, file_path: str, settled: Settled) -> None:
        run, result = self.run, settled.result
        ready = {"path": file_path, "size": result.size, "sha256": result.sha256}
        ready |= {"skipped": settled.skipped, "days": run.st.settings.bdr_expiry_days}
        await conn.execute(*job_sql.SQL_READY.bind(run.owned | ready))
