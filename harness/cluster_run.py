"""The cluster's workload and faults, run from the client host (see harness/cluster.py)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import time
import zipfile
from typing import Any

import aiohttp

from harness.chaos_seed import seed
from harness.chaos_stack import SmtpServer
from harness.cluster import BUCKET, Cluster
from harness.seaweed import Seaweed, create_bucket
from pmd_service.core.db import connect
from pmd_service.core.migrate import apply_migrations
from pmd_service.core.public_ids import PublicIds

LB = "http://10.77.0.5"


async def prepare(cluster: Cluster) -> Any:
    env = cluster.service_env()
    conn = await connect(env["DATABASE_URL"], "pmd-cluster")
    try:
        await apply_migrations(conn)
        data = await seed(conn, cluster.run_dir / "vault", cluster.jwt_secret, _ids(),
                          users=4, posts_per_user=120, victim_posts=40,
                          rng=random.Random(20261123))  # fmt: skip
    finally:
        await conn.close()
    weed = Seaweed(env["AWS_ENDPOINT_URL"], cluster.run_dir)
    await create_bucket(weed, BUCKET)
    return data


def _ids() -> PublicIds:
    from sqids.constants import DEFAULT_ALPHABET

    return PublicIds(DEFAULT_ALPHABET)


async def run(cluster: Cluster, ci: bool) -> int:
    smtp = SmtpServer(port=1025)
    smtp_host = cluster.host("client").address
    _start_smtp(smtp, smtp_host)
    data = await prepare(cluster)
    env = cluster.service_env(SMTP_HOST=smtp_host, SMTP_PORT="1025", BASE_URL="http://pmd.test",
                              BDR_DOWNLOAD_MODE="proxy", BDR_RETRY_BASE_SECONDS="1",
                              BDR_STALE_SECONDS="15", BDR_PENDING_GRACE_SECONDS="5")  # fmt: skip
    await asyncio.to_thread(cluster.start_server, "srv1", env)
    await asyncio.to_thread(cluster.start_server, "srv2", env)
    cluster.start_worker("wrk1", env)
    cluster.start_worker("wrk2", env)
    await asyncio.to_thread(cluster.start_lb)
    user = data.users[0]
    async with aiohttp.ClientSession() as http:
        await _until_ready(http)
        posts = user.downloads[:6]
        async with http.post(f"{LB}/api/pmd/bdr", json={"post_ids": posts, "send_email": True},
                             headers=user.auth) as resp:  # fmt: skip
            assert resp.status == 202, await resp.text()
            item = await resp.json()
        status = await _until_terminal(http, user.auth, item["id"], 60)
        print(f"BDR {item['id']} through the balancer: {status}", flush=True)
        async with http.get(f"{LB}/api/pmd/bdr/{item['id']}/download", headers=user.auth) as resp:
            body = await resp.read()
            print(f"download: {resp.status}, {len(body)} bytes", flush=True)
        archive = zipfile.ZipFile(io.BytesIO(body))
        exact = all(
            archive.read(f"artworks/{data.posts[p].sqid}.{data.posts[p].fmt}")
            == data.posts[p].path.read_bytes()
            for p in posts
            if data.posts[p].has_file
        )
        print(f"byte-exact: {exact}; emails: {len(smtp.received())}", flush=True)
    smtp.stop()
    return 0 if status == "ready" and exact else 1


def _start_smtp(smtp: SmtpServer, address: str) -> None:
    from aiosmtpd.controller import Controller

    smtp.controller = Controller(smtp, hostname=address, port=smtp.port)
    smtp.controller.start()


async def _until_ready(http: aiohttp.ClientSession, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(f"{LB}/readyz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.5)
    raise RuntimeError("the balancer did not answer /readyz 200")


async def _until_terminal(
    http: aiohttp.ClientSession, auth: dict[str, str], bdr_id: str, within: float
) -> str:
    deadline = time.monotonic() + within
    status = "?"
    while time.monotonic() < deadline:
        async with http.get(f"{LB}/api/pmd/bdr/{bdr_id}", headers=auth) as resp:
            status = (await resp.json())["status"]
        if status in ("ready", "failed", "cancelled", "expired"):
            return status
        await asyncio.sleep(0.3)
    return status

