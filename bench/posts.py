"""Benchmark of the posts endpoints over loopback: `python -m bench.posts`. `--against REV`:
pages 1 and 19 only, from this checkout's server and REV's (a tag, or `previous`) in turns."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from bench import cli
from pmd_service.core.db import create_pool
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.features.posts.actions import HIDE
from pmd_service.features.posts.batch_sql import statement
from pmd_service.features.posts.cursor import Cursor
from pmd_service.web.app import create_app
from support import seeding, stack
from support.measures import percentile
from support.release import CURRENT, Release, install

POSTS, OTHER_POSTS, PAGE, BATCH = 10_000, 20_000, 512, 128
TARGET_RATIO = {True: 1.3, False: 1.6}  # GET p50 / floor p50, with post sqids set and NULL
TARGET_SCALE_RATIO = 1.2  # the big user's GET p50 / the 10,000-post user's, page for page

LIVE = "owner_id = $1 AND kind = 'artwork' AND NOT deleted_by_user"
SQL_OWNED = f"SELECT id FROM posts WHERE {LIVE} ORDER BY id"
_HIDE_BY_IDS = statement(HIDE, moderator=False, by_filter=False)
SQL_NTH_KEY = f"""
SELECT created_at, id FROM posts WHERE {LIVE} ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1
"""

# The floor, written here so that a slower service query cannot lower the bar.
FLOOR_COLUMNS = """
SELECT p.id, p.public_sqid, p.title, p.description, p.created_at, p.width, p.height,
       p.frame_count, p.art_url, p.hidden_by_user, p.hidden_by_mod, p.view_count,
       p.deleted_by_user_date, l.identifier AS license_identifier, p.hashtags, p.mod_hashtags,
       p.remixable, p.mkpx_file_bytes AS layers_bytes,
       (SELECT '[' || string_agg('{"format":' || to_json(pf.format)::text
                                 || ',"file_bytes":' || coalesce(pf.file_bytes::text, 'null')
                                 || ',"is_native":' || pf.is_native::text || '}',
                                 ',' ORDER BY pf.is_native DESC, pf.format) || ']'
        FROM post_files pf WHERE pf.post_id = p.id) AS files,
       (SELECT count(*) FROM reactions r WHERE r.post_id = p.id) AS reaction_count,
       (SELECT count(*) FROM comments c WHERE c.post_id = p.id AND NOT c.hidden_by_mod
           AND NOT c.deleted_by_owner AND NOT c.deleted_by_mod) AS comment_count"""
_FLOOR_TOTAL = """,
       (SELECT count(*) FROM posts t WHERE t.owner_id = $1 AND t.kind = 'artwork'
           AND NOT t.deleted_by_user) AS total_count"""
LIVE_MATCH = "p.owner_id = $1 AND p.kind = 'artwork' AND NOT p.deleted_by_user"
_FLOOR_FROM = f"""
FROM posts p LEFT JOIN licenses l ON l.id = p.license_id
WHERE {LIVE_MATCH}
"""
ORDER = "ORDER BY p.created_at DESC, p.id DESC LIMIT $2"
# A first page also names its set (`match_digest`): its floor makes the same digest.
DIGEST = """md5(count(p.id) || ':' || coalesce(sum(hashint4(p.id)), 0) || ':'
    || coalesce(sum(hashint4extended(p.id, 1) % 2147483647), 0))"""
TOTALS = "CROSS JOIN (SELECT count(*), {} FROM posts p WHERE {}) AS t (total_count, digest)"


def newest_floor(match: str, order: str = ORDER) -> str:
    """The floor of a first page, newest first: its rows, the matching set's count and digest."""
    return f"""{FLOOR_COLUMNS}, t.total_count, t.digest
FROM posts p LEFT JOIN licenses l ON l.id = p.license_id {TOTALS.format(DIGEST, match)}
WHERE {match}
{order}"""


FLOOR_FIRST = newest_floor(LIVE_MATCH)
FLOOR_AFTER = (
    FLOOR_COLUMNS + _FLOOR_TOTAL + _FLOOR_FROM + "AND (p.created_at, p.id) < ($3, $4) " + ORDER
)


@dataclass(frozen=True)
class Lister(seeding.UserRow):
    posts: int
    sqids: bool


async def seed_listers(
    settings: Settings, wanted: dict[str, tuple[int, bool]]
) -> dict[str, Lister]:
    """Users named by `wanted` (name: (live artworks, with post sqids)), among another's posts."""
    ids = PublicIds(settings.sqids_alphabet)
    async with stack.connected(settings.database_url, "pmd-bench-seed") as conn:
        other, fan, *listers = await seeding.bulk_users(conn, settings, "bench", len(wanted) + 2)
        license_id = await seeding.insert_row(
            conn, "licenses", identifier="CC-BY-4.0", title="CC BY 4.0"
        )
        with_sqids: list[int] = []

        async def posts(user: int, count: int, kind: str, deleted: bool, sqids: bool) -> None:
            made = await seeding.listed_posts(conn, user, count, kind, license_id, deleted)
            with_sqids.extend(made if sqids else [])

        # The other user's posts before and after: the listed ones are not alone in the table.
        await posts(other.id, OTHER_POSTS // 2, "artwork", False, True)
        for user, (count, sqids) in zip(listers, wanted.values(), strict=True):
            await posts(user.id, count, "artwork", False, sqids)
            await posts(user.id, 300, "playlist", False, sqids)
            await posts(user.id, 300, "artwork", True, sqids)
        await posts(other.id, OTHER_POSTS // 2, "artwork", False, True)
        await seeding.set_sqids(conn, ids, "posts", with_sqids)
        await seeding.files_comments_reactions(conn, fan.id)
        await conn.execute("VACUUM ANALYZE")
        listed = ", ".join(f"{name} {n:,}" for name, (n, _) in wanted.items())
        print(f"seeded: listed {listed}, among {OTHER_POSTS:,} posts of another user")
    return {
        name: Lister(user.id, user.sqid, user.handle, user.token, count, sqids)
        for user, (name, (count, sqids)) in zip(listers, wanted.items(), strict=True)
    }


def pair(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(samples), "p99_ms": percentile(samples, 0.99)}


def unpaced(settings: Settings) -> Settings:
    """`settings` whose pace and budgets are still checked on every action but never refuse one."""
    return cli.replace(
        settings,
        bulk_actions_per_minute=100_000,
        bulk_changed_posts_per_minute=10_000_000,
        bulk_changed_posts_per_hour=100_000_000,
        bulk_changed_posts_site_per_minute=100_000_000,
    )


@contextlib.asynccontextmanager
async def served(
    settings: Settings, app: web.Application | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    """`app` (default: `create_app`) on a loopback port, and a client holding one connection."""
    runner = web.AppRunner(app or create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(f"http://{host}:{port}", connector=connector) as http:
            yield http
    finally:
        await runner.cleanup()


async def ms(operation: Awaitable[object]) -> float:
    start = time.perf_counter()
    await operation
    return (time.perf_counter() - start) * 1000


def against(http: list[float], sql: list[float]) -> dict[str, Any]:
    return {
        "http": pair(http),
        "sql": pair(sql),
        "ratio": statistics.median(http) / statistics.median(sql),
    }


Call = Callable[[], Awaitable[object]]


async def against_floor(
    calls: list[tuple[Call, Call]], rounds: int, warm: int = 5, reset: Call | None = None
) -> list[tuple[list[float], list[float]]]:
    """Each API call and its floor's times (ms), interleaved so that noise hits all alike."""
    times: list[tuple[list[float], list[float]]] = [([], []) for _ in calls]
    for r in range(warm + rounds):
        for (api, floor), (api_ms, floor_ms) in zip(calls, times, strict=True):
            for call, out in ((api, api_ms), (floor, floor_ms)):
                took = await ms(call())
                if reset is not None:
                    await reset()
                if r >= warm:
                    out.append(took)
    return times


@dataclass
class Series:
    http: aiohttp.ClientSession
    conn: asyncpg.Connection
    user: Lister
    page: int
    after: Cursor | None  # the cursor the API gives for this page (None: the first)

    async def get(self) -> bytes:
        return await listed(self.http, self.user, self.after.encode() if self.after else None)

    async def floor(self) -> list[Any]:
        if self.after is None:
            return await self.conn.fetch(FLOOR_FIRST, self.user.id, PAGE + 1)
        return await self.conn.fetch(
            FLOOR_AFTER, self.user.id, PAGE + 1, self.after.key, self.after.post_id
        )

    def figures(self, http: list[float], sql: list[float]) -> dict[str, Any]:
        return {
            "posts": self.user.posts,
            "sqids": self.user.sqids,
            "page": self.page,
            **against(http, sql),
            "target": TARGET_RATIO[self.user.sqids],
        }


async def series(
    http: aiohttp.ClientSession, conn: asyncpg.Connection, user: Lister, page: int
) -> Series:
    if page == 1:
        return Series(http, conn, user, page, None)
    key = await conn.fetchrow(SQL_NTH_KEY, user.id, (page - 1) * PAGE - 1)
    assert key is not None
    return Series(http, conn, user, page, Cursor(False, key["created_at"], key["id"]))


DELETED_ONLY = ("deleted_by_user_date", "restorable", "restore_refusal", "held_by")


async def check(s: Series) -> None:
    """The API's page has the user's posts, and the floor's rows carry its data."""
    body, rows = json.loads(await s.get()), await s.floor()
    assert rows and rows[0]["total_count"] == s.user.posts
    assert body["total_count"] == s.user.posts
    assert body["match_digest"] == (rows[0]["digest"] if s.after is None else None)
    assert (body["items"][0]["public_sqid"] is not None) == s.user.sqids
    for row, item in zip(rows, body["items"], strict=False):
        expected = dict(item)
        assert datetime.fromisoformat(expected.pop("created_at")) == row["created_at"]
        # Only the deleted listing fills these; a live post's are null, which the floor need not read.
        for key in DELETED_ONLY:
            assert expected.pop(key, None) is None, (key, item)
        # The seeded descriptions mention nobody: the stored text is the plain one.
        assert expected.pop("mentions") == [], item
        assert expected.pop("description_markup") == row["description"], item
        got = {k: row[k] for k in expected if k != "files"} | {"files": json.loads(row["files"])}
        assert got == expected, (got, expected)
    assert len(rows) == len(body["items"]) + (body["next_cursor"] is not None)


async def listed(http: aiohttp.ClientSession, user: Lister, cursor: str | None) -> bytes:
    params = {"limit": str(PAGE)} | ({"cursor": cursor} if cursor else {})
    async with http.get("/api/pmd/posts", params=params, headers=user.auth) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def walk(http: aiohttp.ClientSession, user: Lister) -> list[str | None]:
    """The cursor of each page as the API gives it (the first's None), seeing each post once."""
    seen: list[int] = []
    cursors: list[str | None] = [None]
    while cursors[-1] or len(cursors) == 1:
        body = json.loads(await listed(http, user, cursors[-1]))
        seen += [item["id"] for item in body["items"]]
        cursors.append(body["next_cursor"])
    assert len(seen) == len(set(seen)) == user.posts, (len(seen), len(set(seen)))
    cli.show("listing, each post once", {"pages": len(cursors) - 1, "posts": len(seen)})
    return cursors[:-1]


async def actions(
    http: aiohttp.ClientSession, pool: asyncpg.Pool, user: Lister, requests: int
) -> tuple[list[float], list[float]]:
    """A 128-id hide through the API against its statement run directly, each undone after."""
    owned = [r["id"] for r in await pool.fetch(SQL_OWNED, user.id)]
    chunks = itertools.cycle(owned[i : i + BATCH] for i in range(0, len(owned) - BATCH + 1, BATCH))
    await pool.execute("UPDATE posts SET hidden_by_user = false")
    chunk: list[int] = []

    async def sql_hide(hidden: bool) -> None:
        row = await pool.fetchrow(
            *_HIDE_BY_IDS.bind(
                {"owner": user.id, "post_ids": chunk, "action": "hide", "actor": None}
                | {"room": 2**31 - 1, "click": None, "v0": hidden}
            )
        )
        assert row is not None and row["changed"] == BATCH

    async def hide() -> None:
        chunk[:] = next(chunks)
        payload = {"action": "hide", "post_ids": chunk}
        async with http.post("/api/pmd/action", json=payload, headers=user.auth) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["affected_count"] == BATCH

    async def floor() -> None:
        chunk[:] = next(chunks)
        await sql_hide(True)

    [timed] = await against_floor([(hide, floor)], requests, warm=10, reset=lambda: sql_hide(False))
    return timed


async def bench(settings: Settings, requests: int, depths: list[int], big: int) -> dict[str, Any]:
    wanted = {"sqids": (POSTS, True), "no sqids": (POSTS, False)}
    wanted |= {"big": (big, True)} if big else {}
    listers = await seed_listers(settings, wanted)
    main_user = listers["sqids"]
    pool = await create_pool(settings.database_url, "pmd-bench-floor", min_size=1, max_size=1)
    async with (
        pool,
        stack.connected(settings.database_url, "pmd-bench-floor") as conn,
        served(unpaced(settings)) as http,
    ):
        pages = len(await walk(http, main_user))
        at = partial(series, http, conn)
        # Keyset pagination: page 19 should cost what page 1 does.
        cases = [await at(u, p) for u in listers.values() for p in (1, 19)]
        ends = {"first": 1, "last": pages} | {f"page {d}": d for d in depths if 1 <= d <= pages}
        by_end = {k: await at(main_user, p) for k, p in ends.items()}
        every = [*cases, *by_end.values()]
        for s in every:
            await check(s)
        times = await against_floor([(s.get, s.floor) for s in every], requests)
        hide, hide_sql = await actions(http, pool, main_user, requests)

    def items(page: int) -> int:
        return PAGE if page < pages else POSTS - PAGE * (pages - 1)

    figures = [s.figures(*t) for s, t in zip(every, times, strict=True)]
    by_case, ended = figures[: len(cases)], dict(zip(by_end, figures[len(cases) :], strict=True))
    first, last = ended["first"], ended["last"]
    scale = {
        str(small["page"]): large["http"]["p50_ms"] / small["http"]["p50_ms"]
        for small, large in zip(by_case[:2], by_case[4:], strict=False)
    }
    for s, f in zip(every, figures, strict=True):
        cli.show(f"GET …/posts?limit={PAGE}, page {s.page} of {s.user.posts:,}", f)
    cli.show(f"POST /api/pmd/action, {BATCH} ids", against(hide, hide_sql))
    cli.show(f"page 1 and 19: GET p50 with {big:,} posts / with {POSTS:,}", scale)
    return {
        "posts": POSTS,
        "page_size": PAGE,
        "pages": pages,
        "requests": requests,
        "first": first["http"],
        "first_sql": first["sql"],
        "last": last["http"],
        "last_sql": last["sql"],
        "last_items": POSTS % PAGE,
        "hide": pair(hide),
        "hide_sql": pair(hide_sql),
        "depths": [
            {"page": f["page"], "items": items(f["page"]), "http": f["http"], "sql": f["sql"]}
            for k, f in ended.items()
            if k.startswith("page ")
        ],
        "cases": by_case,
        "big_posts": big,
        "scale": scale,
        "scale_target": TARGET_SCALE_RATIO,
    }


# A release's own floors (a first page, a later one) and page key, from its bench/posts.py.
OWN_FLOORS = "import json, bench.posts as b; print(json.dumps([b.FLOOR_FIRST, b.FLOOR_AFTER, b.SQL_NTH_KEY]))"


def own_floors(release: Release, src: Path) -> list[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(src)}
    run = subprocess.run([release.python, "-c", OWN_FLOORS], cwd=src, env=env, capture_output=True)
    if run.returncode:
        raise RuntimeError(f"{src}/bench/posts.py: {run.stderr.decode()[-800:]}")
    return list(json.loads(run.stdout))


async def against_release(settings: Settings, rev: str, rounds: int) -> dict[str, Any]:
    """Pages 1 and 19 from this server and `rev`'s on one database, each against its own floor."""
    [user] = (await seed_listers(settings, {"sqids": (POSTS, True)})).values()
    fast = msgspec.structs.asdict(unpaced(settings))
    lifted = {k.upper(): str(v) for k, v in fast.items() if v != getattr(settings, k)}
    env = cli.service_env(settings, SERVER_PROCESSES="1", **lifted)
    calls: list[tuple[Call, Call]] = []
    (stack.CHECKOUT / ".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=stack.CHECKOUT / ".data") as folder:
        other = await asyncio.to_thread(install, rev, Path(folder))
        async with (
            contextlib.AsyncExitStack() as up,
            stack.connected(settings.database_url, "pmd-bench-floor") as conn,
        ):
            for release, src in ((CURRENT, stack.CHECKOUT), (other, Path(folder) / "src")):
                first, after, nth = await asyncio.to_thread(own_floors, release, src)
                argv = stack.SERVER if release is CURRENT else release.argv("serve")
                port, log = stack.free_port(), up.enter_context((Path(folder) / "logs").open("ab"))
                server = await asyncio.to_thread(
                    stack.start_server, env | release.env, port, log, argv
                )
                up.callback(stack.stop, server)
                connector = aiohttp.TCPConnector(limit=1)
                http = aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector)
                cursors = await walk(await up.enter_async_context(http), user)
                key = await conn.fetchrow(nth, user.id, 18 * PAGE - 1)  # page 19's, as below
                assert key is not None
                for cursor, sql, *keyed in ((None, first), (cursors[18], after, *key)):
                    at = partial(conn.fetch, sql, user.id, PAGE + 1, *keyed)
                    calls.append((partial(listed, http, user, cursor), at))
            times = await against_floor(calls, rounds)
    sides, pages = {"this": CURRENT.name, "baseline": other.name}, ("1", "19")
    out: dict[str, Any] = {p: {} for p in pages}
    for (side, p), timed in zip(itertools.product(sides, pages), times, strict=True):
        out[p][side] = against(*timed)
        cli.show(f"GET …/posts?limit={PAGE}, page {p}, {sides[side]}", out[p][side])
    return sides | {"rounds": rounds, "pages": out}


if __name__ == "__main__":
    parser = cli.parser("posts", __doc__)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per series")
    parser.add_argument("--depths", default="1,5,10,19", help="pages timed for latency by depth")
    parser.add_argument(
        "--big",
        type=int,
        default=100_000,
        help=f"artworks of a third user, timed against the {POSTS:,}-post one (0: none)",
    )
    parser.add_argument("--against", metavar="REV", help="pages 1 and 19 beside REV's (a tag)")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",") if d.strip()]
    if args.against:
        cli.save(args.json, cli.in_stack(against_release, args.against, max(args.requests, 1)))
    else:
        cli.save(args.json, cli.in_stack(bench, max(args.requests, 1), depths, args.big))
