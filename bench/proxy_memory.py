"""Proxy mode against clients that stop reading, and a store that stops answering:
`python -m bench.proxy_memory [--readers 10,40,100] [--mib 24] [--waves 6]`.

A real `python server.py` in BDR_DOWNLOAD_MODE=proxy (and one in redirect mode) serves a ready
BDR whose object, in a real SeaweedFS bucket, holds `--mib` MiB.

1. Stalled readers (GET, headers read, never read on) added until 10, 40, 100 are open: the
   server's RSS once settled against its RSS at rest after one whole download, and after they
   all closed; then `--waves` − 1 more waves of the largest number. Also glibc's thread arenas.
   The proxy's caps are raised so that none cuts in.
2. A frozen store (SeaweedFS SIGSTOPped): how long a download (GET, each mode) and a removal
   (DELETE) take to answer, against the store well (expected: 503 + Retry-After, and 204).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import aiohttp
import obstore

from bench import cli
from bench.objects import store_at
from pmd_service.core.db import connect
from pmd_service.core.settings import Settings
from support.measures import rss_kb, thread_arenas_kb
from support.seaweed import Seaweed, create_bucket, new_bucket_name, running_seaweed
from support.seeding import Factory
from support.stack import free_port, fresh_stack, service_env, start_server, stop

PREFIX = "bench/proxied"
SETTLE_S = 1.0  # RSS unchanged (±1 MiB) for this long counts as settled


async def _ready_bdrs(
    settings: Settings, store: Any, n: int, size: int
) -> tuple[str, list[uuid.UUID]]:
    """n ready BDRs of one user, each object `size` random bytes: (the owner's token, ids)."""
    conn = await connect(settings.database_url, "pmd-bench")
    try:
        owner = await Factory(conn, settings).user("proxied")
        ids = [uuid.uuid4() for _ in range(n)]
        for bdr_id in ids:
            file_path = f"bdr/{owner.sqid}/pmd-{bdr_id}.{os.urandom(4).hex()}.zip"
            await obstore.put_async(store, file_path.removeprefix("bdr/"), os.urandom(size))
            await conn.execute(
                "INSERT INTO batch_download_requests (id, user_id, user_sqid, post_ids, "
                "artwork_count, status, file_path, file_size_bytes, completed_at, expires_at) "
                "VALUES ($1, $2, $3, '{1}', 1, 'ready', $4, $5, now(), $6)",
                bdr_id, owner.id, owner.sqid, file_path, size,
                datetime.now(UTC) + timedelta(days=1),
            )  # fmt: skip
    finally:
        await conn.close()
    return owner.token, ids


async def _settled_rss(pid: int, bound: float = 60) -> float:
    """The server's RSS (MiB) once it stops moving."""
    deadline = time.monotonic() + bound
    last, since = rss_kb(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < SETTLE_S:
        await asyncio.sleep(0.1)
        if abs((now := rss_kb(pid)) - last) > 1024:
            last, since = now, time.monotonic()
    return rss_kb(pid) / 1024


async def stalled_readers(port: int, pid: int, path: str, token: str, levels: list[int],
                          size: int, waves_of: int) -> dict[str, Any]:  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    readers: list[asyncio.StreamWriter] = []

    async def streaming() -> float:
        async with http.get(base_url + "/metrics") as resp:
            found = [ln for ln in (await resp.text()).splitlines()
                     if ln.startswith("pmd_proxy_downloads ")]  # fmt: skip
        return float(found[0].split()[1]) if found else float("nan")

    async def open_until(level: int) -> float:
        """Readers added until `level` are open; the server's RSS once settled."""
        while len(readers) < level:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
                         f"Authorization: Bearer {token}\r\n\r\n".encode())  # fmt: skip
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            readers.append(writer)
        return await _settled_rss(pid)

    async def close() -> float:
        """Every reader leaves; the server's RSS once it has let them all go."""
        for reader in readers:
            reader.transport.abort()
        readers.clear()
        deadline = time.monotonic() + 60
        # Polling the server's metrics: nothing here to wait on.
        while await streaming() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        return await _settled_rss(pid)

    def arenas() -> float:
        return thread_arenas_kb(pid) / 1024

    async with aiohttp.ClientSession() as http:
        async with http.get(base_url + path, headers={"Authorization": f"Bearer {token}"}) as r:
            assert len(await r.read()) == size  # the warm-up: one whole download
        base, base_arenas = await _settled_rss(pid), arenas()
        print(f"1. server RSS at rest after one download: {base:.1f} MiB ({base_arenas:.1f} MiB "
              "in thread arenas)", flush=True)  # fmt: skip
        rows = []
        for level in levels:
            rss = await open_until(level)
            rows.append({"readers": level, "rss_mb": rss, "streaming": await streaming(),
                         "arenas_mb": arenas()})  # fmt: skip
            print(f"   {level:4d} stalled readers: +{rss - base:.1f} MiB "
                  f"({(rss - base) / level:.2f} MiB each); {rows[-1]['streaming']:.0f} downloads "
                  "streaming", flush=True)  # fmt: skip
        after, after_arenas = await close(), arenas()
        print(f"   after they closed: {after - base:+.1f} MiB against the baseline "
              f"({after_arenas:.1f} MiB in thread arenas)", flush=True)  # fmt: skip
        # The same again: what stays after the first wave is reused, or it grows each time.
        waves = []
        for wave in range(2, waves_of + 1):
            again = await open_until(levels[-1])
            waves.append({"open_rss_mb": again, "after_rss_mb": await close(),
                          "after_arenas_mb": arenas()})  # fmt: skip
            print(f"   wave {wave}: RSS {again:.1f} MiB open, "
                  f"{waves[-1]['after_rss_mb'] - base:+.1f} MiB after", flush=True)  # fmt: skip
    return {"zip_bytes": size, "baseline_rss_mb": base, "baseline_arenas_mb": base_arenas,
            "levels": rows, "after_rss_mb": after, "after_arenas_mb": after_arenas,
            "waves": waves}  # fmt: skip


async def _timed(http: aiohttp.ClientSession, method: str, url: str, token: str) -> dict[str, Any]:
    """One request's time to its whole answer; a GET asks for one byte (the answer's time)."""
    headers = {"Authorization": f"Bearer {token}"} | ({"Range": "bytes=0-0"} if method == "GET"
                                                      else {})  # fmt: skip
    started = time.perf_counter()
    async with http.request(method, url, headers=headers, allow_redirects=False) as resp:
        await resp.read()
        return {"status": resp.status, "retry_after": resp.headers.get("Retry-After"),
                "seconds": time.perf_counter() - started}  # fmt: skip


async def frozen_store(weed: Seaweed, ports: dict[str, int], token: str, ids: list[uuid.UUID],
                       rounds: int = 3) -> dict[str, Any]:  # fmt: skip
    """Answer times with the store well, then frozen: a download's GET in each mode, and a
    ready BDR's DELETE (through the proxy-mode server)."""
    get_id, removable = ids[0], ids[1:]
    assert len(removable) >= 2 * rounds
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        for state in ("well", "frozen"):
            if state == "frozen":
                weed.freeze()
            try:
                for mode, port in ports.items():
                    url = f"http://127.0.0.1:{port}/api/pmd/bdr/{get_id}/download"
                    out[f"{state}_get_{mode}"] = [await _timed(http, "GET", url, token)
                                                  for _ in range(rounds)]  # fmt: skip
                bdrs = f"http://127.0.0.1:{ports['proxy']}/api/pmd/bdr/"
                out[f"{state}_delete"] = [await _timed(http, "DELETE", f"{bdrs}{removable.pop()}",
                                                       token) for _ in range(rounds)]  # fmt: skip
            finally:
                if state == "frozen":
                    weed.thaw()
    print("2. answers while the store is frozen (SIGSTOP), against the store well:", flush=True)
    for what in ("get_redirect", "get_proxy", "delete"):
        well = statistics.median(a["seconds"] for a in out[f"well_{what}"])
        frozen = max(a["seconds"] for a in out[f"frozen_{what}"])
        statuses = sorted({(a["status"], a["retry_after"]) for a in out[f"frozen_{what}"]})
        print(f"   {what.replace('_', ' ')}: {statuses} in {frozen:.2f} s at most "
              f"(well: {well * 1000:.0f} ms; {frozen - well:+.2f} s)", flush=True)  # fmt: skip
    return out


async def _run(weed: Seaweed, bucket: str, levels: list[int], size: int, waves: int,
               quiet: IO[bytes]) -> dict[str, Any]:  # fmt: skip
    env = weed.env(bucket, PREFIX)
    async with fresh_stack() as settings:
        store = store_at(weed.endpoint, bucket, PREFIX)
        token, ids = await _ready_bdrs(settings, store, 8, size)
        ports = {"redirect": free_port(), "proxy": free_port()}
        caps = {"BDR_PROXY_MAX_PER_USER": "1000", "BDR_PROXY_MAX_DOWNLOADS": "1000",
                "BDR_PROXY_IDLE_SECONDS": "600"}  # fmt: skip
        servers = {mode: start_server(service_env(settings, **env, **caps,
                                                  BDR_DOWNLOAD_MODE=mode), port, log=quiet)
                   for mode, port in ports.items()}  # fmt: skip
        try:
            path = f"/api/pmd/bdr/{ids[0]}/download"
            readers = await stalled_readers(ports["proxy"], servers["proxy"].pid, path, token,
                                            levels, size, waves)  # fmt: skip
            frozen = await frozen_store(weed, ports, token, ids)
        finally:
            stop(*servers.values())
    return {"readers": readers, "frozen": frozen}


def main() -> None:
    parser = cli.parser("proxy_memory", __doc__)
    parser.add_argument("--readers", default="10,40,100", help="stalled readers, cumulative")
    parser.add_argument("--mib", type=int, default=24, help="size of the ZIP served")
    parser.add_argument("--waves", type=int, default=6, help="waves of the largest number of "
                        "readers (each opened, then closed)")  # fmt: skip
    args = parser.parse_args()
    # The servers' logs (a line per reader that leaves) would drown the figures.
    with running_seaweed() as weed, open(os.devnull, "wb") as quiet:
        bucket = new_bucket_name()
        asyncio.run(create_bucket(weed, bucket))
        figures = asyncio.run(_run(weed, bucket, [int(n) for n in args.readers.split(",")],
                                   args.mib * 2**20, args.waves, quiet))  # fmt: skip
    cli.save(args.json, figures)


def section(f: dict[str, Any]) -> dict[str, Any]:
    frozen = f["frozen"]
    answers = [
        {
            "label": label,
            # The median, as bench.proxy_memory prints it.
            "well_s": statistics.median(a["seconds"] for a in frozen[f"well_{what}"]),
            "slowest_s": max(a["seconds"] for a in frozen[f"frozen_{what}"]),
            "statuses": ", ".join(sorted({str(a["status"]) for a in frozen[f"frozen_{what}"]})),
        }
        for what, label in (
            ("get_redirect", "download, redirect mode"),
            ("get_proxy", "download, proxy mode"),
            ("delete", "removal"),
        )
    ]
    return f | {"answers": answers}


if __name__ == "__main__":
    main()
