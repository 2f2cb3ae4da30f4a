"""The cluster run's upgrade: its releases' commands and the deploy runs' exports (a previous
release is installed by support/release.py)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import asyncpg
import obstore
from obstore.store import ObjectStore

from pmd_service.storage.zip_names import EXPORTS_FOLDER
from runs.chaos.checks import Report, cut_off
from runs.chaos.seed import SeedUser
from runs.chaos.workload import TERMINAL, Api
from runs.cluster.netns import marked, run_tag
from support.release import Release, StartFailed
from support.stack import CHECKOUT

# An earlier release's words for an unclassified failure (this one records `unexpected`).
UNEXPECTED = tuple(
    f"An unexpected error stopped this {noun}; it has been logged. Please request it again."
    for noun in ("download", "export")
)

SQL_PART_SHA256 = "SELECT sha256 FROM export_parts WHERE export_id = $1::uuid AND number = $2"
SQL_EXPORTS_OPEN = """
SELECT count(*) FROM exports WHERE status IN ('pending', 'processing')
    OR (send_email AND email_sent_at IS NULL AND status IN ('ready', 'failed'))
"""


async def command(release: Release, args: list[str], env: dict[str, str]) -> str:
    argv, env = release.argv(*args), marked(run_tag(), env | release.env)
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=CHECKOUT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode:
        raise StartFailed(f"{release.name}: {' '.join(args)}: {err.decode()[-1500:]}")
    return out.decode()


@dataclass
class Exports:
    """Each user's exports, one at a time, followed to their end, every ready part checked."""

    api: Api
    pool: asyncpg.Pool
    seen: set[str] = field(default_factory=set)

    async def run(self, user: SeedUser, part_bytes: int, duration: float) -> None:
        rng, led = random.Random(user.id), self.api.ledger
        until = led.t0 + duration
        while time.monotonic() < until:
            body = {"send_email": rng.random() < 0.5, "part_bytes": part_bytes}
            a = await self.api.call("POST", "/api/pmd/exports", json=body, headers=user.auth)
            if a is not None and a.status in (202, 409):  # 409: the one a lost answer made
                self.seen.add(export_id := a.json()["id" if a.status == 202 else "export_id"])
                led.counts[f"exports requested ({a.status})"] += 1
                if rng.random() < 0.1:
                    path = f"/api/pmd/exports/{export_id}"
                    await self.api.call("DELETE", path, headers=user.auth)
                await self.follow(user, export_id, until)
            elif a is None:
                led.counts["export requests with unknown outcome (connection lost)"] += 1
            elif a.status < 500:  # a 5xx is booked by Api.classify
                led.violation(f"export request answered {a.status}: {a.body[:200]!r}")
            await asyncio.sleep(rng.uniform(0.5, 2))

    async def follow(self, user: SeedUser, export_id: str, until: float) -> None:
        while time.monotonic() < until:
            a = await self.api.call("GET", f"/api/pmd/exports/{export_id}", headers=user.auth)
            if a is not None and a.status == 200 and a.json()["status"] in TERMINAL:
                for part in a.json()["parts"]:
                    if part["status"] == "ready":
                        await self.download(user, export_id, part["number"])
                return
            await asyncio.sleep(1)

    async def download(self, user: SeedUser, export_id: str, n: int) -> None:
        path = f"/api/pmd/exports/{export_id}/parts/{n}/download"
        a = await self.api.call("GET", path, headers=user.auth)
        want = await self.pool.fetchval(SQL_PART_SHA256, export_id, n)
        if a is None or a.status == 503:  # a 503 is booked by Api.classify
            return
        self.api.ledger.counts["downloads checked: export part, byte-exact"] += 1
        if a.status != 200 or hashlib.sha256(a.body).hexdigest() != want:
            got = f"{a.status}, {len(a.body)} bytes"
            self.api.ledger.download_failed(f"{path}: {got}, not the recorded part")

    async def settle(self, bound: float) -> None:
        for _ in range(int(bound)):
            if not await self.pool.fetchval(SQL_EXPORTS_OPEN):
                break
            await asyncio.sleep(1)
        self.api.ledger.say(f"drain: {await self.pool.fetchval(SQL_EXPORTS_OPEN)} exports open")

    async def check(self, report: Report, received: list[EmailMessage], store: ObjectStore) -> None:
        """Every export ended, sent the emails it owes, and left its ready parts' files only."""

        def count(name: str, of: Collection[Any], bad: list[str], at_least: int = 1) -> None:
            report.count(name, len(of) - len(bad), len(of), bad, at_least=at_least)

        rows = await self.pool.fetch("SELECT * FROM exports ORDER BY created_at")
        bad = [f"export {r['id']} is {r['status']}" for r in rows if r["status"] not in TERMINAL]
        bad += [f"export {i} accepted, no row" for i in self.seen - {str(r["id"]) for r in rows}]
        count("exports in the database (every one the clients saw), terminal", rows, bad)
        failed = {r["id"]: r for r in rows if r["status"] == "failed"}
        bad = [
            f"export {i}: {r['error_code']}: {r['error_message']}"
            for i, r in failed.items()
            if r["error_message"] in (None, *UNEXPECTED) or r["error_code"] == "unexpected"
        ]
        count("failed exports that failed for a known reason", failed, bad, at_least=0)
        got = Counter(str(m["Message-ID"]).split("@")[0].removeprefix("<export-") for m in received)
        # If asked for: one on ready or failed; on another end, one if it was sent before.
        due = [r["status"] in ("ready", "failed") or r["email_sent_at"] is not None for r in rows]
        owed = {str(r["id"]): int(r["send_email"] and d) for r, d in zip(rows, due, strict=True)}
        kills = self.api.ledger.worker_kills
        cut = {i for r in rows if got[i := str(r["id"])] < owed[i] and cut_off(r, kills)}
        bad = [
            f"export {i}: {got[i]} emails, {n} owed"
            for i, n in owed.items()
            if got[i] != n and i not in cut
        ]
        count("exports with exactly the emails owed (1 on ready/failed if asked)", owed, bad)
        parts = await self.pool.fetch("SELECT file_path FROM export_parts WHERE status = 'ready'")
        ready = {r["file_path"].removeprefix("bdr/") for r in parts}
        found = {m["path"] for got in obstore.list(store, prefix=EXPORTS_FOLDER) for m in got}
        bad = [f"{k}: a ready part's, missing" for k in sorted(ready - found)]
        bad += [f"{k}: no ready part's" for k in sorted(found - ready)]
        files = ready | found
        count("export part files in the bucket, each a ready part's, none missing", files, bad)
        by = ", ".join(f"{s} {n}" for s, n in sorted(Counter(r["status"] for r in rows).items()))
        retaken = sum(r["attempts"] > 1 for r in rows)
        report.info(
            f"exports' final statuses: {by}; built in more than one attempt: {retaken}; "
            f"emails cut off mid-send by a worker kill (at most once): {len(cut)}"
        )
