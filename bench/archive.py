"""One-off: a pixel-art account exported by the real worker in the archive other sites import
(`layout` activitypub) and as bags, and as bags by REV's worker, in turns, on one schema: each
part within its bound, the worker's RSS, and the time a byte. `python -m bench.archive
[--posts N] [--against REV]`."""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image

from bench import cli
from bench.build import Run, driving
from bench.export import Owner, export_done
from pmd_service.core.public_ids import PublicIds
from pmd_service.features.exports.job_sql import enqueue_export
from pmd_service.host.vault import artwork_path
from support import seeding
from support.measures import PeakRss, rss_kb
from support.release import CURRENT, PREVIOUS, Release, install
from support.stack import CHECKOUT, connected, fresh_stack

POSTS, ROUNDS, PART_BYTES = 20_000, 2, 256 << 20
WARM = 8  # posts of the export that warms a worker up before the one measured
DISTINCT = 200  # images drawn, each stored under many posts' keys
TARGET = {"vs_bag": 1.0, "growth_mb": 30.0}  # seconds a byte against the bag's; RSS growth


def _pixel_art(seed: int) -> bytes:
    """A PNG of pixel art: 32 to 192 pixels a side, 4 to 200 colours, dithered at random."""
    rng = random.Random(seed)
    side, colours = rng.randrange(32, 193), rng.randrange(4, 201)
    palette = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(colours)]
    image = Image.new("RGB", (side, side))
    image.putdata([palette[rng.randrange(colours)] for _ in range(side * side)])
    out = BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def seed_owner(run_conn: Any, settings: Any, handle: str, n: int) -> Owner:
    user = await seeding.Factory(run_conn, settings).user(handle)
    drawn = [_pixel_art(i) for i in range(DISTINCT)]
    keys = [uuid.uuid4() for _ in range(n)]
    shards = [f"{i % 64:02x}/{i * 7 % 64:02x}" for i in range(n)]
    data = [drawn[i % DISTINCT] for i in range(n)]
    created = [datetime.now(UTC) - timedelta(seconds=i) for i in range(n)]
    ids = PublicIds(settings.sqids_alphabet)
    sizes = [len(d) for d in data]
    post_ids = await seeding.posts_with_files(run_conn, ids, user.id, keys, shards, created, sizes)
    paths = [
        artwork_path(settings.vault_path, s, k, "png") for s, k in zip(shards, keys, strict=True)
    ]
    for path, d in zip(paths, data, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(d)
    await run_conn.execute("ANALYZE posts; ANALYZE post_files")
    return Owner(user.id, user.sqid, post_ids, paths, sum(sizes))


async def export(run: Run, owner: Owner, layout: str | None) -> dict[str, Any]:
    """One export of `owner`'s account (`layout`: asked for; None: a release before it)."""
    columns: dict[str, Any] = {"layout": layout} if layout else {}
    export_id = await seeding.insert_row(
        run.conn,
        "exports",
        user_id=owner.id,
        user_sqid=owner.sqid,
        part_bytes=PART_BYTES,
        artwork_count=len(owner.post_ids),
        **columns,
    )
    await enqueue_export(run.redis, export_id)
    baseline = rss_kb(run.worker_pid)
    with PeakRss(lambda: rss_kb(run.worker_pid)) as rss:
        done = await export_done(run, (export_id, 0.0), owner)
    await run.conn.execute("DELETE FROM exports WHERE id = $1", export_id)
    growth = (rss.peak - baseline) / 1024
    return done | {"rss_growth_mb": growth, "s_per_gb": done["build_s"] / (done["bytes"] / 1e9)}


async def bench(posts: int, rounds: int, against: str) -> dict[str, Any]:
    sides: dict[str, list[dict[str, Any]]] = {"archive": [], "bag": [], "bag_before": []}
    (CHECKOUT / ".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CHECKOUT / ".data") as folder:
        before = await asyncio.to_thread(install, against, Path(folder))
        async with fresh_stack() as settings:
            async with connected(settings.database_url, "pmd-bench") as conn:
                owner = await seed_owner(conn, settings, "archivist", posts)
                warm = await seed_owner(conn, settings, "warm", WARM)
            print(f"seeded {posts:,} artworks, {owner.bytes / 1e6:.0f} MB", flush=True)
            turns: list[tuple[str, Release, str | None]] = [
                ("archive", CURRENT, "activitypub"),
                ("bag", CURRENT, "bagit"),
                ("bag_before", before, None),
            ]
            for r in range(rounds):
                for side, release, layout in turns[:: -1 if r % 2 else 1]:
                    async with driving(settings, release.argv("worker"), **release.env) as run:
                        await export(run, warm, layout)  # every path loaded, pools made
                        done = await export(run, owner, layout)
                    cli.show(f"  round {r + 1}, {side}", done)
                    sides[side].append(done)
    out: dict[str, Any] = {"posts": posts, "bytes": owner.bytes, "part_bytes": PART_BYTES}
    out |= {"before": before.name, "rounds": rounds, "target": TARGET}
    for side, runs in sides.items():
        out[side] = {
            "s_per_gb": statistics.median(d["s_per_gb"] for d in runs),
            "build_s": statistics.median(d["build_s"] for d in runs),
            "parts": runs[0]["parts"],
            "bytes": runs[0]["bytes"],
            "rss_growth_mb": max(d["rss_growth_mb"] for d in runs),
        }
    out["vs_bag"] = out["archive"]["s_per_gb"] / out["bag"]["s_per_gb"]
    out["vs_bag_before"] = out["archive"]["s_per_gb"] / out["bag_before"]["s_per_gb"]
    return out


if __name__ == "__main__":
    parser = cli.parser("archive", __doc__)
    parser.add_argument("--posts", type=int, default=POSTS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--against", default=PREVIOUS, metavar="REV", help="the bag's baseline")
    args = parser.parse_args()
    figures = asyncio.run(bench(args.posts, args.rounds, args.against))
    cli.show("the archive layout against the bag", figures)
    cli.save(args.json, figures)
