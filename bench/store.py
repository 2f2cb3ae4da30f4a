"""ZIPs and artworks in an object store: `python -m bench.store [--rounds 5]`.

Against a real SeaweedFS S3 server on loopback, one bucket a run; rounds alternate, medians.
1. `build(object_sink(...))` of 128 noise PNGs of ~1 MB against a plain multipart `obstore.put`
   of the same ZIP's bytes (same part size, parts in flight). Target ≤ 1.3×.
2. The real worker's RSS (every 5 ms) building a ~1 GB ZIP (128 artworks of 8 MB) into the
   store: peak − the RSS it settled at after a small warm-up BDR. Target ≤ 50 MB.
3. 128 artworks (~1 MB PNGs, then small pixel art) read by `fetched_in_order(object_fetcher(
   store), ..., 8)` against one at a time, through a proxy process adding 50 ms a request;
   floors: 8 at a time through the proxy without the sleep, and direct. Target ≥ 6× faster.
4. `python server.py`'s CPU time for one download of that ZIP with BDR_DOWNLOAD_MODE=redirect
   (a 302 to the store) and proxy (streamed). Target: a redirect costs one small response.
5. obstore against aiobotocore uploading the same ~134 MB multipart (8 MiB parts, 2 in flight):
   wall time and this process's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import obstore
from aiohttp import web
from obstore.store import S3Store

from bench import cli
from bench.objects import plain_put, store_at
from bench.show import show
from bench.zip import make_large_pngs, make_small_pixel_art, timed
from pmd_service.bdr.queue import enqueue_bdr
from pmd_service.core.db import connect
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.host.tokens import mint_token
from pmd_service.host.vault import relative_artwork_path
from pmd_service.zipbuild.build import (
    PART_BYTES,
    PARTS_IN_FLIGHT,
    Entry,
    build,
    file_sink,
    object_sink,
)
from pmd_service.zipbuild.content import Artwork
from pmd_service.zipbuild.sources import fetched_in_order, object_fetcher
from support import seaweed, stack
from support.measures import CLK_TCK, PeakRss, cpu_seconds, rss_kb
from support.seaweed import Seaweed
from support.seeding import Factory
from support.stack import free_port, service_env, start_server, start_worker, stop

ADDED_LATENCY_S = 0.050
FETCH_CONCURRENCY = 8  # the worker's default (ARTWORK_FETCH_CONCURRENCY)
REDIRECTS = 200
BIG_FILES, BIG_FILE_BYTES = 128, 8 << 20
SQL_STATUS = "SELECT status, file_path, file_size_bytes FROM batch_download_requests WHERE id = $1"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length"}  # fmt: skip


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}  # fmt: skip


def build_vs_put(store: S3Store, files: list[Path], local: Path, rounds: int) -> dict[str, Any]:
    """1. The build into the store against a plain multipart put of its bytes."""
    entries = [Entry(i, f"artworks/{i:03d}.png", path=p) for i, p in enumerate(files)]

    def zipped(sink: Any) -> int:
        def trailer(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, bytes]]:
            return [("metadata.json", json.dumps({"artworks": added, "skipped": skipped}).encode())]

        return build(sink, entries, trailer, lambda _done: None, threading.Event()).size

    zip_bytes = zipped(file_sink(local))  # the same ZIP's bytes, for the plain upload
    builds, puts = [], []
    for i in range(rounds + 1):  # round 0 warms both paths up
        built = timed(lambda: zipped(object_sink(store, "built.zip", {})))
        put = timed(lambda: plain_put(store, "plain.zip", local))
        for key in ("built.zip", "plain.zip"):
            assert obstore.head(store, key)["size"] == zip_bytes
        obstore.delete(store, ["built.zip", "plain.zip"])  # keep the store's volumes small
        if i:
            builds.append(built)
            puts.append(put)
    return {"zip_bytes": zip_bytes, "build_s": spread(builds), "put_s": spread(puts),
            "ratio": statistics.median(builds) / statistics.median(puts),
            "ratio_by_round": [b / p for b, p in zip(builds, puts, strict=True)]}  # fmt: skip


async def _botocore_put(endpoint: str, bucket: str, key: str, local: Path) -> None:
    """A multipart upload as one would write it with aiobotocore: 8 MiB parts, 2 in flight."""
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3", endpoint_url=endpoint, region_name=seaweed.REGION,
        aws_access_key_id=seaweed.ACCESS_KEY, aws_secret_access_key=seaweed.SECRET_KEY,
    ) as client:  # fmt: skip
        upload_id = (await client.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
        slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        parts: list[dict[str, Any]] = []

        async def send(number: int, body: bytes) -> None:
            try:
                got = await client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                               PartNumber=number, Body=body)  # fmt: skip
                parts.append({"PartNumber": number, "ETag": got["ETag"]})
            finally:
                slots.release()

        tasks: list[asyncio.Task[None]] = []
        with open(local, "rb") as source:  # noqa: ASYNC230 - read a part at a time, off the loop
            while True:
                await slots.acquire()  # read the next part only when a slot is free
                if not (body := await asyncio.to_thread(source.read, PART_BYTES)):
                    break
                tasks.append(asyncio.create_task(send(len(tasks) + 1, body)))
        await asyncio.gather(*tasks)
        parts.sort(key=lambda p: p["PartNumber"])
        await client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": parts})  # fmt: skip


def clients(weed: Seaweed, bucket: str, prefix: str, local: Path, rounds: int) -> dict[str, Any]:
    """5. obstore against aiobotocore, the same upload: wall and CPU seconds."""
    store = store_at(weed.endpoint, bucket, prefix)
    uploads = {
        "obstore": lambda: plain_put(store, "client.zip", local),
        "aiobotocore": lambda: asyncio.run(
            _botocore_put(weed.endpoint, bucket, f"{prefix}/client.zip", local)
        ),
    }
    figures: dict[str, dict[str, list[float]]] = {n: {"wall_s": [], "cpu_s": []} for n in uploads}
    for i in range(rounds + 1):
        for name, upload in uploads.items():
            cpu = time.process_time()
            wall = timed(upload)
            cpu = time.process_time() - cpu
            assert obstore.head(store, "client.zip")["size"] == local.stat().st_size
            obstore.delete(store, "client.zip")
            if i:
                figures[name]["wall_s"].append(wall)
                figures[name]["cpu_s"].append(cpu)
    return {"bytes": local.stat().st_size} | {
        name: {k: spread(v) for k, v in f.items()} for name, f in figures.items()
    }


async def _slow_proxy(upstream: str, port: int, latency: float) -> None:
    """Forwards every request to `upstream` `latency` seconds late, Host header as sent (the
    SigV4 signature covers it), body streamed back; prints "ready", serves until killed."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(latency)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(request.method, upstream + request.path_qs, headers=headers,
                                   data=body or None, allow_redirects=False) as got:  # fmt: skip
            response = web.StreamResponse(status=got.status)
            for k, v in got.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    response.headers.add(k, v)
            if got.content_length is not None:
                response.content_length = got.content_length
            await response.prepare(request)
            async for chunk in got.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def start_slow_proxy(upstream: str, latency: float) -> tuple[subprocess.Popen[bytes], int]:
    """The proxy as a process of its own: relaying 129 MB on the reader's own event loop slowed
    the reads it was only meant to delay (5.3× and 5.7× in two runs, 6.3× apart)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.store", "--slow-proxy", upstream, str(port), str(latency)],
        cwd=stack.CHECKOUT, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, port


async def _read_all(store: S3Store, artworks: list[Artwork], concurrency: int) -> float:
    started = time.perf_counter()
    total = 0
    async for entry in fetched_in_order(object_fetcher(store), artworks, concurrency):
        assert entry.data is not None, entry.skip_reason
        total += len(entry.data)
    assert total > 0
    return time.perf_counter() - started


async def slow_reads(weed: Seaweed, bucket: str, prefix: str, files: list[Path],
                     ports: tuple[int, int], rounds: int) -> dict[str, Any]:  # fmt: skip
    """3. Reads through the slow proxy (ports[0]) 8 at a time and one by one, rounds
    alternating; floors 8 at a time: through the relay with no sleep (ports[1]), and direct."""
    direct = store_at(weed.endpoint, bucket, prefix)
    artworks = []
    for i, path in enumerate(files):
        key, shard = uuid.uuid4(), f"{i % 16:02x}"
        await obstore.put_async(direct, relative_artwork_path(shard, key, "png"), path)
        artworks.append(Artwork(
            post_id=i, sqid=f"p{i}", title="", description=None, created_at=datetime.now(UTC),
            width=None, height=None, frame_count=1, hashtags=[], storage_shard=shard,
            storage_key=key, fmt="png",
        ))  # fmt: skip
    slow, relay = (store_at(f"http://127.0.0.1:{port}", bucket, prefix) for port in ports)
    times: dict[int, list[float]] = {FETCH_CONCURRENCY: [], 1: []}
    for i in range(rounds + 1):
        for concurrency, series in times.items():
            seconds = await _read_all(slow, artworks, concurrency)
            if i:
                series.append(seconds)
    floors = {name: statistics.median([await _read_all(store, artworks, FETCH_CONCURRENCY)
                                       for _ in range(rounds)])
              for name, store in (("relay_only_s", relay), ("direct_s", direct))}  # fmt: skip
    window, one = times[FETCH_CONCURRENCY], times[1]
    return {"artworks": len(files), "bytes": sum(p.stat().st_size for p in files),
            "added_latency_ms": ADDED_LATENCY_S * 1000, "concurrency": FETCH_CONCURRENCY,
            "window_s": spread(window), "one_by_one_s": spread(one),
            "speedup": statistics.median(one) / statistics.median(window), **floors,
            "speedup_by_round": [a / b for a, b in zip(one, window, strict=True)]}  # fmt: skip


async def _run_bdr(conn: Any, settings: Settings, owner: int, post_ids: list[int]) -> uuid.UUID:
    bdr_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count) "
        "VALUES ($1, $2, cardinality($2::int[])) RETURNING id", owner, post_ids,
    )  # fmt: skip
    redis = create_redis(settings.redis_url)
    try:
        await enqueue_bdr(redis, bdr_id)
    finally:
        await redis.aclose()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        row = await conn.fetchrow(SQL_STATUS, bdr_id)
        if row["status"] == "ready":
            return bdr_id
        assert row["status"] in ("pending", "processing"), dict(row)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"BDR {bdr_id} not ready within 600 s")


async def worker_memory(settings: Settings, env: dict[str, str]
                        ) -> tuple[dict[str, Any], uuid.UUID, str]:  # fmt: skip
    """2. The worker's RSS building the 1 GB ZIP, after a warm-up BDR of one small artwork."""
    conn = await connect(settings.database_url, "pmd-bench")
    worker = start_worker(service_env(settings, **env))
    try:
        factory, rng = Factory(conn, settings), random.Random(11)
        owner = await factory.user("stored")
        post_ids = []
        for i in range(BIG_FILES + 1):
            data = b"\x89PNG\r\n\x1a\n" + rng.randbytes((BIG_FILE_BYTES if i else 4096) - 8)
            post = await factory.post(owner, title=f"stored {i}", data=data, shard=f"{i % 64:02x}")
            post_ids.append(post.id)
        await _run_bdr(conn, settings, owner.id, post_ids[:1])
        await asyncio.sleep(1.0)  # let the warm-up's garbage go
        baseline = rss_kb(worker.pid)
        started = time.perf_counter()
        with PeakRss(lambda: rss_kb(worker.pid), 0.005, baseline) as rss:
            bdr_id = await _run_bdr(conn, settings, owner.id, post_ids[1:])
        seconds = time.perf_counter() - started
        after = rss_kb(worker.pid)
        row = await conn.fetchrow(SQL_STATUS, bdr_id)
        assert row is not None
    finally:
        stop(worker)
        await conn.close()
    for path in settings.vault_path.rglob("*.png"):  # 1 GB of temp files: gone once built
        path.unlink()
    figures = {"zip_bytes": row["file_size_bytes"], "baseline_rss_mb": baseline / 1024,
               "peak_rss_mb": rss.peak / 1024, "after_rss_mb": after / 1024,
               "growth_mb": (rss.peak - baseline) / 1024, "build_s": seconds}  # fmt: skip
    return figures, bdr_id, owner.sqid


async def _download(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with http.get(url, headers=headers, allow_redirects=False) as resp:
        if resp.status == 302:
            return await _download(http, resp.headers["Location"], {})
        assert resp.status == 200, resp.status
        return sum([len(chunk) async for chunk in resp.content.iter_chunked(1 << 20)])


async def downloads(settings: Settings, env: dict[str, str], bdr_id: uuid.UUID, sqid: str,
                    zip_bytes: int, rounds: int) -> dict[str, Any]:  # fmt: skip
    """4. The server's CPU seconds for one download, in each mode."""
    token = mint_token(settings.jwt_secret_key, sqid, ttl_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    ports = {mode: free_port() for mode in ("redirect", "proxy")}
    servers = {mode: start_server(service_env(settings, **env, BDR_DOWNLOAD_MODE=mode), port)
               for mode, port in ports.items()}  # fmt: skip
    urls = {mode: f"http://127.0.0.1:{port}/api/pmd/bdr/{bdr_id}/download"
            for mode, port in ports.items()}  # fmt: skip
    cpu: dict[str, list[float]] = {mode: [] for mode in ports}
    wall: dict[str, list[float]] = {mode: [] for mode in ports}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            for i in range(rounds + 1):  # round 0 warms up connections, code paths, the store
                for mode, url in urls.items():
                    before, started = cpu_seconds(servers[mode].pid), time.perf_counter()
                    assert await _download(http, url, headers) == zip_bytes
                    if i:
                        wall[mode].append(time.perf_counter() - started)
                        cpu[mode].append(cpu_seconds(servers[mode].pid) - before)
            # A redirect is a few clock ticks at most: many, for the CPU of one with resolution.
            before = cpu_seconds(servers["redirect"].pid)
            for _ in range(REDIRECTS):
                async with http.get(urls["redirect"], headers=headers, allow_redirects=False) as r:
                    assert r.status == 302, r.status
            per_302 = (cpu_seconds(servers["redirect"].pid) - before) / REDIRECTS
    finally:
        stop(*servers.values())
    return {"zip_bytes": zip_bytes, "tick_s": 1 / CLK_TCK, "redirects": REDIRECTS,
            "cpu_s_per_302": per_302,
            **{mode: {"cpu_s": spread(cpu[mode]), "wall_s": spread(wall[mode]),
                      "cpu_s_per_gb": statistics.median(cpu[mode]) / (zip_bytes / 1e9)}
               for mode in ports}}  # fmt: skip


async def _with_stack(weed: Seaweed, bucket: str, rounds: int) -> dict[str, Any]:
    env = weed.env(bucket, "bench/zips")
    async with stack.fresh_stack() as settings:
        memory, bdr_id, sqid = await worker_memory(settings, env)
        served = await downloads(settings, env, bdr_id, sqid, memory["zip_bytes"], rounds)
    return {"memory": memory, "downloads": served}


def run(rounds: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with seaweed.running_seaweed() as weed, tempfile.TemporaryDirectory(prefix="pmd-store-") as tmp:
        bucket = seaweed.new_bucket_name()
        asyncio.run(seaweed.create_bucket(weed, bucket))
        files = make_large_pngs(Path(tmp) / "large", 128)
        local = Path(tmp) / "local.zip"
        store = store_at(weed.endpoint, bucket, "bench/build")
        figures["build"] = build_vs_put(store, files, local, rounds)
        show("1. build(object_sink) against a plain multipart put, s", figures["build"])
        weed.vacuum()
        figures["clients"] = clients(weed, bucket, "bench/clients", local, max(rounds - 2, 1))
        show("5. obstore against aiobotocore, s", figures["clients"])
        weed.vacuum()
        slow, slow_port = start_slow_proxy(weed.endpoint, ADDED_LATENCY_S)
        relay, relay_port = start_slow_proxy(weed.endpoint, 0)
        small = make_small_pixel_art(Path(tmp) / "small", 128)
        try:
            for name, artworks in (("fetch", files), ("fetch_small", small)):
                figures[name] = asyncio.run(slow_reads(weed, bucket, f"bench/{name}", artworks,
                                                       (slow_port, relay_port), 3))  # fmt: skip
                show(f"3. {name}: artworks through +50 ms a request, s", figures[name])
        finally:
            stop(slow, relay)
        local.unlink()
        figures |= asyncio.run(_with_stack(weed, bucket, 3))
        show("2. the worker's RSS building ~1 GB into the store, MB", figures["memory"])
        show("4. the server's CPU per download, s", figures["downloads"])
    return figures


def main() -> None:
    parser = cli.parser("store", __doc__)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds of test 1")
    parser.add_argument("--slow-proxy", nargs=3, metavar=("UPSTREAM", "PORT", "LATENCY"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.slow_proxy:
        upstream, port, latency = args.slow_proxy
        asyncio.run(_slow_proxy(upstream, int(port), float(latency)))
    else:
        cli.save(args.json, run(args.rounds))


if __name__ == "__main__":
    main()
