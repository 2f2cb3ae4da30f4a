"""What the chaos run checks once every BDR has settled; each check prints one count line."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import obstore
from obstore.store import ObjectStore

from pmd_service.core.objects import incomplete_uploads
from pmd_service.core.settings import Settings
from pmd_service.storage.object_tidy import remove_orphan_objects
from pmd_service.storage.zip_names import EXPORTS_FOLDER
from pmd_service.upkeep.cleanup import old_files, unnamed_files
from runs.chaos.procs import Processes, covered
from runs.chaos.seed import Seed, zip_problems
from runs.chaos.sse import SseClient
from runs.chaos.workload import DOWNLOAD_FAILED, SERVER_ERROR, TERMINAL, Api, Ledger
from support.mailbox import Mailbox

DAILY_LIMIT = 10  # the runs' BDR_DAILY_LIMIT
BDR_LINK = re.compile(r"bdr=([0-9a-f-]{36})")
# An email is owed until its send ended (lease cleared); a killed worker's waits for the sweep.
SQL_UNSETTLED = """
SELECT count(*) FILTER (WHERE status IN ('pending', 'processing')) AS open,
       count(*) FILTER (WHERE send_email AND status IN ('ready', 'failed')
                          AND (email_sent_at IS NULL OR email_lease_until IS NOT NULL)) AS emails
FROM batch_download_requests
"""


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    counted: dict[str, list[int]] = field(default_factory=dict)  # name: [ok, total]

    def count(
        self, name: str, ok: int, total: int, bad: list[str] | None = None, *, at_least: int = 1
    ) -> None:
        """`ok` of `total` passed; fewer than `at_least` to check proved nothing: a violation."""
        self.lines.append(f"  {name}: {ok}/{total}")
        self.counted[name] = [ok, total]
        self.violations += [f"{name}: {b}" for b in bad or []]
        if ok != total and not bad:
            self.violations.append(f"{name}: {ok}/{total}")
        if total < at_least:
            self.violations.append(f"{name}: only {total} to check, at least {at_least} wanted")

    def failures(self, name: str, total: int, bad: list[str], *, at_least: int = 1) -> None:
        self.count(name, total - len(bad), total, bad, at_least=at_least)

    def each(self, name: str, problems: list[list[str]]) -> None:
        bad = [p for found in problems for p in found]
        self.count(name, sum(not found for found in problems), len(problems), bad)

    def minimum(self, name: str, got: int, want: int) -> None:
        self.lines.append(f"  {name}: {got} (at least {want})")
        if got < want:
            self.violations.append(f"{name}: {got}, fewer than the {want} this workload owes")

    def info(self, text: str) -> None:
        self.lines.append(f"  {text}")


async def settle(pool: asyncpg.Pool, ledger: Ledger, bound: float) -> bool:
    """Until no BDR is open and no email owed (True), or `bound` s have passed (False)."""
    start, last = time.monotonic(), ""
    while time.monotonic() - start < bound:
        row = await pool.fetchrow(SQL_UNSETTLED)
        assert row is not None
        if (state := f"{row['open']} BDRs open, {row['emails']} emails owed") != last:
            ledger.say(f"drain: {state}")
            last = state
        if row["open"] == 0 and row["emails"] == 0:
            ledger.say(f"drain: settled after {time.monotonic() - start:.0f} s")
            return True
        await asyncio.sleep(1)
    ledger.say(f"drain: NOT settled after {bound:.0f} s")
    return False


async def check_all(
    api: Api,
    pool: asyncpg.Pool,
    seed: Seed,
    clients: list[SseClient],
    settings: Settings,
    zip_store: ObjectStore | None,
    mailbox: Mailbox,
    *,
    settled: bool,
    duration: float,
    upgraded: bool = False,
) -> Report:
    ledger, report = api.ledger, Report()
    # Past a client's read timeout (40 s), after which one silently cut off resumes.
    deadline = time.monotonic() + 60
    while True:
        views: dict[int, dict[str, Any]] = {}
        for u in [*seed.users, seed.victim]:
            a = await api.call("GET", "/api/pmd/bdr", headers=u.auth)
            assert a is not None and a.status == 200, a
            views[u.id] = {item["id"]: item for item in a.json()["items"]}
        agree = all(not sse_diff(c, views[c.user.id], upgraded) for c in clients)
        if agree or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    bdrs = await pool.fetch(
        "SELECT b.*, u.public_sqid AS user_sqid FROM batch_download_requests b"
        " JOIN users u ON u.id = b.user_id ORDER BY b.created_at"
    )
    if not settled:
        report.violations.append("drain: BDRs or emails still open at the bound")
    await check_terminal(report, api, seed, bdrs)
    if zip_store is not None:
        await check_bucket(report, pool, zip_store, settings, seed, bdrs)
    else:  # ZIPs of workers killed between publishing and committing: the cleanup's
        zips = await asyncio.to_thread(old_files, settings.zip_path, time.time(), -1.0)
        orphans = await unnamed_files(pool, settings.zip_path, set(zips[1]))
        await asyncio.to_thread(check_folder, report, settings.zip_path, seed, bdrs, orphans)
    received = mailbox.received()
    check_emails(report, bdrs, received, ledger.worker_kills)
    check_downloads(report, ledger)
    check_sse(report, clients, views, upgraded)
    check_actions(report, ledger)
    await check_limit(report, pool, DAILY_LIMIT, ledger)
    check_5xx(report, ledger)
    got = {
        "BDRs created (202)": ledger.counts["BDRs created (202)"],
        "BDRs ready at the end": sum(r["status"] == "ready" for r in bdrs),
        "downloads checked": ledger.counted("downloads checked: "),
        "emails received": len(received),
        "batch actions checked in the database": ledger.counted("actions:"),
        "SSE bdr_update events": sum(c.events for c in clients),
    }
    down = covered([*ledger.redis_down, *ledger.store_down], ledger.t0, ledger.t0 + duration)
    for name, want in Workload(len(seed.users), duration, down).minimums().items():
        report.minimum(f"workload: {name}", got[name], want)
    return report


def conclude(report: Report, ledger: Ledger, run: str) -> int:
    report.lines += [
        f"  {k}: {n}" for k, n in sorted(ledger.counts.items()) if not k.startswith("actions:")
    ]
    found = "\n".join(report.violations)
    report.violations += [v for v in ledger.violations if v not in found]
    violations = report.violations
    print("checks:")
    print("\n".join(report.lines))
    for v in violations[:40]:
        print(f"  VIOLATION {v}")
    print(f"{run}: {'FAILED' if violations else 'OK'}: {len(violations)} violations", flush=True)
    return 1 if violations else 0


async def check_terminal(report: Report, api: Api, seed: Seed, bdrs: list[Any]) -> None:
    owners = {r["id"]: r["user_id"] for r in bdrs}
    users = {u.id: u for u in [*seed.users, seed.victim]}
    seen, stuck = sorted(api.ledger.seen_bdrs), []
    for bdr_id in seen:
        user = users[owners[uuid.UUID(bdr_id)]]
        a = await api.call("GET", f"/api/pmd/bdr/{bdr_id}", headers=user.auth)
        status = a.json()["status"] if a and a.status == 200 else f"unreadable ({a and a.status})"
        if status not in TERMINAL:
            stuck.append(f"BDR {bdr_id} is {status}")
    report.failures("BDRs the clients saw, now terminal (through the API)", len(seen), stuck)
    stuck = [f"BDR {r['id']} stuck {r['status']}" for r in bdrs if r["status"] not in TERMINAL]
    report.failures("BDRs in the database, terminal", len(bdrs), stuck)
    failed = [r for r in bdrs if r["status"] == "failed"]
    for r in failed:
        report.info(f"failed BDR {r['id']} after {r['attempts']} attempts: {r['error_message']}")
    # Faults fail a BDR only for a known reason: an error nobody classified is a bug.
    bugs = [
        f"BDR {r['id']} failed on an unexpected error"
        for r in failed
        if r["error_code"] == "unexpected"
    ]
    report.failures("failed BDRs that failed for a known reason", len(failed), bugs, at_least=0)
    by_status = Counter(r["status"] for r in bdrs)
    report.info("final statuses: " + ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())))
    retaken = sum(r["attempts"] > 1 for r in bdrs)
    report.info(f"BDRs built in more than one attempt (retry or takeover): {retaken}")


def check_zips(
    report: Report,
    where: str,
    ready: dict[str, Any],
    found: set[str],
    read: Callable[[str], bytes],
    seed: Seed,
    partial: Callable[[str], bool] = lambda _: False,
) -> None:
    """Each ready row's ZIP byte-exact among `found`, and nothing else there but `partial` ones."""
    problems = []
    for key, row in sorted(ready.items()):
        if row["file_path"] != f"bdr/{key}":
            problems.append([f"{row['id']}: unexpected file_path {row['file_path']}"])
        elif key not in found:
            problems.append([f"{row['id']}: ready but {key} is missing"])
        else:
            problems.append(zip_problems(row, read(key), seed))
    report.each(
        f"ready BDRs with their one ZIP {where} under its final name, CRC-valid and "
        "byte-exact (the non-skipped artworks, nothing else)",
        problems,
    )
    others = [
        f"{f} is no ready BDR's ZIP" for f in sorted(found) if f not in ready and not partial(f)
    ]
    report.failures(
        f"files {where} that are a ready BDR's ZIP (no strays, no partials under a final name)",
        len(found),
        others,
        at_least=0,
    )


def check_folder(
    report: Report, root: Path, seed: Seed, bdrs: list[Any], orphans: Collection[Path]
) -> None:
    for orphan in orphans:  # as the daily cleanup removes them, so that none counts as a stray
        orphan.unlink()
    report.info(f"orphan ZIPs the cleanup removed: {len(orphans)}")
    ready = {f"{r['user_sqid']}/pmd-{r['id']}.zip": r for r in bdrs if r["status"] == "ready"}
    found = {str(f.relative_to(root)) for f in root.rglob("*") if not f.is_dir()}
    where, partial = "in the BDR folder", lambda f: f.endswith(".part")
    check_zips(report, where, ready, found, lambda k: (root / k).read_bytes(), seed, partial)
    skipped = Counter(s["reason"] for r in ready.values() for s in r["skipped"])
    skips = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
    report.info(f"artworks skipped in ready ZIPs: {skips or 'none'}")
    parts = sum(f.endswith(".part") for f in found)
    report.info(f".part files left by SIGKILLed builds (the daily cleanup removes them): {parts}")


async def check_bucket(
    report: Report,
    pool: asyncpg.Pool,
    store: ObjectStore,
    settings: Settings,
    seed: Seed,
    bdrs: list[Any],
) -> None:
    """--store: the ready ZIPs in the bucket, and no upload left open after 75 s."""
    # ZIPs removed while the store was down are the daily cleanup's: run it now.
    report.info(f"orphan ZIPs the cleanup removed: {await remove_orphan_objects(pool, store, 0)}")
    ready = {r["file_path"].removeprefix("bdr/"): r for r in bdrs if r["status"] == "ready"}
    # Export parts are checked apart (runs/cluster/upgrade.py).
    listed = [m["path"] for batch in obstore.list(store) for m in batch]
    found = {k for k in listed if not k.startswith(f"{EXPORTS_FOLDER}/")}
    await asyncio.to_thread(
        check_zips,
        report,
        "in the bucket",
        ready,
        found,
        lambda k: obstore.get(store, k).bytes().to_bytes(),
        seed,
    )
    bucket, deadline = settings.zip_bucket, time.monotonic() + 75
    assert bucket is not None
    while (left := await incomplete_uploads(bucket, settings.s3_access)) and (  # noqa: ASYNC110
        time.monotonic() < deadline
    ):
        await asyncio.sleep(2)
    report.count(
        "multipart uploads left open (aborted by the sweep)",
        0 if left else 1,
        1,
        [f"upload of {u.key} still open" for u in left],
    )


# How long a send may last after its take: three SMTP timeouts of 5 s (mail/notify.py).
SEND_BOUND = timedelta(seconds=15)


def cut_off(r: Any, kills: list[datetime]) -> bool:
    """Whether a worker kill landed mid-send (lease ended): at most once, that email may be lost."""
    taken = r["email_sent_at"]
    if taken is None or r["email_lease_until"] is not None:
        return False
    return any(taken <= k <= taken + SEND_BOUND for k in kills)


def check_emails(
    report: Report, bdrs: list[Any], received: list[EmailMessage], kills: list[datetime]
) -> None:
    got: Counter[str] = Counter()
    for m in received:
        if str(m["Message-ID"]).startswith("<export-"):
            continue  # an export's: runs/cluster/upgrade.py checks those
        body = m.get_body(("plain",))
        match = BDR_LINK.search(body.get_content() if body is not None else "")
        got[match.group(1) if match else "?"] += 1
    asked = {str(r["id"]): r for r in bdrs if r["send_email"]}
    bad, lost = [], 0
    for bdr_id, r in asked.items():
        # Ready/failed: one; cancelled: none; expired: one if it was sent while ready.
        sent = r["email_sent_at"] is not None and r["email_lease_until"] is None
        want = {"ready": 1, "failed": 1, "cancelled": 0}.get(r["status"], int(sent))
        if sent and got[bdr_id] == 0 and want == 1 and cut_off(r, kills):
            lost += 1
            continue
        if got[bdr_id] != want or (want == 1) != sent:
            bad.append(
                f"BDR {bdr_id} ({r['status']}): {got[bdr_id]} emails, "
                f"email_sent_at {r['email_sent_at']}, email_lease_until {r['email_lease_until']}"
            )
    ok = len(asked) - len(bad)
    bad += [
        f"{n} email(s) for {i}, which did not ask for one" for i, n in got.items() if i not in asked
    ]
    report.count(
        "BDRs that asked for email with exactly the emails owed (1 on ready/failed)",
        ok,
        len(asked),
        bad,
    )
    report.info(
        f"emails received: {len(received)}; cut off mid-send by a worker kill (at most once): "
        f"{lost}"
    )


# The words of a failure, which this release derives from the stored reason on read.
WORDED = {"error_code", "error_reason", "error_message"}


def _same(client: dict[str, Any] | None, api: dict[str, Any] | None, upgraded: bool) -> bool:
    if client is None or api is None or not upgraded:
        return client == api
    # A frame the previous release sent lacks the fields this one added (null until they apply).
    skip = {k for k, v in api.items() if k not in client and v is None}
    if client.get("status") == api.get("status") == "failed" and client.get("error_message"):
        skip |= WORDED  # a previous release's frame says a failure in its own words
    return set(client) <= set(api) | skip and all(
        k in client and client[k] == api[k] for k in set(api) - skip
    )


def sse_diff(c: SseClient, want: dict[str, Any], upgraded: bool) -> list[str]:
    """The BDRs on which client `c`'s view and the API's items `want` disagree."""
    return sorted(
        k for k in set(want) | set(c.view) if not _same(c.view.get(k), want.get(k), upgraded)
    )


def check_sse(
    report: Report, clients: list[SseClient], views: dict[int, dict[str, Any]], upgraded: bool
) -> None:
    def brief(item: dict[str, Any] | None) -> str:
        if item is None:
            return "absent"
        return f"{item['status']} {item['progress']['done']}/{item['progress']['total']}"

    problems = []
    for c in clients:
        want, diff = views[c.user.id], sse_diff(c, views[c.user.id], upgraded)
        problems.append(
            [
                f"{c.name}: {len(diff)} BDRs differ, e.g. {k}: client {brief(c.view.get(k))} "
                f"vs API {brief(want.get(k))}"
                for k in diff[:1]
            ]
        )
    report.each(
        "SSE clients whose final view equals the database (every field of every BDR)", problems
    )
    ends = sum((c.ends for c in clients), Counter()).most_common()
    report.info(
        f"SSE: {sum(c.connects for c in clients)} connections, {sum(c.events for c in clients)} "
        f"bdr_update events, {sum(c.resets for c in clients)} resets; ends: "
        + ", ".join(f"{k} {v}" for k, v in ends)
    )


async def check_limit(report: Report, pool: asyncpg.Pool, limit: int, ledger: Ledger) -> None:
    rows = await pool.fetch(
        "SELECT user_id, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n"
        " FROM batch_download_requests GROUP BY 1, 2 ORDER BY 1, 2"
    )
    over = [f"user {r['user_id']} made {r['n']} on {r['day']}" for r in rows if r["n"] > limit]
    report.failures(f"users within the daily limit of {limit}", len(rows), over)
    at_limit = sum(r["n"] == limit for r in rows)
    report.info(
        f"users who reached the limit: {at_limit}; 429s answered: "
        f"{ledger.counts['BDR requests refused by the daily limit (429)']}"
    )


def check_actions(report: Report, ledger: Ledger) -> None:
    keys = sorted(k for k in ledger.counts if k.startswith("actions:"))
    total = ledger.counted("actions:")
    half = [v for v in ledger.violations if re.search("half-applied|changed posts|not every id", v)]
    report.failures("batch actions all-or-nothing (verified in the database)", total, half)
    for k in keys:
        report.info(f"  {k.removeprefix('actions: ')}: {ledger.counts[k]}")


def check_5xx(report: Report, ledger: Ledger) -> None:
    fives = sum(n for status, n in ledger.statuses.items() if status >= 500)
    bad = [v for v in ledger.violations if SERVER_ERROR in v]
    report.failures(
        "5xx answers that are allowed 503s (server shutting down, documented "
        "Redis-down, store-down or PgBouncer-paused 503, or disk short of space)",
        fives,
        bad,
        at_least=0,
    )
    report.info(
        f"answers: {sum(ledger.statuses.values())} ("
        + ", ".join(f"{s}×{n}" for s, n in sorted(ledger.statuses.items()))
        + f"); connection errors: {dict(ledger.conn_errors) or 0}"
    )


def check_downloads(report: Report, ledger: Ledger) -> None:
    checked = ledger.counted("downloads checked: ")
    bad = [v for v in ledger.violations if DOWNLOAD_FAILED in v]
    report.failures(
        "downloads that got the recorded ZIP's bytes (whole, Range, If-Range, HEAD)", checked, bad
    )


@dataclass(frozen=True)
class Workload:
    """What the run's size owes: a third or less of what a healthy CI run makes."""

    users: int
    seconds: float
    # Of `seconds`, those in which downloads could only answer 503 (Redis or the store down).
    unservable: float = 0.0

    def minimums(self) -> dict[str, int]:
        u, per_minute = self.users, self.users * self.seconds / 60
        servable = self.users * max(self.seconds - self.unservable, 0.0) / 60
        return {
            "BDRs created (202)": 4 * u,
            "BDRs ready at the end": math.ceil(1.5 * u),
            "downloads checked": max(math.ceil(4 * servable), 1),
            # By the minute too: the 2-user, 25 s --break-downloads self-test gets ~1 email.
            "emails received": math.ceil(per_minute / 2),
            "batch actions checked in the database": math.ceil(6 * per_minute),
            "SSE bdr_update events": 4 * u,
        }


def check_processes(
    report: Report, groups: Collection[Processes], logged: list[str] | None = None
) -> None:
    for group in groups:
        group.reap()
    report.failures(
        "process starts that ended only when the run stopped them (a fault, a "
        "deploy; the supervisor starts a server or worker again)",
        sum(group.started for group in groups),
        [e.describe() for group in groups for e in group.unexpected],
    )
    if logged is not None:
        report.count(
            "server and worker logs without an ERROR or a traceback", 1 - bool(logged), 1, logged
        )
