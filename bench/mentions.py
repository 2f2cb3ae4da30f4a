"""What serving mentions plain costs a download through the real worker, against the same texts
without a mention: `python -m bench.mentions`."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import zipfile
from pathlib import Path
from typing import Any

from bench import build, cli
from pmd_service.core.settings import Settings
from pmd_service.host.mentions import resolve_with_comments
from pmd_service.storage.zip_names import own_zip_path
from support import seeding
from support.stack import fresh_stack

MENTIONS, TARGET = 16, 1.05  # the host's cap of mentions a text; the cost allowed
FANS = 48  # accounts mentioned, so a download names many, and each text a different 16
# The sets in measuring order: the target is about the first; the second is little but JSON.
SETS = {
    "reference": "128 artworks of ~1 MB (the job benchmark's set)",
    "pixel_art": "128 small pixel-art artworks",
}
TARGET_SET = "reference"
KINDS = ("marked", "plain")
JSON_FILES = ("metadata.json", "comments.json")


Fan = seeding.UserRow


def texts(fans: list[Fan], n: int, marked: bool) -> str:
    """A text of MENTIONS mentions, or as long a text of plain words in their place."""
    names = [fans[(n + k) % len(fans)] for k in range(MENTIONS)]
    words = [f"<@{f.sqid}>" if marked else f"@{f.handle}" for f in names]
    return "Pixel pals: " + ", ".join(words) + "."


async def artist(
    run: build.Run, settings: Settings, name: str, files: list[Path], fans: list[Fan], comments: int
) -> tuple[seeding.UserRow, list[int]]:
    """The artist `name` ("marked-…" or "plain-…"): their texts, with mentions or without."""
    marked = name.startswith("marked")
    described = [texts(fans, i, marked) for i in range(len(files))]
    owner, post_ids = await build.seed_user(run.conn, settings, name, files, described)
    for i, post in enumerate(post_ids):
        for c in range(comments):
            text = f"{texts(fans, i + c + 1, marked)} ({i}.{c})"  # each comment its own
            author = fans[c % len(fans)].id
            await seeding.insert_row(
                run.conn, "comments", post_id=post, author_id=author, body=text
            )
    return owner, post_ids


def check_and_size(path: Path, marked: bool) -> dict[str, int]:
    """The ZIP says what the site shows; the sizes of its JSON files."""
    with zipfile.ZipFile(path) as archive:
        shown = json.loads(archive.read("metadata.json"))["artworks"]
        comments = archive.read("comments.json")
        if marked:
            assert all(len(a["mentions"]) == MENTIONS for a in shown)
            assert b'"body": "Pixel pals: @fan' in comments
        assert not any("<@" in a["description"] for a in shown)
        return {name: archive.getinfo(name).file_size for name in JSON_FILES}


async def bench(sets: dict[str, list[Path]], rounds: int, comments: int) -> dict[str, Any]:
    async with fresh_stack() as settings, build.driving(settings, BDR_DAILY_LIMIT="10000") as run:
        seed = seeding.Factory(run.conn, settings)
        fans = [await seed.user(f"fan{n:02d}") for n in range(FANS)]
        who = {
            (name, kind): await artist(run, settings, f"{kind}-{name}", files, fans, comments)
            for name, files in sets.items()
            for kind in KINDS
        }
        await run.conn.execute("ANALYZE")
        built_by: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in who}
        sizes: dict[tuple[str, str], dict[str, int]] = {}
        for n in range(rounds + 1):  # in turns, each set's pair in alternate order; 0 warms up
            for name in sets:
                for kind in KINDS if n % 2 == 0 else KINDS[::-1]:
                    owner, post_ids = who[name, kind]
                    keep = n == 0
                    built = await run.bdr(owner.id, owner.sqid, post_ids, comments=True, keep=keep)
                    if keep:
                        path = own_zip_path(settings.zip_path, built["file_path"])
                        sizes[name, kind] = check_and_size(path, kind == "marked")
                        await run.zips.remove(built["file_path"])
                    else:
                        built_by[name, kind].append(built)
        # The one query a marked download adds, alone (the worker runs it before the build).
        owner, post_ids = who[TARGET_SET, "marked"]
        descriptions = [
            r[0]
            for r in await run.conn.fetch(
                "SELECT description FROM posts WHERE id = ANY($1::int[])", post_ids
            )
        ]
        query_s = []
        for _ in range(2 * rounds):
            started = time.perf_counter()
            await resolve_with_comments(run.conn, descriptions, post_ids)
            query_s.append(time.perf_counter() - started)
    figures: dict[str, Any] = {
        "mentions_per_text": MENTIONS,
        "comments_per_artwork": comments,
        "rounds": rounds,
        "target": TARGET,
        "target_set": TARGET_SET,
        "resolve_query_s": statistics.median(query_s),
        "sets": {},
    }
    for name, files in sets.items():
        m, p = (statistics.median(b["build_s"] for b in built_by[name, k]) for k in KINDS)
        mc, pc = (statistics.median(b["cpu_s"] for b in built_by[name, k]) for k in KINDS)
        figures["sets"][name] = {
            "label": SETS[name],
            "artworks": len(files),
            "artwork_bytes": sum(f.stat().st_size for f in files),
            "marked_s": m,
            "plain_s": p,
            "ratio": m / p,
            # CPU seconds a download: on a shared machine the wall time swings more with load.
            "marked_cpu_s": mc,
            "plain_cpu_s": pc,
            "cpu_ratio": mc / pc,
            "json_bytes": {k: sizes[name, k] for k in KINDS},
        }
        cli.show(f"{SETS[name]}: with mentions against without", figures["sets"][name])
    cli.show("the accounts' query alone", {"resolve_query_s": figures["resolve_query_s"]})
    return figures


if __name__ == "__main__":
    parser = cli.parser("mentions", __doc__)
    parser.add_argument("--rounds", type=int, default=7, help="downloads of each, in turns")
    parser.add_argument("--comments", type=int, default=4, help="comments on each artwork")
    args = parser.parse_args()
    sets = {
        "reference": build.make_large_pngs(build.INPUTS / "large", build.FILES),
        "pixel_art": build.make_small_pixel_art(build.INPUTS / "small", build.FILES),
    }
    figures = asyncio.run(bench(sets, args.rounds, args.comments))
    cli.save(args.json, figures)
