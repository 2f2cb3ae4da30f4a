"""ZIPs and artworks in a SeaweedFS bucket: builds, the worker's RSS, reads, downloads, stalled
readers: `python -m bench.store [--rounds 5]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiohttp
import obstore
from aiohttp import web
from obstore.store import S3Store

from bench import cli
from bench.build import (
    INPUTS,
    big_bdr,
    chunks,
    driving,
    make_large_pngs,
    make_small_pixel_art,
    timed,
    trailer,
)
from pmd_service.core.objects import S3Access, StoreUrl, open_store
from pmd_service.core.settings import Settings
from pmd_service.host.tokens import mint_token
from pmd_service.host.vault import relative_artwork_path
from pmd_service.zipbuild.build import (
    CHUNK,
    PART_BYTES,
    PARTS_IN_FLIGHT,
    Entry,
    build,
    file_sink,
    object_sink,
)
from pmd_service.zipbuild.content import Artwork
from pmd_service.zipbuild.sources import fetched_in_order, object_fetcher
from support import seaweed, seeding, stack
from support.measures import cpu_seconds, rss_kb
from support.seaweed import Seaweed

ADDED_LATENCY_S = 0.050
FETCH_CONCURRENCY = 8  # the worker's default (ARTWORK_FETCH_CONCURRENCY)
REDIRECTS = 200
READERS, STALLED_BYTES, WAVES = (10, 40, 100), 24 << 20, 6  # cumulative levels, then waves
SETTLE_S = 1.0  # RSS unchanged (±1 MiB) for this long counts as settled
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
}


def store_at(endpoint: str, bucket: str, prefix: str) -> S3Store:
    access = S3Access(endpoint, seaweed.REGION, seaweed.ACCESS_KEY, seaweed.SECRET_KEY, None)
    return open_store(StoreUrl(bucket, prefix), access)


def plain_put(store: S3Store, key: str, paths: list[Path]) -> None:
    """`paths` uploaded as one object the way a build uploads its ZIP: the floor."""
    obstore.put(
        store,
        key,
        chunks(paths, CHUNK),
        use_multipart=True,
        chunk_size=PART_BYTES,
        max_concurrency=PARTS_IN_FLIGHT,
    )


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def build_vs_put(store: S3Store, files: list[Path], local: Path, rounds: int) -> dict[str, Any]:
    entries = [Entry(i, f"artworks/{i:03d}.png", path=p) for i, p in enumerate(files)]

    def zipped(sink: Any) -> int:
        return build(sink, entries, trailer, lambda _done: None, threading.Event()).size

    zip_bytes = zipped(file_sink(local))  # the same ZIP's bytes, for the plain upload
    builds, puts = [], []
    for i in range(rounds + 1):  # round 0 warms both paths up
        built = timed(lambda: zipped(object_sink(store, "built.zip", {})))
        put = timed(lambda: plain_put(store, "plain.zip", [local]))
        for key in ("built.zip", "plain.zip"):
            assert obstore.head(store, key)["size"] == zip_bytes
        obstore.delete(store, ["built.zip", "plain.zip"])  # keep the store's volumes small
        if i:
            builds.append(built)
            puts.append(put)
    return {
        "zip_bytes": zip_bytes,
        "build_s": spread(builds),
        "put_s": spread(puts),
        "ratio": statistics.median(builds) / statistics.median(puts),
    }


async def _slow_proxy(upstream: str, port: int, latency: float) -> None:
    """Forwards every request to `upstream` `latency` seconds late; prints "ready"."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(latency)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(
            request.method,
            upstream + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as got:
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
    """The proxy as a process of its own: on the reader's event loop it slowed the reads."""
    port = stack.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.store", "--slow-proxy", upstream, str(port), str(latency)],
        cwd=stack.CHECKOUT,
        stdout=subprocess.PIPE,
    )
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


async def slow_reads(
    weed: Seaweed, bucket: str, prefix: str, files: list[Path], port: int, rounds: int
) -> dict[str, Any]:
    direct = store_at(weed.endpoint, bucket, prefix)
    artworks = []
    for i, path in enumerate(files):
        key, shard = uuid.uuid4(), f"{i % 16:02x}"
        await obstore.put_async(direct, relative_artwork_path(shard, key, "png"), path)
        artworks.append(seeding.png_artwork(i, shard, key))
    slow = store_at(f"http://127.0.0.1:{port}", bucket, prefix)
    times: dict[int, list[float]] = {FETCH_CONCURRENCY: [], 1: []}
    for i in range(rounds + 1):
        for concurrency, series in times.items():
            seconds = await _read_all(slow, artworks, concurrency)
            if i:
                series.append(seconds)
    window, one = times[FETCH_CONCURRENCY], times[1]
    return {
        "artworks": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "added_latency_ms": ADDED_LATENCY_S * 1000,
        "concurrency": FETCH_CONCURRENCY,
        "window_s": spread(window),
        "one_by_one_s": spread(one),
        "speedup": statistics.median(one) / statistics.median(window),
    }


async def _download(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with http.get(url, headers=headers, allow_redirects=False) as resp:
        if resp.status == 302:
            return await _download(http, resp.headers["Location"], {})
        assert resp.status == 200, resp.status
        return sum([len(chunk) async for chunk in resp.content.iter_chunked(1 << 20)])


async def downloads(
    settings: Settings,
    ports: dict[str, int],
    pids: dict[str, int],
    bdr: dict[str, Any],
    rounds: int,
) -> dict[str, Any]:
    token = mint_token(settings.jwt_secret_key, bdr["sqid"], ttl_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    urls = {
        mode: f"http://127.0.0.1:{port}/api/pmd/bdr/{bdr['id']}/download"
        for mode, port in ports.items()
    }
    cpu: dict[str, list[float]] = {mode: [] for mode in ports}
    wall: dict[str, list[float]] = {mode: [] for mode in ports}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        for i in range(rounds + 1):  # round 0 warms up connections, code paths, the store
            for mode, url in urls.items():
                before, started = cpu_seconds(pids[mode]), time.perf_counter()
                assert await _download(http, url, headers) == bdr["bytes"]
                if i:
                    wall[mode].append(time.perf_counter() - started)
                    cpu[mode].append(cpu_seconds(pids[mode]) - before)
        # A redirect is a few clock ticks at most: many, for the CPU of one with resolution.
        before = cpu_seconds(pids["redirect"])
        for _ in range(REDIRECTS):
            async with http.get(urls["redirect"], headers=headers, allow_redirects=False) as r:
                assert r.status == 302, r.status
        per_302 = (cpu_seconds(pids["redirect"]) - before) / REDIRECTS
    return {
        "zip_bytes": bdr["bytes"],
        "redirects": REDIRECTS,
        "cpu_s_per_302": per_302,
        **{
            mode: {
                "cpu_s": spread(cpu[mode]),
                "wall_s": spread(wall[mode]),
                "cpu_s_per_gb": statistics.median(cpu[mode]) / (bdr["bytes"] / 1e9),
            }
            for mode in ports
        },
    }


async def _ready_bdr(settings: Settings, store: Any) -> tuple[str, uuid.UUID]:
    async with stack.connected(settings.database_url, "pmd-bench") as conn:
        owner = await seeding.Factory(conn, settings).user("proxied")
        file_path = f"bdr/{owner.sqid}/pmd-{uuid.uuid4()}.{os.urandom(4).hex()}.zip"
        await obstore.put_async(store, file_path.removeprefix("bdr/"), os.urandom(STALLED_BYTES))
        bdr_id = await seeding.bdr_row(
            conn,
            owner.id,
            [1],
            user_sqid=owner.sqid,
            status="ready",
            file_path=file_path,
            file_size_bytes=STALLED_BYTES,
            completed_at=datetime.now(UTC),
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )
    return owner.token, bdr_id


async def _settled_rss(pid: int, bound: float = 60) -> float:
    """The server's RSS (MiB) once it stops moving."""
    deadline = time.monotonic() + bound
    last, since = rss_kb(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < SETTLE_S:
        await asyncio.sleep(0.1)
        if abs((now := rss_kb(pid)) - last) > 1024:
            last, since = now, time.monotonic()
    return rss_kb(pid) / 1024


async def stalled_readers(port: int, pid: int, path: str, token: str) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{port}"
    readers: list[asyncio.StreamWriter] = []

    async def streaming() -> float:
        async with http.get(base_url + "/metrics") as resp:
            lines = (await resp.text()).splitlines()
        found = [ln for ln in lines if ln.startswith("pmd_proxy_downloads ")]
        return float(found[0].split()[1]) if found else float("nan")

    async def open_until(level: int) -> float:
        while len(readers) < level:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            readers.append(writer)
        return await _settled_rss(pid)

    async def close() -> float:
        for reader in readers:
            reader.transport.abort()
        readers.clear()
        deadline = time.monotonic() + 60
        # Polling the server's metrics: nothing here to wait on.
        while await streaming() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        return await _settled_rss(pid)

    async with aiohttp.ClientSession() as http:
        async with http.get(base_url + path, headers={"Authorization": f"Bearer {token}"}) as r:
            assert len(await r.read()) == STALLED_BYTES  # the warm-up: one whole download
        base = await _settled_rss(pid)
        cli.show("5. server at rest after one download, MiB", {"rss": base})
        rows = []
        for level in READERS:
            rss = await open_until(level)
            rows.append({"readers": level, "rss_mb": rss})
            cli.show("  stalled readers", rows[-1])
        after = await close()
        cli.show("  after they closed, MiB", {"rss": after})
        # The same again: what stays after the first wave is reused, or it grows each time.
        waves = []
        for wave in range(2, WAVES + 1):
            again = await open_until(READERS[-1])
            waves.append({"open_rss_mb": again, "after_rss_mb": await close()})
            cli.show(f"  wave {wave}", waves[-1])
    return {
        "zip_bytes": STALLED_BYTES,
        "baseline_rss_mb": base,
        "levels": rows,
        "after_rss_mb": after,
        "waves": waves,
    }


async def _with_stack(weed: Seaweed, bucket: str, rounds: int, quiet: IO[bytes]) -> dict[str, Any]:
    env = weed.env(bucket, "bench/zips")
    async with stack.fresh_stack() as settings:
        async with driving(settings, **env) as run:
            memory, bdr = await big_bdr(run, settings, keep=True)
        cli.show("2. the worker's RSS building ~1 GB into the store, MB", memory)
        store = store_at(weed.endpoint, bucket, "bench/zips")
        token, bdr_id = await _ready_bdr(settings, store)
        # The proxy's caps raised so that none cuts in.
        caps = {
            "ZIP_PROXY_MAX_PER_USER": "1000",
            "ZIP_PROXY_MAX_DOWNLOADS": "1000",
            "ZIP_PROXY_IDLE_SECONDS": "600",
        }
        ports = {"redirect": stack.free_port(), "proxy": stack.free_port()}
        servers = {
            mode: stack.start_server(
                cli.service_env(settings, **env, **caps, ZIP_DOWNLOAD_MODE=mode), port, log=quiet
            )
            for mode, port in ports.items()
        }
        try:
            pids = {mode: server.pid for mode, server in servers.items()}
            served = await downloads(settings, ports, pids, bdr, rounds)
            cli.show("4. the server's CPU per download, s", served)
            path = f"/api/pmd/bdr/{bdr_id}/download"
            stalled = await stalled_readers(ports["proxy"], pids["proxy"], path, token)
        finally:
            stack.stop(*servers.values())
    return {"memory": memory, "downloads": served, "proxied": {"readers": stalled}}


def run(rounds: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with seaweed.running_seaweed() as weed, tempfile.TemporaryDirectory(prefix="pmd-store-") as tmp:
        bucket = asyncio.run(seaweed.create_bucket(weed))
        files = make_large_pngs(INPUTS / "large", 128)
        local = Path(tmp) / "local.zip"
        store = store_at(weed.endpoint, bucket, "bench/build")
        figures["build"] = build_vs_put(store, files, local, rounds)
        cli.show("1. build(object_sink) against a plain multipart put, s", figures["build"])
        weed.vacuum()
        slow, slow_port = start_slow_proxy(weed.endpoint, ADDED_LATENCY_S)
        small = make_small_pixel_art(INPUTS / "small", 128)
        try:
            for name, artworks in (("fetch", files), ("fetch_small", small)):
                figures[name] = asyncio.run(
                    slow_reads(weed, bucket, f"bench/{name}", artworks, slow_port, 3)
                )
                cli.show(f"3. {name}: artworks through +50 ms a request, s", figures[name])
        finally:
            stack.stop(slow)
        local.unlink()
        with open(os.devnull, "wb") as quiet:
            figures |= asyncio.run(_with_stack(weed, bucket, 3, quiet))
    return figures


if __name__ == "__main__":
    parser = cli.parser("store", __doc__)
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds of test 1")
    parser.add_argument(
        "--slow-proxy", nargs=3, metavar=("UPSTREAM", "PORT", "LATENCY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.slow_proxy:
        upstream, port, latency = args.slow_proxy
        asyncio.run(_slow_proxy(upstream, int(port), float(latency)))
    else:
        cli.save(args.json, run(args.rounds))
