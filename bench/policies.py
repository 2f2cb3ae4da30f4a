"""The cleanup policies' tick at a site's scale: OWNERS owners of POSTS posts, MATCHING older
than a year, each with one policy due in the same minute, run by WORKERS workers' minute ticks
until none is due; against its floor (one UPDATE an owner), checking each ran once (its runs
counted, not its history entries) and hid its.
Beside it, a probe process times another owner's posts list and one event to their stream on a
server process, while the ticks run and for QUIET seconds before and after them.

`python -m bench.policies` (100,000 owners of 200 posts, 20 matching, one worker as shipped);
`--ci`: 200 owners of 20 posts; `--save`: kept in bench/figures/policies.json."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bench import cli
from bench.posts import pair
from bench.runner import BENCHMARKS, run_one
from bench.sse import STEP
from pmd_service.core.db import create_pool
from pmd_service.core.settings import Settings
from pmd_service.features.posts.policies.runs import run_due_policies
from pmd_service.jobs.context import job_context, state
from support import stack
from support.seeding import bdr_row, bulk_users
from support.sse import SSE, open_stream

OWNERS, POSTS, MATCHING, WORKERS = 100_000, 200, 20, 1
CI = {"owners": 200, "posts": 20, "matching": 4}
QUIET, CI_QUIET = 30.0, 5.0  # seconds probed with no run, before the ticks and after them
PROBE_PAUSE = 0.05  # seconds between a probe's turns, so that its own load stays small
PROBE_WARM = 10  # a probe's first turns, not counted
FOREVER = aiohttp.ClientTimeout()  # the stream lasts the whole run (aiohttp's default: 5 min)
TARGET_BESIDE = 1.1  # the list's p50 and the event's p99 while runs run ÷ without them
USERS_A_STATEMENT = 5_000  # users (and their posts) seeded a statement
SQL_POSTS = """
INSERT INTO posts (storage_key, storage_shard, owner_id, title, created_at)
SELECT gen_random_uuid(), 'pol', u.id, 'post ' || g,
       now() - CASE WHEN g <= $2 THEN interval '400 days' ELSE interval '30 days' END
             - g * interval '1 minute'
FROM unnest($1::int[]) AS u(id), generate_series(1, $3) AS g
"""
SQL_POLICIES = """
INSERT INTO cleanup_policies (owner_id, name, action, older_than_days, every, next_run_at)
SELECT id, 'older than a year', 'hide', 365, 'day', now() FROM unnest($1::int[]) AS id
"""
SQL_DUE = "SELECT count(*) FROM cleanup_policies WHERE enabled AND next_run_at <= now()"
# Every run a policy records (its `last_run`, even when it changed nothing and wrote no
# history), kept by this run's own database: a second run of one policy is counted.
SQL_COUNT_RUNS = """
CREATE UNLOGGED TABLE bench_policy_runs (policy_id uuid NOT NULL, status text);
CREATE FUNCTION bench_policy_ran() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_policy_runs VALUES (NEW.id, NEW.last_run->>'status');
    RETURN NULL;
END $$;
CREATE TRIGGER bench_policy_ran AFTER UPDATE OF last_run ON cleanup_policies FOR EACH ROW
WHEN (NEW.last_run IS DISTINCT FROM OLD.last_run) EXECUTE FUNCTION bench_policy_ran()
"""
# Each policy's runs, apart from those the site's budget deferred to the next tick: one each.
SQL_RUNS = """
SELECT count(*) FILTER (WHERE n = 1) AS once, count(*) FILTER (WHERE n > 1) AS more,
       count(*) FILTER (WHERE n = 0) AS never, sum(n)::int AS runs,
       (SELECT count(*) FROM bench_policy_runs WHERE status = 'deferred') AS deferred
FROM (SELECT p.id, count(r.policy_id) FILTER (WHERE r.status IS DISTINCT FROM 'deferred') AS n
      FROM cleanup_policies p LEFT JOIN bench_policy_runs r ON r.policy_id = p.id
      GROUP BY p.id) AS each
"""
SQL_HIDDEN = "SELECT count(*) FROM posts WHERE storage_shard = 'pol' AND hidden_by_user"
SQL_STATUSES = "SELECT last_run->>'status' AS status, count(*) FROM cleanup_policies GROUP BY 1"
# The floor's copy of the posts: the same rows, in a table of their own.
SQL_COPY = """
CREATE TABLE floor_posts AS SELECT id, owner_id, created_at, hidden_by_user FROM posts
WHERE storage_shard = 'pol';
CREATE INDEX ON floor_posts (owner_id, created_at)
"""
SQL_FLOOR_HIDE = """
UPDATE floor_posts SET hidden_by_user = true
WHERE owner_id = $1 AND created_at < now() - interval '365 days' AND NOT hidden_by_user
"""


async def seed(settings: Settings, owners: int, posts: int, matching: int) -> list[int]:
    ids: list[int] = []
    async with stack.connected(settings.database_url, "pmd-bench-seed") as conn:
        for start in range(0, owners, USERS_A_STATEMENT):
            n = min(USERS_A_STATEMENT, owners - start)
            made = [u.id for u in await bulk_users(conn, settings, f"pol{start}", n)]
            await conn.execute(SQL_POSTS, made, matching, posts)
            await conn.execute(SQL_POLICIES, made)
            ids += made
        await conn.execute(SQL_COPY)
        await conn.execute(SQL_COUNT_RUNS)
        await conn.execute("VACUUM ANALYZE")
    return ids


# When the last run began (its `last_run.at`), in seconds since the epoch.
SQL_LAST_RUN = (
    "SELECT extract(epoch FROM max((last_run->>'at')::timestamptz)) FROM cleanup_policies"
)


async def ticks(settings: Settings, workers: int, busy: list[tuple[float, float]]) -> float:
    """Seconds until every policy has run once, `workers` workers ticking every minute; each
    tick's wall-clock span goes into `busy`."""
    started, began = time.perf_counter(), time.time()

    async def worker() -> None:
        async with job_context(settings) as ctx:
            while True:
                tick = time.time()
                ran = await run_due_policies(ctx)
                busy.append((tick, time.time()))
                if not ran or not await state(ctx).pool.fetchval(SQL_DUE):
                    return
                await asyncio.sleep(60 - (time.perf_counter() - started) % 60)  # the next minute

    await asyncio.gather(*(worker() for _ in range(workers)))
    async with stack.connected(settings.database_url, "pmd-bench-check") as conn:
        return float(await conn.fetchval(SQL_LAST_RUN)) - began


async def seed_probe(settings: Settings, posts: int) -> tuple[str, uuid.UUID]:
    """The probe's owner, with `posts` posts and no policy: a token and a BDR to step."""
    async with stack.connected(settings.database_url, "pmd-bench-seed") as conn:
        (owner,) = await bulk_users(conn, settings, "probe", 1)
        await conn.execute(SQL_POSTS, [owner.id], 0, posts)
        return owner.token, await bdr_row(conn, owner.id, [1], status="processing")


async def probe(port: int, token: str, bdr_id: str, database_url: str) -> None:
    """Until SIGTERM, in turns: the owner's first page of posts, then one event to their stream;
    then each turn's wall-clock time and its milliseconds (the list, the event, and the event's
    write with its commit and its delivery apart), as JSON on stdout."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    turns: list[tuple[float, ...]] = []
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=auth, timeout=FOREVER) as http,
        stack.connected(database_url, "pmd-bench-probe") as db,
        open_stream(http, SSE) as stream,
    ):
        await stream.opening()
        while not stop.is_set():
            if len(turns) == PROBE_WARM:
                print("warm", flush=True)
            at, t0 = time.time(), time.perf_counter()
            async with http.get("/api/pmd/posts") as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            t1 = time.perf_counter()
            await db.execute(STEP, uuid.UUID(bdr_id))
            t2 = time.perf_counter()
            await stream.updates(1)
            t3 = time.perf_counter()
            spans = ((t0, t1), (t1, t3), (t1, t2), (t2, t3))
            turns.append((at, *((b - a) * 1000 for a, b in spans)))
            await asyncio.sleep(PROBE_PAUSE)
    print(json.dumps(turns[PROBE_WARM:]))


@contextlib.asynccontextmanager
async def probing(*args: object) -> AsyncIterator[list[list[float]]]:
    """A probe process (`probe`'s arguments) while the block runs: its turns, once it ended."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench.policies", "--probe", *map(str, args)),
        stdout=asyncio.subprocess.PIPE,
        cwd=stack.CHECKOUT,
    )
    assert proc.stdout is not None
    turns: list[list[float]] = []
    try:
        await proc.stdout.readline()  # warm: it times what the block does from here on
        yield turns
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the probe exited with {proc.returncode}")
    turns += json.loads(out)


def beside(
    quiet: list[list[float]], during: list[list[float]], busy: list[tuple[float, float]]
) -> dict[str, Any]:
    """The list's and the event's times with no run and while a tick ran, and their ratios."""
    running = [t for t in during if any(a <= t[0] <= b for a, b in busy)]
    figures: dict[str, Any] = {}
    for i, name in enumerate(("list", "event", "event_write", "event_delivery"), start=1):
        without, within = [t[i] for t in quiet], [t[i] for t in running]
        figures[name] = {"samples": [len(without), len(within)]}
        if without and within:  # a short run (--ci) may end between two turns
            base, now = pair(without), pair(within)
            ratios = {f"{p}_ratio": now[f"{p}_ms"] / base[f"{p}_ms"] for p in ("p50", "p99")}
            figures[name] |= {"without": base, "running": now, **ratios}
    return figures


async def floor(settings: Settings, owners: list[int], workers: int) -> float:
    """Seconds to hide each owner's matching posts by one UPDATE a transaction."""
    pool = await create_pool(
        settings.database_url, "pmd-bench-floor", min_size=workers, max_size=workers
    )
    queue = list(reversed(owners))

    async def worker() -> None:
        async with pool.acquire() as conn:
            while queue:
                owner = queue.pop()
                async with conn.transaction():
                    await conn.execute(SQL_FLOOR_HIDE, owner)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return time.perf_counter() - started
    finally:
        await pool.close()


async def bench(
    settings: Settings,
    owners: int,
    posts: int,
    matching: int,
    workers: int,
    quiet: float,
    lifted: bool = False,
    busy_share: float | None = None,
) -> dict[str, Any]:
    changed = owners * matching
    if busy_share is not None:
        settings = cli.replace(settings, policy_busy_share=busy_share)
    if lifted:
        # The runs' own cost, the site's budget aside (the write budget's one-off measured that).
        settings = cli.roomy(
            settings,
            bulk_changed_posts_site_per_minute=changed,
            bulk_changed_posts_site_background_per_minute=changed,
        )
    made = await seed(settings, owners, posts, matching)
    token, bdr_id = await seed_probe(settings, posts)
    floor_s = await floor(settings, made, workers)
    port, busy = stack.free_port(), list[tuple[float, float]]()
    log_path = stack.CHECKOUT / ".data" / "bench" / "policies-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        server = await asyncio.to_thread(stack.start_server, cli.service_env(settings), port, log)
    probed = (port, token, bdr_id, settings.database_url)
    try:
        async with probing(*probed) as before:
            await asyncio.sleep(quiet)
        async with probing(*probed) as during:
            tick_s = await ticks(settings, workers, busy)
        async with probing(*probed) as after:
            await asyncio.sleep(quiet)
    finally:
        await asyncio.to_thread(stack.stop, server)
    side = beside(before + after, during, busy)
    async with stack.connected(settings.database_url, "pmd-bench-check") as conn:
        due = await conn.fetchval(SQL_DUE)
        runs = await conn.fetchrow(SQL_RUNS)
        assert runs is not None  # an aggregate always has its row
        hidden = await conn.fetchval(SQL_HIDDEN)
        statuses = {r["status"]: r["count"] for r in await conn.fetch(SQL_STATUSES)}
    figures = {
        "owners": owners,
        "posts": posts,
        "matching": matching,
        "workers": workers,
        "seconds": tick_s,
        "runs_a_second": owners / tick_s,
        "floor_seconds": floor_s,
        "vs_floor": tick_s / floor_s,
        "still_due": due,
        "counted": "runs",  # earlier figures counted history entries, blind to an empty run
        "runs": runs["runs"],
        "deferred_runs": runs["deferred"],
        "ran_once": runs["once"],
        "ran_more": runs["more"],
        "never_ran": runs["never"],
        "hidden": hidden,
        "statuses": statuses,
        "beside": side,
        "beside_target": TARGET_BESIDE,
    }
    cli.show(f"{owners:,} policies due at once, {workers} worker(s), against the floor", figures)
    assert due == 0 and runs["more"] == 0 and runs["never"] == 0, figures
    assert hidden == changed, figures
    return figures


if __name__ == "__main__":
    parser = cli.parser("policies", __doc__)
    parser.add_argument("--owners", type=int, default=OWNERS, help="owners, one policy each")
    parser.add_argument("--posts", type=int, default=POSTS, help="posts an owner")
    parser.add_argument("--matching", type=int, default=MATCHING, help="of them, older than a year")
    parser.add_argument("--workers", type=int, default=WORKERS, help="workers' ticks at once")
    parser.add_argument("--ci", action="store_true", help="200 owners of 20 posts, nothing saved")
    parser.add_argument("--lifted", action="store_true", help="lift the site's budgets (recorded)")
    parser.add_argument("--busy-share", type=float, help="its POLICY_BUSY_SHARE (recorded)")
    parser.add_argument("--save", action="store_true", help="run as bench/runner does, kept")
    parser.add_argument("--probe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        port, token, bdr_id, database_url = args.probe
        sys.exit(asyncio.run(probe(int(port), token, bdr_id, database_url)))
    if args.save:
        why = run_one(next(b for b in BENCHMARKS if b.name == "policies"))
        sys.exit(f"policies: {why}" if why else 0)
    size = (
        CI if args.ci else {"owners": args.owners, "posts": args.posts, "matching": args.matching}
    )
    quiet = CI_QUIET if args.ci else QUIET
    figures = cli.in_stack(bench, *size.values(), args.workers, quiet, args.lifted, args.busy_share)
    cli.save(args.json, figures)
