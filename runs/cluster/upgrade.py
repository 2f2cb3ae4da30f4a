"""The cluster run's upgrade: a previous release installed apart, and the deploy runs' exports."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import obstore
from obstore.store import ObjectStore

from pmd_service.host.vault import EXPORTS_FOLDER
from pmd_service.jobs.failures import unexpected_message
from runs.chaos.checks import Report
from runs.chaos.seed import SeedUser
from runs.chaos.workload import TERMINAL, Api
from runs.cluster.hosts import Release, StartFailed
from runs.cluster.netns import marked, run_tag
from support.stack import CHECKOUT

# What a failed export says when nothing classified its error: 0.1.0 called it a download.
UNEXPECTED = (unexpected_message("download"), unexpected_message("export"))

# A release's commit, for a clone that lacks its tag.
RELEASES = {"v0.1.0": "c41ab5d839745c24f1981126faf326d4ae051422"}
PREVIOUS = "previous"  # the newest release tag before HEAD
SQL_EXPORTS_OPEN = """
SELECT count(*) FROM exports WHERE status IN ('pending', 'processing')
    OR (send_email AND email_sent_at IS NULL AND status IN ('ready', 'failed'))
"""


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _run(*argv: str, feed: bytes | None = None, **kw: Any) -> bytes:
    done: subprocess.CompletedProcess[bytes] = subprocess.run(
        argv, input=feed, capture_output=True, **kw
    )
    if done.returncode:
        raise StartFailed(f"{' '.join(argv[:4])}: {done.stderr.decode()[-800:]}")
    return done.stdout


def install(rev: str, folder: Path) -> Release:
    """Revision `rev` installed into a venv of its own, beside this environment's libraries."""
    if rev == PREVIOUS:
        rev = _git("describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", "HEAD~1") or "v0.1.0"
    commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}") or RELEASES.get(rev)
    if commit is None:
        raise StartFailed(f"--upgrade-from {rev}: no such revision in {CHECKOUT}")
    (src := folder / "src").mkdir(parents=True)
    tree = _run("git", "-C", str(CHECKOUT), "archive", "--format=tar", commit)
    _run("tar", "-x", "-C", str(src), feed=tree)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(folder), str(src))  # fmt: skip
    venv.create(folder / "venv", with_pip=False)
    site = next((folder / "venv").glob("lib/python*/site-packages"))
    with zipfile.ZipFile(next(folder.glob("*.whl"))) as wheel:
        wheel.extractall(site)
    (site / "libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    release = Release(f"{rev} ({commit[:9]})", str(folder / "venv" / "bin" / "python"),
                      {"PYTHONSAFEPATH": "1"})  # fmt: skip
    probe = "import pmd_service as p, pmd_service.migrations as m; print(p.__file__, m.__file__)"
    env = {"PATH": os.environ["PATH"]} | release.env  # this checkout the working folder
    found = _run(release.python, "-c", probe, cwd=CHECKOUT, env=env).decode()
    if len(paths := found.split()) != 2 or not all(p.startswith(str(site)) for p in paths):
        raise StartFailed(f"the release {release.name} imports {found!r}, not its own tree")
    return release


async def command(release: Release, args: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *release.argv(*args), cwd=CHECKOUT, env=marked(run_tag(), env | release.env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
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
        want = await self.pool.fetchval("SELECT sha256 FROM export_parts WHERE export_id = "
                                        "$1::uuid AND number = $2", export_id, n)  # fmt: skip
        if a is None or a.status == 503:  # a 503 is booked by Api.classify
            return
        self.api.ledger.counts["downloads checked: export part, byte-exact"] += 1
        if a.status != 200 or hashlib.sha256(a.body).hexdigest() != want:
            self.api.ledger.download_failed(f"{path}: {a.status}, {len(a.body)} bytes, not the "
                                            "recorded part")  # fmt: skip

    async def settle(self, bound: float) -> None:
        for _ in range(int(bound)):
            if not await self.pool.fetchval(SQL_EXPORTS_OPEN):
                break
            await asyncio.sleep(1)
        self.api.ledger.say(f"drain: {await self.pool.fetchval(SQL_EXPORTS_OPEN)} exports open")

    async def check(self, report: Report, received: list[EmailMessage], store: ObjectStore) -> None:
        """Every export ended, sent the emails it owes, and left its ready parts' files only."""
        rows = await self.pool.fetch("SELECT * FROM exports ORDER BY created_at")
        bad = [f"export {r['id']} is {r['status']}" for r in rows if r["status"] not in TERMINAL]
        bad += [f"export {i} accepted, no row" for i in self.seen - {str(r["id"]) for r in rows}]
        report.count("exports in the database (every one the clients saw), terminal",
                     len(rows) - len(bad), len(rows), bad)  # fmt: skip
        failed = [r for r in rows if r["status"] == "failed"]
        bad = [f"export {r['id']}: {r['error_message']}" for r in failed
               if r["error_message"] in (None, *UNEXPECTED)]  # fmt: skip
        report.count("failed exports that failed for a known reason", len(failed) - len(bad),
                     len(failed), bad, at_least=0)  # fmt: skip
        got = Counter(str(m["Message-ID"]).split("@")[0].removeprefix("<export-")
                      for m in received)  # fmt: skip
        owed = {str(r["id"]): {"ready": 1, "failed": 1}.get(r["status"], int(r["email_sent_at"]
                is not None)) if r["send_email"] else 0 for r in rows}  # fmt: skip
        bad = [f"export {i}: {got[i]} emails, {n} owed" for i, n in owed.items() if got[i] != n]
        report.count("exports with exactly the emails owed (1 on ready/failed if asked)",
                     len(owed) - len(bad), len(owed), bad)  # fmt: skip
        ready = {r["file_path"].removeprefix("bdr/") for r in await self.pool.fetch(
            "SELECT file_path FROM export_parts WHERE status = 'ready'")}  # fmt: skip
        found = {m["path"] for got in obstore.list(store, prefix=EXPORTS_FOLDER) for m in got}
        bad = [f"{k}: a ready part's, missing" for k in sorted(ready - found)]
        bad += [f"{k}: no ready part's" for k in sorted(found - ready)]
        report.count("export part files in the bucket, each a ready part's, none missing",
                     len(ready | found) - len(bad), len(ready | found), bad)  # fmt: skip
        by = sorted(Counter(r["status"] for r in rows).items())
        retaken = sum(r["attempts"] > 1 for r in rows)
        report.info("exports' final statuses: " + ", ".join(f"{s} {n}" for s, n in by)
                    + f"; built in more than one attempt: {retaken}")  # fmt: skip
