"""Daily: expire old downloads and exports, purge old rows and events, tidy the ZIPs' folder or
bucket, as `plan_cleanup` planned it in one read-only snapshot (what `cleanup --dry-run` shows),
each statement of `apply_cleanup` re-checking its condition on the planned ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from ..core.db import SET_NO_IDLE_BOUND
from ..core.named_sql import Named
from ..core.objects import Upload, abort_uploads
from ..features.registry import JOB_KINDS as KINDS
from ..features.registry import PURGES
from ..host.vault import VaultPathError
from ..jobs.context import state
from ..jobs.kind import Expiry, JobKind
from ..sse.replay import EVENTS_PAST, SQL_PURGE_EVENTS
from ..storage.object_tidy import dead_uploads, own_objects, remove_objects, unnamed_paths
from ..storage.zip_names import (
    EXPORTS_FOLDER,
    OWN_TEMP_RE,
    OWN_ZIP_RE,
    ZIP_PREFIX,
    is_host_file,
    own_zip_path,
)

if TYPE_CHECKING:
    from ..core.db import Conn
    from ..core.settings import Settings
    from ..jobs.context import WorkerState

log = logging.getLogger(__name__)

TERMINAL_RETENTION_DAYS = 14
TEMP_MAX_AGE_SECONDS = 3600

# The purges that are not a job kind's: the stream's events, then each feature's (its
# manifest's `purges`), as of the plan's `clock`.
SQL_PLAN_COUNTS = Named(
    f"SELECT ({EVENTS_PAST}) AS events" + "".join(f", ({p.past}) AS {p.name}" for p in PURGES)
)


@dataclass(frozen=True)
class FolderTidy:
    """In ZIP_PATH: the service's own files older than an hour that no ready row points at."""

    temp_files: frozenset[Path]  # of runs that died
    orphans: frozenset[Path]  # ZIPs and export parts no ready row points at
    folders: frozenset[Path]  # user and export folders empty once the plan's files are gone

    def summary(self) -> dict[str, int]:
        return {
            "temp_files_removed": len(self.temp_files),
            "orphan_zips_removed": len(self.orphans),
            "folders_removed": len(self.folders),
        }


@dataclass(frozen=True)
class BucketTidy:
    """In the ZIPs' bucket: the uploads of runs that are over, and objects no ready row points at."""

    uploads: frozenset[Upload]
    orphans: frozenset[str]

    def summary(self) -> dict[str, int]:
        return {"uploads_aborted": len(self.uploads), "orphan_zips_removed": len(self.orphans)}


@dataclass(frozen=True)
class CleanupPlan:
    """What one cleanup does (a plan), or did (`apply_cleanup`'s result, of the same shape)."""

    at: datetime  # the database's clock when planned: every age is measured from it
    kinds: dict[str, Expiry]  # each job kind's expiries and purges, by its name
    events: int  # events older than a day before `at` (no id is kept: there may be millions)
    # Each feature's purge by its name: a count, or the ids planned (then deleted).
    purges: dict[str, int | frozenset[int]]
    tidy: FolderTidy | BucketTidy

    def summary(self) -> dict[str, int]:
        """The counts the command line prints and the worker logs (the same for either)."""
        counts: dict[str, int] = {}
        for kind in KINDS:
            expired = self.kinds[kind.name].expire
            counts[kind.upkeep.expiring.counted_as] = sum(map(len, expired.values()))
        return {
            **counts,
            "purged": sum(len(expiry.purge) for expiry in self.kinds.values()),
            "events_purged": self.events,
            **self.tidy.summary(),
        }


def _read(value: int | list[int]) -> int | frozenset[int]:
    """A purge's plan as `past` read it: a count, or the ids of an array."""
    return value if isinstance(value, int) else frozenset(value)


def _counted(purges: dict[str, int | frozenset[int]]) -> str:
    """Each purge's count, by its name, for the log."""
    return ", ".join(f"{n if isinstance(n, int) else len(n)} {name}" for name, n in purges.items())


def _stored_files(kinds: dict[str, Expiry]) -> list[str]:
    """The stored paths of the files the expiries remove (a host's ZIP is never one)."""
    found = [
        path for expiry in kinds.values() for paths in expiry.expire.values() for path in paths
    ]
    return [path for path in found if path and not is_host_file(path)]


def old_files(
    root: Path, now: float, min_age: float = TEMP_MAX_AGE_SECONDS
) -> tuple[list[Path], list[Path]]:
    """(temp files, ZIPs) the service named under the user folders, older than `min_age`."""
    parts: list[Path] = []
    zips: list[Path] = []
    if not root.is_dir():
        return parts, zips
    for user_dir in root.iterdir():
        if not user_dir.is_dir() or user_dir.is_symlink():
            continue
        try:
            entries = list(user_dir.iterdir())
        except FileNotFoundError:
            continue  # removed meanwhile (emptied and removed by another cleanup)
        for entry in entries:
            own_temp = OWN_TEMP_RE.fullmatch(entry.name) is not None
            if not own_temp and OWN_ZIP_RE.fullmatch(entry.name) is None:
                continue
            with contextlib.suppress(FileNotFoundError):  # renamed or removed by a build meanwhile
                if now - entry.lstat().st_mtime > min_age and not entry.is_symlink():
                    (parts if own_temp else zips).append(entry)
    return parts, zips


def old_export_files(root: Path, now: float, min_age: float = TEMP_MAX_AGE_SECONDS) -> list[Path]:
    """Files under the exports' folders older than `min_age` seconds: temp files and parts."""
    found: list[Path] = []
    exports = root / EXPORTS_FOLDER
    if not exports.is_dir() or exports.is_symlink():
        return found
    for folder in exports.iterdir():
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if now - entry.lstat().st_mtime > min_age and entry.is_file():
                    found.append(entry)
    return found


async def plan_cleanup(st: WorkerState) -> CleanupPlan:
    """What a run would do now, changing nothing."""
    async with (
        st.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        await conn.execute(SET_NO_IDLE_BOUND)  # the store is listed between the statements
        at: datetime = await conn.fetchval("SELECT now()")
        kinds: dict[str, Expiry] = {}
        for kind in KINDS:  # what each kind expires, and purges
            sql, asked = kind.upkeep.expiring, _asked(kind, at, st.settings)
            rows = await conn.fetch(*sql.sql_plan_expire.bind(asked))
            expire = {r["id"]: tuple(r["files"]) for r in rows}
            purge = await conn.fetch(*sql.sql_plan_purge.bind(asked | {"ids": list(expire)}))
            kinds[kind.name] = Expiry(expire, frozenset(r["id"] for r in purge))
        row = await conn.fetchrow(*SQL_PLAN_COUNTS.bind({"clock": at}))
        assert row is not None
        if st.zips.store is not None:
            assert st.zips.bucket is not None
            access, store = st.settings.s3_access, st.zips.store
            dead = await dead_uploads(conn, st.zips.bucket, access)
            orphans = await unnamed_paths(conn, await own_objects(store, TEMP_MAX_AGE_SECONDS))
            tidy: FolderTidy | BucketTidy = BucketTidy(frozenset(dead), orphans)
        else:
            tidy = await _plan_folder(conn, st.settings.zip_path, _stored_files(kinds))
    return CleanupPlan(
        at=at,
        kinds=kinds,
        events=row["events"],
        purges={p.name: _read(row[p.name]) for p in PURGES},
        tidy=tidy,
    )


def _asked(kind: JobKind, at: datetime, settings: Settings) -> dict[str, object]:
    """The parameters of `kind`'s expiry statements as of `at` (each takes those it names)."""
    purge_args = kind.upkeep.expiring.purge_args(settings)
    return {"clock": at, "days": TERMINAL_RETENTION_DAYS, **purge_args}


async def _plan_folder(conn: Conn, root: Path, expired: list[str]) -> FolderTidy:
    temps, zips = await asyncio.to_thread(old_files, root, time.time())
    export_files = await asyncio.to_thread(old_export_files, root, time.time())
    orphans = await unnamed_files(conn, root, {*zips, *export_files})
    gone: set[Path] = {*temps, *orphans}
    for file_path in expired:
        with contextlib.suppress(VaultPathError):
            gone.add(own_zip_path(root, file_path))
    folders = await asyncio.to_thread(_emptied_folders, root, gone)
    return FolderTidy(frozenset(temps), orphans, folders)


def _emptied_folders(root: Path, gone: set[Path]) -> frozenset[Path]:
    """The user folders and export folders that hold nothing once `gone` is removed."""

    def emptied(folder: Path) -> bool:
        try:
            return all(entry in gone for entry in folder.iterdir())
        except OSError:
            return False

    found: list[Path] = []
    for parent in (root, root / EXPORTS_FOLDER):
        if parent.is_dir() and not parent.is_symlink():
            found += (d for d in parent.iterdir() if d.is_dir() and not d.is_symlink())
    return frozenset(d for d in found if emptied(d))


async def apply_cleanup(st: WorkerState, plan: CleanupPlan) -> CleanupPlan:
    """Do `plan`, and only it, a line per step; returns what was done."""
    pool, at = st.pool, plan.at
    # Each planned row's condition is checked again: what was expired, then purged.
    expired: dict[str, Expiry] = {}
    for kind in KINDS:
        ids = list(plan.kinds[kind.name].expire)
        rows = await pool.fetch(*kind.upkeep.expiring.sql_expire.bind({"clock": at, "ids": ids}))
        expired[kind.name] = Expiry({r["id"]: tuple(r["files"]) for r in rows}, frozenset())
    for file_path in _stored_files(expired):
        await st.zips.remove(file_path)
    counts = replace(plan, kinds=expired).summary()
    log.info(
        "cleanup: %d downloads past their expiry expired, their ZIPs removed; %d parts of "
        "expired exports removed",
        counts["expired"],
        counts["export_parts_expired"],
    )
    kinds: dict[str, Expiry] = {}
    for kind in KINDS:
        asked = _asked(kind, at, st.settings) | {"ids": list(plan.kinds[kind.name].purge)}
        rows = await pool.fetch(*kind.upkeep.expiring.sql_purge.bind(asked))
        kinds[kind.name] = Expiry(expired[kind.name].expire, frozenset(r["id"] for r in rows))
    events = int((await pool.execute(*SQL_PURGE_EVENTS.bind({"clock": at}))).split()[-1])
    purged: dict[str, int | frozenset[int]] = {}
    for p in PURGES:
        planned = plan.purges[p.name]
        if isinstance(planned, frozenset):
            rows = await pool.fetch(*p.purge.bind({"ids": list(planned)}))
            purged[p.name] = frozenset(r[0] for r in rows)
        else:
            purged[p.name] = int((await pool.execute(*p.purge.bind({"clock": at}))).split()[-1])
    done = replace(plan, kinds=kinds, events=events, purges=purged)
    log.info(
        "cleanup: %d old finished requests and %d old events purged; past their window: %s",
        done.summary()["purged"],
        events,
        _counted(purged),
    )
    if isinstance(plan.tidy, BucketTidy):
        assert st.zips.store is not None and st.zips.bucket is not None
        log.info("cleanup: tidying s3://%s/%s", st.zips.bucket.bucket, st.zips.bucket.prefix)
        if plan.tidy.uploads:
            await abort_uploads(st.zips.bucket, st.settings.s3_access, list(plan.tidy.uploads))
        orphans = await remove_objects(pool, st.zips.store, plan.tidy.orphans)
        tidy: FolderTidy | BucketTidy = BucketTidy(plan.tidy.uploads, orphans)
    else:
        log.info("cleanup: tidying the folder %s", st.settings.zip_path)
        unnamed = await unnamed_files(pool, st.settings.zip_path, set(plan.tidy.orphans))
        tidy = await asyncio.to_thread(_remove, plan.tidy.temp_files, unnamed, plan.tidy.folders)
    return replace(done, tidy=tidy)


async def unnamed_files(conn: Conn | asyncpg.Pool, root: Path, files: set[Path]) -> frozenset[Path]:
    """The ZIPs and export parts among `files` that no ready row points at."""
    stored = {f"{ZIP_PREFIX}{path.relative_to(root).as_posix()}": path for path in files}
    return frozenset(stored[name] for name in await unnamed_paths(conn, set(stored)))


def _remove(
    temps: frozenset[Path], orphans: frozenset[Path], folders: frozenset[Path]
) -> FolderTidy:
    """Removes the planned files still an hour old, then the folders left empty."""
    now = time.time()

    def removed(paths: frozenset[Path]) -> frozenset[Path]:
        done = []
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                if now - path.lstat().st_mtime <= TEMP_MAX_AGE_SECONDS:
                    continue  # written since it was planned
            path.unlink(missing_ok=True)
            done.append(path)
        return frozenset(done)

    temp_files, orphan_files = removed(temps), removed(orphans)
    emptied = []
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty
            emptied.append(folder)
    return FolderTidy(temp_files, orphan_files, frozenset(emptied))


async def daily_cleanup(ctx: dict[str, Any]) -> dict[str, int]:
    """The worker's daily job (and `python -m pmd_service cleanup`): plan, then apply."""
    st = state(ctx)
    done = await apply_cleanup(st, await plan_cleanup(st))
    summary = done.summary()
    log.info("cleanup: %s", summary)
    return summary


async def cleanup_dry_run(ctx: dict[str, Any]) -> dict[str, int | bool]:
    """What `daily_cleanup` would do now, in the same summary (plus `dry_run`)."""
    st = state(ctx)
    plan = await plan_cleanup(st)
    summary = plan.summary()
    log.info(
        "cleanup (dry run): %d downloads past their expiry would be expired, their ZIPs "
        "removed; %d parts of expired exports removed",
        summary["expired"],
        summary["export_parts_expired"],
    )
    log.info(
        "cleanup (dry run): %d old finished requests and %d old events would be purged; past "
        "their window: %s",
        summary["purged"],
        plan.events,
        _counted(plan.purges),
    )
    if isinstance(plan.tidy, BucketTidy):
        assert st.zips.bucket is not None
        log.info(
            "cleanup (dry run): in s3://%s/%s, %d uploads would be aborted and %d orphan ZIPs "
            "removed",
            st.zips.bucket.bucket,
            st.zips.bucket.prefix,
            len(plan.tidy.uploads),
            len(plan.tidy.orphans),
        )
    else:
        log.info(
            "cleanup (dry run): in the folder %s, %d temp files, %d orphan ZIPs and %d emptied "
            "folders would be removed",
            st.settings.zip_path,
            len(plan.tidy.temp_files),
            len(plan.tidy.orphans),
            len(plan.tidy.folders),
        )
    return {"dry_run": True, **summary}
