"""An export's part: a BagIt bag in a ZIP, what it holds, and its row's progress and publishing."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from ...host.mentions import Mentions, resolve_ahead
from ...jobs.context import WorkerState
from ...jobs.kind import Archive, Settled
from ...storage.zip_names import export_part_names
from ...zipbuild.build import BuildCancelled, BuildResult, FileDigest, Trailing
from ...zipbuild.content import (
    METADATA_ONLY,
    Plan,
    json_files,
    plan_artworks,
    skipped_entries,
    skipped_file_entries,
)
from ...zipbuild.json_files import Extras
from ...zipbuild.working_files import BAG_FOLDERS, Wanted, sorted_out, split
from . import job_sql
from .bag import BagPlace, bag_closing, removed_json
from .gallery import Social, gallery, read_social
from .incremental import changes
from .schemas import part_filename

if TYPE_CHECKING:
    from ...core.db import Conn


class PartRun(Protocol):
    """What a part reads of its export's run (job.py's `ExportRun`)."""

    st: WorkerState
    pool: asyncpg.Pool
    id: uuid.UUID
    token: uuid.UUID
    owned: dict[str, object]  # the claim's `:id` and `:token`
    claim: asyncpg.Record
    done: int  # artworks the published parts went through


async def mark_started(run: PartRun, place: BagPlace) -> None:
    """Part `place` of the run's export marked started (any layout's)."""
    async with run.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(*job_sql.SQL_LOCK_OWNED.bind(run.owned)) is None:
            raise BuildCancelled
        await conn.execute(*job_sql.SQL_PART_STARTED.bind(run.owned | {"number": place.number}))
        await conn.execute(job_sql.SQL_TOUCH, run.id)


async def start_part(run: PartRun, place: BagPlace, post_ids: list[int]) -> ExportPart:
    """Part `place` of the run's export, with what it holds read."""
    # Every part holds the layers files; the upscaled copies when asked for.
    wanted = Wanted(
        layers=True, upscaled=run.claim["include_upscaled"], palettes=True, folders=BAG_FOLDERS
    )
    plan = await plan_artworks(run.pool, run.claim["user_id"], post_ids, run.st.public_ids, wanted)
    post_changes: dict[int, str] | None = None
    removals: bytes | None = None
    if place.follows is not None:
        # Decided now, not when planned: a post whose artwork was replaced since carries it.
        since, base = run.claim["follows_started_at"], run.claim["base_post_ids"]
        post_changes = await changes(run.pool, post_ids, since, base)
        if place.number == 1:  # said once, in the first part
            gone = await run.pool.fetchval(*job_sql.SQL_REMOVED_LIST.bind(run.owned))
            removals = removed_json(place, gone)
    post_ids = [a.post_id for a in plan.artworks]
    comments = run.claim["include_comments"]
    social = await read_social(
        run.pool, post_ids, comments=comments, reactions=run.claim["include_reactions"]
    )
    # Resolved while the artworks are written: only the JSON files and gallery need it.
    mentions = resolve_ahead(
        run.pool, [a.description for a in plan.artworks], post_ids if comments else []
    )
    return ExportPart(run, place, plan, post_changes, removals, social, mentions)


class ExportPart(Archive):
    """One part of an export: a BagIt bag in a ZIP, its payload under `<bag>/data/`."""

    def __init__(
        self,
        run: PartRun,
        place: BagPlace,
        plan: Plan,
        post_changes: dict[int, str] | None,
        removals: bytes | None,
        social: Social,
        mentions: concurrent.futures.Future[Mentions],
    ) -> None:
        self.run = run
        self.mentions = mentions
        self.social = social
        self.place = place
        self.plan = plan
        self.post_changes = post_changes
        self.removals = removals
        self.comments: bool = run.claim["include_comments"]
        self.reactions: bool = run.claim["include_reactions"]
        self.prefix = f"{place.name}/data/"
        # BDRs go first: while one is built here, this part waits between two artworks.
        self.gate: threading.Event | None = run.st.bdrs_idle
        export_id, run_name = run.id, run.token.hex[:8]
        download = part_filename(export_id, place.number, place.count, run.claim["layout"])
        self.names = export_part_names(export_id, place.number, run_name, download)
        self.header: dict[str, Any] = {
            "export_id": str(export_id),
            "part": place.number,
            "part_count": place.count,
        }
        # The posts listed in metadata.json alone: their files are in the export followed.
        changes = post_changes or {}
        self.listed_only = {
            a.post_id for a in plan.artworks if changes.get(a.post_id) == METADATA_ONLY
        }
        self.artworks = [a for a in plan.artworks if a.post_id not in self.listed_only]
        with_files = Plan(self.artworks, plan.skipped, plan.sqids)
        if place.follows is not None:
            self.header |= {
                "follows_export_id": str(place.follows),
                "changed_since": place.since,
                "metadata_only_count": len(self.listed_only),
            }
        self.base = run.done + len(plan.skipped) + len(self.listed_only)  # done before the build
        self.arcnames = with_files.working_arcnames()
        self.artworks_done = with_files.artworks_done()
        self.order = {a.post_id: i for i, a in enumerate(plan.artworks)}

    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> list[tuple[str, Trailing]]:
        order = self.order
        posts, post_skips, working = split(added, skipped, self.arcnames)
        listed = sorted([*posts, *self.listed_only], key=lambda p: order.get(p, -1))
        ordered = self.plan.skipped + sorted(post_skips, key=lambda s: order.get(s[0], -1))
        made = json_files(
            self.place.handle,
            self.plan,
            extras,
            listed,
            ordered,
            self.mentions.result(),  # on the build thread: the loop reads them
            self.header,
            working,
            self.post_changes,
        )
        return made if self.removals is None else [*made, ("removed.json", self.removals)]

    def closing(self, files: list[FileDigest]) -> Iterable[tuple[str, bytes]]:
        mentions = self.mentions.result()
        index = partial(gallery, self.place, self.plan.artworks, self.social, mentions)
        return bag_closing(self.place, index, files)

    async def report(self, done: int) -> bool:
        run = self.run
        progress = {"done": self.base + self.artworks_done(done)}
        return bool(await run.pool.fetchval(*job_sql.SQL_PROGRESS.bind(run.owned | progress)))

    def settled(self, built: BuildResult) -> Settled:
        result, working = sorted_out(built, self.arcnames)
        plan, order = self.plan, self.order
        found = sorted(result.skipped, key=lambda s: order.get(s[0], -1))
        # A palette left out for its colours is named here too; any other file, in metadata.json.
        palettes = [
            s
            for s in skipped_file_entries(working, plan.sqids)
            if s["file"] == "palette" and s["reason"] == "too_many_colours"
        ]
        palettes.sort(key=lambda s: order.get(s["post_id"], -1))
        return Settled(result, skipped_entries(plan.skipped + found, plan.sqids) + palettes)

    async def publish(self, conn: Conn, file_path: str, settled: Settled) -> None:
        """The part ready, and the export's progress (a metadata-only post counts as added)."""
        run, plan, result = self.run, self.plan, settled.result
        added = len(result.added) + len(self.listed_only)
        part = {"number": self.place.number, "path": file_path, "size": result.size, "added": added}
        part |= {"sha256": result.sha256, "skipped": settled.skipped}
        await conn.execute(*job_sql.SQL_PART_READY.bind(run.owned | part))
        done = {"done": run.done + len(plan.artworks) + len(plan.skipped)}
        await conn.execute(*job_sql.SQL_AFTER_PART.bind(run.owned | part | done))
