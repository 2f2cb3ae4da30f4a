"""One claimed run of an export: plan the parts once, then build each part not yet published
(a BagIt bag in a ZIP, through the same streaming, store and publishing as a BDR), newest
posts first. A run that dies loses at most the part it was building; the next run keeps every
published part and goes on from the first one missing."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import asyncpg

from ..host.vault import bdr_zip_path, export_part_file_path, export_part_temp_name
from ..jobs.claims import job_owner
from ..jobs.context import WorkerState
from ..jobs.failures import PermanentError
from ..jobs.placing import into_file, into_object
from ..jobs.streaming import Job, stream_zip
from ..zipbuild.build import BuildCancelled, BuildResult, Sink, Trailer, Trailing
from ..zipbuild.content import (
    METADATA_ONLY,
    Plan,
    json_files,
    plan_artworks,
    skipped_entries,
)
from ..zipbuild.entry_names import post_sqid
from ..zipbuild.json_files import Extras
from ..zipbuild.working_files import BAG_FOLDERS, Wanted, sorted_out, split
from .bag import BagPlace, bag_closing, removed_json
from .gallery import gallery, read_social
from .incremental import changes, removed
from .job_sql import (
    SQL_ADD_PART,
    SQL_AFTER_PART,
    SQL_FAILED,
    SQL_LOCK_OWNED,
    SQL_PART_READY,
    SQL_PART_STARTED,
    SQL_PARTS,
    SQL_PLANNED,
    SQL_PROGRESS,
    SQL_READY,
    SQL_REMOVED_LIST,
    SQL_TOUCH,
)
from .plan import PER_PART, PlannedPart, plan_parts
from .schemas import part_filename

if TYPE_CHECKING:
    from obstore import Attributes

log = logging.getLogger(__name__)


class ExportRun:
    """One claimed run of one export."""

    def __init__(
        self, st: WorkerState, export_id: uuid.UUID, token: uuid.UUID, claim: asyncpg.Record
    ):
        self.st = st
        self.pool = st.pool
        self.export_id = export_id
        self.token = token
        self.claim = claim
        self.attempts: int = claim["attempts"]
        self.added = 0  # artworks in the parts published so far (this run's and earlier ones')
        self.done = 0  # artworks the published parts went through (added or skipped)

    async def fail(self, message: str) -> bool:
        row = await self.pool.fetchrow(
            SQL_FAILED, self.export_id, self.token, message, self.st.settings.bdr_expiry_days
        )
        return row is not None

    async def build(self) -> None:
        claim = self.claim
        user = await job_owner(self.pool, claim["user_id"], "export")
        parts = await self.pool.fetch(SQL_PARTS, self.export_id)
        if not parts:
            parts = await self._plan()
        count = len(parts)
        for part in parts:
            if part["status"] == "ready":
                self.added += part["artwork_count"]
                self.done += part["artwork_count"] + len(part["skipped"])
        for part in parts:
            if part["status"] != "ready":
                place = BagPlace(
                    self.export_id, part["number"], count, user["handle"],
                    claim["follows_id"], claim["follows_started_at"],
                )  # fmt: skip
                async with self.st.export_slots:
                    await self._part(place, part["post_ids"])
        if not self.added and not await self._only_removals():
            raise PermanentError(
                "None of the artworks could be added (deleted or missing their file since the "
                "export was asked for); an export without artworks is not made."
            )
        if (
            await self.pool.fetchval(
                SQL_READY, self.export_id, self.token, self.st.settings.bdr_expiry_days
            )
            is None
        ):
            raise BuildCancelled
        log.info("export %s ready: %d parts, %d artworks", self.export_id, count, self.added)

    async def _only_removals(self) -> bool:
        """An incremental export whose only news is what is gone: its part has no artwork."""
        parts = await self.pool.fetch(SQL_PARTS, self.export_id)
        return self.claim["follows_id"] is not None and all(not p["post_ids"] for p in parts)

    async def _plan(self) -> list[asyncpg.Record]:
        claim = self.claim
        local = self.st.artwork_store is None and not self.st.settings.artwork_base_url
        base = claim["base_post_ids"]
        planned = await plan_parts(
            self.pool,
            claim["user_id"],
            claim["part_bytes"],
            comments=claim["include_comments"],
            reactions=claim["include_reactions"],
            vault=self.st.settings.vault_path if local else None,
            upscaled=claim["include_upscaled"],
            changed_since=claim["follows_started_at"],
            base=base,
        )
        planned_ids = [pid for p in planned for pid in p.post_ids]
        gone: list[dict[str, Any]] = []
        covered = planned_ids
        if base is not None:  # incremental: the posts it follows still there are kept too
            gone = [
                {"post_id": r["post_id"], "public_sqid": post_sqid(r["public_sqid"], r["post_id"],
                 self.st.public_ids), "reason": r["reason"]}
                for r in await removed(self.pool, claim["user_id"], base)
            ]  # fmt: skip
            gone_ids = {g["post_id"] for g in gone}
            covered = sorted({*planned_ids, *(b for b in base if b not in gone_ids)})
        if not planned and gone:
            planned = [PlannedPart([], PER_PART)]  # a part to say what is gone
        if not planned:
            raise PermanentError(
                "Nothing changed since the export this one follows started."
                if base is not None
                else "There is no artwork to export any more."
            )
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(SQL_LOCK_OWNED, self.export_id, self.token) is None:
                raise BuildCancelled
            await conn.executemany(
                SQL_ADD_PART,
                [
                    (self.export_id, n, p.post_ids, p.estimated_bytes)
                    for n, p in enumerate(planned, 1)
                ],
            )
            await conn.execute(SQL_PLANNED, self.export_id, len(planned_ids), covered, gone)
            parts: list[asyncpg.Record] = await conn.fetch(SQL_PARTS, self.export_id)
        log.info("export %s planned: %d parts", self.export_id, len(parts))
        return parts

    async def _part(self, place: BagPlace, post_ids: list[int]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(SQL_LOCK_OWNED, self.export_id, self.token) is None:
                raise BuildCancelled
            await conn.execute(SQL_PART_STARTED, self.export_id, place.number)
            await conn.execute(SQL_TOUCH, self.export_id)
        # Every part holds the layers files; the upscaled copies when asked for.
        wanted = Wanted(layers=True, upscaled=self.claim["include_upscaled"], folders=BAG_FOLDERS)
        plan = await plan_artworks(
            self.pool, self.claim["user_id"], post_ids, self.st.public_ids, wanted
        )
        # Decided now, not when the parts were planned: a post whose artwork was replaced
        # since carries its new file (its size then was its text's alone).
        post_changes = (
            None
            if place.follows is None
            else await changes(
                self.pool, post_ids, self.claim["follows_started_at"], self.claim["base_post_ids"]
            )
        )
        if self.st.zips.store is None:
            await self._part_file(place, plan, post_changes)
        else:
            await self._part_object(place, plan, post_changes)

    async def _part_file(
        self, place: BagPlace, plan: Plan, post_changes: dict[int, str] | None
    ) -> None:
        file_path = export_part_file_path(self.export_id, place.number)
        final = bdr_zip_path(self.st.settings.bdr_path, file_path)
        temp = final.with_name(export_part_temp_name(place.number, self.token.hex[:8]))
        await into_file(
            final,
            temp,
            partial(self._stream, place, plan, post_changes),
            partial(self._publish, place, plan, file_path, post_changes),
        )

    async def _part_object(
        self, place: BagPlace, plan: Plan, post_changes: dict[int, str] | None
    ) -> None:
        file_path = export_part_file_path(self.export_id, place.number, self.token.hex[:8])
        attributes: Attributes = {
            "Content-Type": "application/zip",
            "Content-Disposition": "attachment; filename="
            + part_filename(self.export_id, place.number, place.count),
        }
        await into_object(
            self.st,
            f"export {self.export_id}",
            file_path,
            attributes,
            partial(self._stream, place, plan, post_changes),
            partial(self._publish, place, plan, file_path, post_changes),
        )

    def _skipped(self, plan: Plan, result: BuildResult) -> list[dict[str, Any]]:
        order = {a.post_id: i for i, a in enumerate(plan.artworks)}
        found = sorted(result.skipped, key=lambda s: order.get(s[0], -1))
        return skipped_entries(plan.skipped + found, plan.sqids)

    async def _stream(
        self, place: BagPlace, plan: Plan, post_changes: dict[int, str] | None, sink: Sink
    ) -> BuildResult:
        handle = place.handle
        header: dict[str, Any] = {
            "export_id": str(self.export_id), "part": place.number, "part_count": place.count,
        }  # fmt: skip
        removals: bytes | None = None
        # The posts listed in metadata.json alone: their files are in the export followed.
        listed_only = _metadata_only(plan, post_changes)
        with_files = Plan(
            [a for a in plan.artworks if a.post_id not in listed_only], plan.skipped, plan.sqids
        )
        if place.follows is not None:
            header |= {
                "follows_export_id": str(place.follows),
                "changed_since": place.since,
                "metadata_only_count": len(listed_only),
            }
            if place.number == 1:  # said once, in the first part
                removals = removed_json(
                    place, await self.pool.fetchval(SQL_REMOVED_LIST, self.export_id)
                )
        pre_skipped = len(plan.skipped) + len(listed_only)
        base = self.done
        arcnames = with_files.working_arcnames()
        artworks_done = with_files.artworks_done()
        order = {a.post_id: i for i, a in enumerate(plan.artworks)}

        def trailer(extras: Extras) -> Trailer:
            def files(
                added: list[int], skipped: list[tuple[int, str]]
            ) -> list[tuple[str, Trailing]]:
                posts, post_skips, working = split(added, skipped, arcnames)
                listed = sorted([*posts, *listed_only], key=lambda p: order.get(p, -1))
                ordered = plan.skipped + sorted(post_skips, key=lambda s: order.get(s[0], -1))
                made = json_files(
                    handle, plan, extras, listed, ordered, header, working, post_changes
                )
                return made if removals is None else [*made, ("removed.json", removals)]

            return files

        def no_cap(written: int, done: int) -> Exception | None:
            return None  # a part's size was planned; one large artwork is a part of its own

        async def report(done: int) -> bool:
            still_ours = await self.pool.fetchval(
                SQL_PROGRESS, self.export_id, self.token, base + pre_skipped + artworks_done(done)
            )
            return bool(still_ours)

        social = await read_social(
            self.pool, [a.post_id for a in plan.artworks],
            comments=self.claim["include_comments"], reactions=self.claim["include_reactions"],
        )  # fmt: skip
        job = Job(
            with_files.artworks,
            trailer,
            closing=bag_closing(place, index=gallery(place, plan.artworks, social)),
            prefix=f"{place.name}/data/",
            comments=self.claim["include_comments"],
            reactions=self.claim["include_reactions"],
        )
        # BDRs go first: while one is built here, this part waits between two artworks.
        built = await stream_zip(self.st, job, sink, report, no_cap, self.st.bdrs_idle)
        return sorted_out(built, arcnames)[0]

    async def _publish(
        self,
        place: BagPlace,
        plan: Plan,
        file_path: str,
        post_changes: dict[int, str] | None,
        result: BuildResult,
        move: Callable[[], None] | None = None,
    ) -> None:
        """The part ready, and the export's progress, in one transaction holding its row: only
        the run that still owns the claim renames into place (see bdr/job_run.py's _publish).
        A post listed with its metadata alone counts as added: the part holds its change."""
        skipped = self._skipped(plan, result)
        added = len(result.added) + len(_metadata_only(plan, post_changes))
        done = self.done + len(plan.artworks) + len(plan.skipped)
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(SQL_LOCK_OWNED, self.export_id, self.token) is None:
                raise BuildCancelled
            if move is not None:
                await asyncio.to_thread(move)
            await conn.execute(
                SQL_PART_READY, self.export_id, place.number, file_path, result.size,
                result.sha256, added, skipped,
            )  # fmt: skip
            await conn.execute(
                SQL_AFTER_PART, self.export_id, self.token, done, result.size, skipped
            )
        self.added += added
        self.done = done
        self.attempts = 1
        log.info(
            "export %s: part %d of %d ready, %d artworks, %d bytes",
            self.export_id, place.number, place.count, added, result.size,
        )  # fmt: skip


def _metadata_only(plan: Plan, post_changes: dict[int, str] | None) -> set[int]:
    """The artworks of `plan` an incremental export lists without their files."""
    if post_changes is None:
        return set()
    return {a.post_id for a in plan.artworks if post_changes.get(a.post_id) == METADATA_ONLY}
