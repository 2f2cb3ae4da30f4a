"""ZIPs and artworks in an object store: `python -m bench.store [--rounds 5]`.

Not a test: prints figures, exits 0. Everything runs against a real SeaweedFS S3 server
(support/seaweed.py), one bucket per run, on loopback; ratios are taken within the run.

1. Build into the store: `build(object_sink(...))` of 128 noise PNGs of ~1 MB, against a plain
   `obstore.put` multipart upload of the same ZIP's bytes read from a local copy in 1 MiB chunks,
   with the same part size and parts in flight; rounds alternating, medians. Target ≤ 1.3×.
2. Worker memory: the real worker process (`arq worker.WorkerSettings`, BDR_STORE set) builds a
   ~1 GB ZIP (128 artworks of 8 MB) into the bucket after a small warm-up BDR; its RSS is read
   from /proc every 5 ms: growth = peak − the RSS it settled at after the warm-up. Target ≤ 50 MB.
3. Artworks from the store over a slow link: a reverse proxy (a process of its own) in front of
   the S3 port sleeps 50 ms before forwarding each request; `fetched_in_order(object_fetcher(
   store), 128 artworks, 8)` against the same one at a time, for 128 PNGs of ~1 MB and for 128
   small pixel-art ones; floors: 8 at a time through the proxy with no sleep, and direct.
   Target ≥ 6× faster.
4. Server CPU per download: the real `python server.py` serves that 1 GB ZIP, once with
   BDR_DOWNLOAD_MODE=redirect (GET → 302, the client then fetches the signed URL from the store)
   and once with proxy (the server streams it); the server process's CPU time (utime + stime
   from /proc) before and after each download, rounds alternating. Target: a redirect costs the
   server one small response (CPU seconds per GB for each mode and their ratio are printed).
5. Which client: obstore against aiobotocore uploading the same ~134 MB as a multipart upload
   (8 MiB parts, 2 in flight), wall time and this process's CPU time (all threads).
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
from typing import Any, BinaryIO

import aiohttp
import obstore
from aiohttp import web
from obstore.store import S3Store

from bench import cli
from bench.objects import plain_put, store_at
from bench.show import show
from bench.zip import make_large_pngs, make_small_pixel_art
from pmd_service.bdr.queue import enqueue_bdr
from pmd_service.core.db import connect
from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.host.tokens import mint_token
from pmd_service.host.vault import relative_artwork_path
from pmd_service.jobs.zip.build import (
    PART_BYTES,
    PARTS_IN_FLIGHT,
    BuildResult,
    Entry,
    build,
    file_sink,
    object_sink,
)
from pmd_service.jobs.zip.content import Artwork
from pmd_service.jobs.zip.sources import fetched_in_order, object_fetcher
from support import seaweed, stack
from support.measures import CLK_TCK, PeakRss, cpu_seconds, rss_kb
from support.seaweed import Seaweed
from support.seeding import Factory
from support.stack import free_port, service_env, start_server, start_worker, stop

ADDED_LATENCY_S = 0.050
FETCH_CONCURRENCY = 8  # the worker's default (ARTWORK_FETCH_CONCURRENCY)
SAMPLE_EVERY = 0.005
REDIRECTS = 200
BIG_FILES, BIG_FILE_BYTES = 128, 8 << 20
SQL_STATUS = "SELECT status, file_path, file_size_bytes FROM batch_download_requests WHERE id = $1"


def _median(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}  # fmt: skip


# --- 1. build into the store vs a plain multipart upload ---------------------------------------


def _build(sink: Any, files: list[Path]) -> BuildResult:
    def trailer(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, bytes]]:
        return [("metadata.json", json.dumps({"artworks": added, "skipped": skipped}).encode())]

    entries = [Entry(i, f"artworks/{i:03d}.png", path=p) for i, p in enumerate(files)]
    return build(sink, entries, trailer, lambda _done: None, threading.Event())


def build_vs_put(store: S3Store, files: list[Path], local: Path, rounds: int) -> dict[str, Any]:
    _build(file_sink(local), files)  # the same ZIP's bytes, for the plain upload
    zip_bytes = local.stat().st_size
    builds: list[float] = []
    puts: list[float] = []
    for i in range(rounds + 1):  # round 0 warms both paths up
        started = time.perf_counter()
        result = _build(object_sink(store, "built.zip", {}), files)
        built = time.perf_counter() - started
        assert result.size == zip_bytes, (result.size, zip_bytes)
        started = time.perf_counter()
        plain_put(store, "plain.zip", local)
        put = time.perf_counter() - started
        assert obstore.head(store, "plain.zip")["size"] == zip_bytes
        obstore.delete(store, ["built.zip", "plain.zip"])  # keep the store's volumes small
        if i:
            builds.append(built)
            puts.append(put)
    ratios = [b / p for b, p in zip(builds, puts, strict=True)]
    return {"zip_bytes": zip_bytes, "build_s": _median(builds), "put_s": _median(puts),
            "ratio": statistics.median(builds) / statistics.median(puts),
            "ratio_by_round": ratios}  # fmt: skip


# --- 5. which client: obstore against aiobotocore ----------------------------------------------


async def _botocore_put(endpoint: str, bucket: str, key: str, source: BinaryIO) -> None:
    """A multipart upload as one would write it with aiobotocore: 8 MiB parts, 2 in flight."""
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3", endpoint_url=endpoint, region_name=seaweed.REGION,
        aws_access_key_id=seaweed.ACCESS_KEY, aws_secret_access_key=seaweed.SECRET_KEY,
    ) as client:  # fmt: skip
        upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
        upload_id = upload["UploadId"]
        slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        parts: list[dict[str, Any]] = []

        async def send(number: int, body: bytes) -> None:
            try:
                got = await client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                parts.append({"PartNumber": number, "ETag": got["ETag"]})
            finally:
                slots.release()

        tasks = []
        number = 0
        while True:
            await slots.acquire()  # read the next part only when a slot is free
            body = await asyncio.to_thread(source.read, PART_BYTES)
            if not body:
                slots.release()
                break
            number += 1
            tasks.append(asyncio.create_task(send(number, body)))
        await asyncio.gather(*tasks)
        parts.sort(key=lambda p: p["PartNumber"])
        await client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )


def clients(weed: Seaweed, bucket: str, prefix: str, local: Path, rounds: int) -> dict[str, Any]:
    store = store_at(weed.endpoint, bucket, prefix)
    size = local.stat().st_size
    figures: dict[str, dict[str, list[float]]] = {
        name: {"wall_s": [], "cpu_s": []} for name in ("obstore", "aiobotocore")
    }
    for i in range(rounds + 1):
        for name in ("obstore", "aiobotocore"):
            wall, cpu = time.perf_counter(), time.process_time()
            if name == "obstore":
                plain_put(store, "client.zip", local)
            else:
                with open(local, "rb") as source:
                    asyncio.run(
                        _botocore_put(weed.endpoint, bucket, f"{prefix}/client.zip", source)
                    )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert obstore.head(store, "client.zip")["size"] == size
            obstore.delete(store, "client.zip")
            if i:
                figures[name]["wall_s"].append(wall)
                figures[name]["cpu_s"].append(cpu)
    return {"bytes": size} | {
        name: {k: _median(v) for k, v in f.items()} for name, f in figures.items()
    }


# --- 3. artworks through a slow link -----------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length"}  # fmt: skip


async def _slow_proxy(upstream: str, port: int, latency: float) -> web.AppRunner:
    """Forwards every request to `upstream` `latency` seconds late, Host header as sent (so the
    SigV4 signature, which covers it, stays valid), body streamed back."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(latency)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers,
            data=body or None, allow_redirects=False,
        ) as got:  # fmt: skip
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

    async def close(_app: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(close)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _read_all(store: S3Store, artworks: list[Artwork], concurrency: int) -> float:
    started = time.perf_counter()
    total = 0
    async for entry in fetched_in_order(object_fetcher(store), artworks, concurrency):
        assert entry.data is not None, entry.skip_reason
        total += len(entry.data)
    seconds = time.perf_counter() - started
    assert total > 0
    return seconds


def serve_slow_proxy(upstream: str, port: int, latency: float) -> None:
    """The proxy as a process of its own (`--slow-proxy`): relaying 129 MB through Python on
    the reader's own event loop slowed the reads it was only meant to delay (5.3× and 5.7× in
    two runs, 6.3× with the proxy apart)."""

    async def serve() -> None:
        runner = await _slow_proxy(upstream, port, latency)
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


def start_slow_proxy(upstream: str, latency: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.store", "--slow-proxy", upstream, str(port), str(latency)],
        cwd=stack.CHECKOUT, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, port


async def slow_reads(
    weed: Seaweed, bucket: str, prefix: str, files: list[Path], ports: tuple[int, int],
    rounds: int,
) -> dict[str, Any]:  # fmt: skip
    """Reads through the slow proxy (ports[0]) 8 at a time and one by one, rounds alternating;
    then two floors 8 at a time: through the relay with no sleep (ports[1]), and direct."""
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
    slow = store_at(f"http://127.0.0.1:{ports[0]}", bucket, prefix)
    relay = store_at(f"http://127.0.0.1:{ports[1]}", bucket, prefix)
    times: dict[int, list[float]] = {FETCH_CONCURRENCY: [], 1: []}
    for i in range(rounds + 1):
        for concurrency in times:
            seconds = await _read_all(slow, artworks, concurrency)
            if i:
                times[concurrency].append(seconds)
    relay_s = statistics.median([await _read_all(relay, artworks, FETCH_CONCURRENCY)
                                 for _ in range(rounds)])  # fmt: skip
    direct_s = statistics.median([await _read_all(direct, artworks, FETCH_CONCURRENCY)
                                  for _ in range(rounds)])  # fmt: skip
    window, one = statistics.median(times[FETCH_CONCURRENCY]), statistics.median(times[1])
    return {"artworks": len(files), "bytes": sum(p.stat().st_size for p in files),
            "added_latency_ms": ADDED_LATENCY_S * 1000, "concurrency": FETCH_CONCURRENCY,
            "window_s": _median(times[FETCH_CONCURRENCY]), "one_by_one_s": _median(times[1]),
            "speedup": one / window, "relay_only_s": relay_s, "direct_s": direct_s,
            "speedup_by_round": [a / b for a, b in zip(times[1], times[FETCH_CONCURRENCY],
                                                        strict=True)]}  # fmt: skip


# --- 2. and 4. the real worker and server ------------------------------------------------------


async def _seed(settings: Settings) -> tuple[int, str, list[int], list[int]]:
    """A user with one small artwork (the warm-up) and 128 of 8 MB, written into the vault."""
    conn = await connect(settings.database_url, "pmd-bench")
    rng = random.Random(11)
    try:
        seed = Factory(conn, settings)
        owner = await seed.user("stored")
        post_ids = []
        for i in range(BIG_FILES + 1):
            size = 4096 if i == 0 else BIG_FILE_BYTES
            data = b"\x89PNG\r\n\x1a\n" + rng.randbytes(size - 8)
            post = await seed.post(owner, title=f"stored {i}", data=data, shard=f"{i % 64:02x}")
            post_ids.append(post.id)
    finally:
        await conn.close()
    return owner.id, owner.sqid, post_ids[:1], post_ids[1:]


async def _run_bdr(conn: Any, settings: Settings, owner: int, post_ids: list[int]) -> uuid.UUID:
    bdr_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count) "
        "VALUES ($1, $2, cardinality($2::int[])) RETURNING id",
        owner, post_ids,
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


async def worker_memory(
    settings: Settings, env: dict[str, str]
) -> tuple[dict[str, Any], uuid.UUID, str]:
    owner, sqid, warm_posts, big_posts = await _seed(settings)
    conn = await connect(settings.database_url, "pmd-bench")
    worker = start_worker(service_env(settings, **env))
    try:
        await _run_bdr(conn, settings, owner, warm_posts)
        await asyncio.sleep(1.0)  # let the warm-up's garbage go
        baseline = rss_kb(worker.pid)
        started = time.perf_counter()
        with PeakRss(lambda: rss_kb(worker.pid), SAMPLE_EVERY, baseline) as rss:
            bdr_id = await _run_bdr(conn, settings, owner, big_posts)
        peak = rss.peak
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
               "peak_rss_mb": peak / 1024, "after_rss_mb": after / 1024,
               "growth_mb": (peak - baseline) / 1024, "build_s": seconds}  # fmt: skip
    return figures, bdr_id, sqid


async def _download(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with http.get(url, headers=headers, allow_redirects=False) as resp:
        if resp.status == 302:
            return await _download(http, resp.headers["Location"], {})
        assert resp.status == 200, resp.status
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 20):
            size += len(chunk)
        return size


async def downloads(
    settings: Settings, env: dict[str, str], bdr_id: uuid.UUID, sqid: str, zip_bytes: int,
    rounds: int,
) -> dict[str, Any]:  # fmt: skip
    token = mint_token(settings.jwt_secret_key, sqid, ttl_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    modes = ("redirect", "proxy")
    ports = {mode: free_port() for mode in modes}
    servers = {
        mode: start_server(service_env(settings, **env, BDR_DOWNLOAD_MODE=mode), ports[mode])
        for mode in modes
    }
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    wall: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            for i in range(rounds + 1):
                for mode in modes:
                    url = f"http://127.0.0.1:{ports[mode]}/api/pmd/bdr/{bdr_id}/download"
                    pid = servers[mode].pid
                    before, started = cpu_seconds(pid), time.perf_counter()
                    got = await _download(http, url, headers)
                    seconds, used = time.perf_counter() - started, cpu_seconds(pid) - before
                    assert got == zip_bytes, (got, zip_bytes)
                    if i:  # round 0 warms up connections, code paths and the store
                        cpu[mode].append(used)
                        wall[mode].append(seconds)
        # One download is a few clock ticks at most in redirect mode: many 302s, for the
        # CPU of one with some resolution.
        url = f"http://127.0.0.1:{ports['redirect']}/api/pmd/bdr/{bdr_id}/download"
        before = cpu_seconds(servers["redirect"].pid)
        async with aiohttp.ClientSession() as http:
            for _ in range(REDIRECTS):
                async with http.get(url, headers=headers, allow_redirects=False) as resp:
                    assert resp.status == 302, resp.status
        per_302 = (cpu_seconds(servers["redirect"].pid) - before) / REDIRECTS
    finally:
        stop(*servers.values())
    gb = zip_bytes / 1e9
    per_gb = {mode: statistics.median(cpu[mode]) / gb for mode in modes}
    return {"zip_bytes": zip_bytes, "tick_s": 1 / CLK_TCK, "redirects": REDIRECTS,
            "cpu_s_per_302": per_302,
            **{mode: {"cpu_s": _median(cpu[mode]), "wall_s": _median(wall[mode]),
                      "cpu_s_per_gb": per_gb[mode]} for mode in modes}}  # fmt: skip


# --- the run -----------------------------------------------------------------------------------


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
                figures[name] = asyncio.run(slow_reads(
                    weed, bucket, f"bench/{name}", artworks, (slow_port, relay_port), 3
                ))  # fmt: skip
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
        serve_slow_proxy(args.slow_proxy[0], int(args.slow_proxy[1]), float(args.slow_proxy[2]))
        return
    figures = run(args.rounds)
    cli.save(args.json, figures)


if __name__ == "__main__":
    main()
