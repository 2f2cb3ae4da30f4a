"""What the chaos run checks once every BDR has settled; each check prints one count line."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import re
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import obstore
from obstore.store import ObjectStore

from pmd_service.core.objects import S3Access, StoreUrl, incomplete_uploads
from pmd_service.core.settings import Settings
from pmd_service.jobs.failures import UNEXPECTED_MESSAGE
from pmd_service.jobs.upkeep.object_tidy import remove_orphan_objects
from runs.chaos.seed import Seed
from runs.chaos.sse import SseClient
from runs.chaos.workload import DOWNLOAD_FAILED, TERMINAL, Api, Ledger
from support.mailbox import Mailbox

BDR_LINK = re.compile(r"bdr=([0-9a-f-]{36})")
SQL_UNSETTLED = """
SELECT count(*) FILTER (WHERE status IN ('pending', 'processing')) AS open,
       count(*) FILTER (WHERE send_email AND email_sent_at IS NULL
                          AND status IN ('ready', 'failed')) AS emails
FROM batch_download_requests
"""


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def count(
        self, name: str, ok: int, total: int, bad: list[str] | None = None, *, at_least: int = 1
    ) -> None:
        """`ok` of `total` passed. Fewer than `at_least` to check is a violation too: a check
        that found nothing to look at proved nothing (0/0 passes only when asked to)."""
        self.lines.append(f"  {name}: {ok}/{total}")
        for b in bad or []:
            self.violations.append(f"{name}: {b}")
        if ok != total and not bad:
            self.violations.append(f"{name}: {ok}/{total}")
        if total < at_least:
            self.violations.append(f"{name}: only {total} to check, at least {at_least} wanted")

    def each(self, name: str, problems: list[list[str]]) -> None:
        """`count` over things checked one by one, each with its problems (none: it passed)."""
        bad = [p for found in problems for p in found]
        self.count(name, sum(not found for found in problems), len(problems), bad)

    def minimum(self, name: str, got: int, want: int) -> None:
        """The workload must have produced at least `want` of something."""
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


async def converge(
    api: Api, seed: Seed, clients: list[SseClient], bound: float
) -> dict[int, dict[str, Any]]:
    """The API's view of each user's BDRs once every SSE client agrees with it (or the bound
    passes)."""
    deadline = time.monotonic() + bound
    while True:
        views: dict[int, dict[str, Any]] = {}
        for u in [*seed.users, seed.victim]:
            a = await api.call("GET", "/api/pmd/bdr", headers=u.auth)
            assert a is not None and a.status == 200, a
            views[u.id] = {item["id"]: item for item in a.json()["items"]}
        if all(c.view == views[c.user.id] for c in clients) or time.monotonic() > deadline:
            return views
        await asyncio.sleep(0.5)


async def check_all(
    api: Api, pool: asyncpg.Pool, seed: Seed, clients: list[SseClient], settings: Settings,
    zip_store: ObjectStore | None, mailbox: Mailbox, *, settled: bool, limit: int,
    duration: float,
) -> Report:  # fmt: skip
    """Every check of the workload's outcome, once BDRs have settled (`settled`: within the
    bound). ZIPs in `zip_store` if given, else in BDR_PATH."""
    ledger, report = api.ledger, Report()
    # Longer than a client's read timeout (40 s): one whose connection was cut without a
    # reset (a host's link down) notices only then, and resumes after it.
    views = await converge(api, seed, clients, 60)
    bdrs = await pool.fetch(
        """
        SELECT b.*, u.public_sqid AS user_sqid FROM batch_download_requests b
        JOIN users u ON u.id = b.user_id ORDER BY b.created_at
        """
    )
    if not settled:
        report.violations.append("drain: BDRs or emails still open at the bound")
    await check_terminal(report, api, seed, ledger, bdrs)
    if zip_store is not None:
        assert settings.bdr_bucket is not None
        # The workers' sweep runs once a minute: it aborts what the kill left open.
        await check_bucket(report, pool, zip_store, settings.bdr_bucket, settings.s3_access,
                           seed, bdrs, uploads_within=75)  # fmt: skip
    else:
        await asyncio.to_thread(check_zips, report, settings.bdr_path, seed, bdrs)
        check_folder(report, settings.bdr_path, bdrs)
    # Read after the checks above: "settled" counts an email owed no more once it is taken,
    # before it is sent, and the last ones arrive meanwhile.
    received = mailbox.received()
    check_emails(report, bdrs, received)
    check_downloads(report, ledger)
    check_sse(report, clients, views)
    check_actions(report, ledger)
    await check_limit(report, pool, limit, ledger)
    check_5xx(report, ledger)
    check_volume(report, Workload(len(seed.users), duration), ledger, bdrs, len(received), clients)
    return report


def conclude(report: Report, ledger: Ledger, run: str) -> int:
    """The ledger's counts, the checks and every violation printed, then the verdict line
    (`run`: OK or FAILED: n violations); the exit status."""
    report.lines += [f"  {k}: {n}" for k, n in sorted(ledger.counts.items())
                     if not k.startswith("actions:")]  # fmt: skip
    found = "\n".join(report.violations)
    violations = report.violations + [v for v in ledger.violations if v not in found]
    print("checks:")
    print("\n".join(report.lines))
    for v in violations[:40]:
        print(f"  VIOLATION {v}")
    print(f"{run}: {'FAILED' if violations else 'OK'}: {len(violations)} violations", flush=True)
    return 1 if violations else 0


async def check_terminal(
    report: Report, api: Api, seed: Seed, ledger: Ledger, bdrs: list[Any]
) -> None:
    owners = {r["id"]: r["user_id"] for r in bdrs}
    users = {u.id: u for u in [*seed.users, seed.victim]}
    seen = sorted(ledger.seen_bdrs)
    terminal, stuck = 0, []
    for bdr_id in seen:
        user = users[owners[uuid.UUID(bdr_id)]]
        a = await api.call("GET", f"/api/pmd/bdr/{bdr_id}", headers=user.auth)
        status = (
            a.json()["status"]
            if a is not None and a.status == 200
            else f"unreadable ({a and a.status})"
        )
        if status in TERMINAL:
            terminal += 1
        else:
            stuck.append(f"BDR {bdr_id} is {status}")
    report.count("BDRs the clients saw, now terminal (through the API)", terminal, len(seen), stuck)
    db_terminal = sum(r["status"] in TERMINAL for r in bdrs)
    report.count("BDRs in the database, terminal", db_terminal, len(bdrs),
                 [f"BDR {r['id']} stuck {r['status']}" for r in bdrs if r["status"] not in TERMINAL])  # fmt: skip
    failed = [r for r in bdrs if r["status"] == "failed"]
    for r in failed:
        report.info(f"failed BDR {r['id']} after {r['attempts']} attempts: {r['error_message']}")
    # Faults end a BDR as failed only for a known reason (its posts gone, retries used up); an
    # error nobody classified is a bug (as a cursor's prepared statement behind PgBouncer was).
    bugs = [f"BDR {r['id']} failed on an unexpected error" for r in failed
            if r["error_message"] == UNEXPECTED_MESSAGE]  # fmt: skip
    report.count("failed BDRs that failed for a known reason", len(failed) - len(bugs),
                 len(failed), bugs, at_least=0)  # fmt: skip
    by_status = Counter(r["status"] for r in bdrs)
    report.info("final statuses: " + ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())))
    retaken = sum(r["attempts"] > 1 for r in bdrs)
    report.info(f"BDRs built in more than one attempt (retry or takeover): {retaken}")


def _zip_problems(row: Any, root: Path, seed: Seed) -> list[str]:
    path = root / row["user_sqid"] / f"pmd-{row['id']}.zip"
    if row["file_path"] != f"bdr/{row['user_sqid']}/pmd-{row['id']}.zip":
        return [f"{row['id']}: unexpected file_path {row['file_path']}"]
    if not path.is_file():
        return [f"{row['id']}: ready but {path} is missing"]
    return _content_problems(row, path.read_bytes(), seed)


def _content_problems(row: Any, data: bytes, seed: Seed) -> list[str]:
    """The ZIP's bytes against the row (size, sha256) and the seed (its entries, byte-exact)."""
    problems = []
    if (
        len(data) != row["file_size_bytes"]
        or hashlib.sha256(data).hexdigest() != row["file_sha256"]
    ):
        problems.append(f"{row['id']}: size/sha256 on disk differ from the row")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if (bad := z.testzip()) is not None:
                return [*problems, f"{row['id']}: CRC error in {bad}"]
            names = set(z.namelist())
            skipped = {s["post_id"]: s["reason"] for s in row["skipped"]}
            wanted = [pid for pid in row["post_ids"] if pid not in skipped]
            expect = {f"artworks/{seed.posts[p].sqid}.{seed.posts[p].fmt}" for p in wanted}
            expect |= {"metadata.json", "manifest-sha256.txt"}
            expect |= {"comments.json"} if row["include_comments"] else set()
            expect |= {"reactions.json"} if row["include_reactions"] else set()
            if names != expect:
                problems.append(f"{row['id']}: entries differ: extra {sorted(names - expect)[:5]}, "
                                f"missing {sorted(expect - names)[:5]}")  # fmt: skip
            for p in wanted:
                post = seed.posts[p]
                name = f"artworks/{post.sqid}.{post.fmt}"
                if name in names and z.read(name) != post.path.read_bytes():
                    problems.append(f"{row['id']}: {name} differs from the vault file")
            for p in row["post_ids"]:
                if not seed.posts[p].has_file and skipped.get(p) not in ("file_missing", "deleted"):
                    problems.append(
                        f"{row['id']}: post {p} has no file but was not skipped as missing"
                    )
    except zipfile.BadZipFile as exc:
        problems.append(f"{row['id']}: not a ZIP ({exc})")
    return problems


def check_zips(report: Report, root: Path, seed: Seed, bdrs: list[Any]) -> None:
    ready = [r for r in bdrs if r["status"] == "ready"]
    report.each("ready ZIPs CRC-valid and byte-exact (the non-skipped artworks, nothing else)",
                [_zip_problems(row, root, seed) for row in ready])  # fmt: skip
    skipped = Counter(s["reason"] for r in ready for s in r["skipped"])
    report.info("artworks skipped in ready ZIPs: "
                + (", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"))  # fmt: skip


def check_folder(report: Report, root: Path, bdrs: list[Any]) -> None:
    expected = {f"{r['user_sqid']}/pmd-{r['id']}.zip": r for r in bdrs if r["status"] == "ready"}
    found: set[str] = set()
    stray: list[str] = []
    parts: list[str] = []
    for f in sorted(root.rglob("*")):
        if f.is_dir():
            continue
        rel = str(f.relative_to(root))
        if f.name.endswith(".part"):
            parts.append(rel)
        elif rel in expected:
            found.add(rel)
        else:
            stray.append(f"{rel} is no ready BDR's ZIP")
    report.count("ready BDRs with exactly their one ZIP under the final name", len(found),
                 len(expected), [f"missing {k}" for k in sorted(set(expected) - found)])  # fmt: skip
    report.count("files in the BDR folder that are a ready BDR's ZIP (no strays, no partials "
                 "under a final name)", len(found), len(found) + len(stray), stray)  # fmt: skip
    report.info(
        f".part files left by SIGKILLed builds (the daily cleanup removes them): {len(parts)}"
    )


async def check_bucket(
    report: Report, pool: asyncpg.Pool, store: ObjectStore, bucket: StoreUrl, access: S3Access, seed: Seed,
    bdrs: list[Any], uploads_within: float,
) -> None:  # fmt: skip
    """--store mode: each ready row's object byte-exact, no other object under the prefix (no
    partial one ever visible: an upload that did not complete is no object), and every upload a
    killed worker left open aborted by the workers' own sweep within `uploads_within` s."""
    ready = {r["file_path"].removeprefix("bdr/"): r for r in bdrs if r["status"] == "ready"}
    found = {m["path"] for batch in obstore.list(store) for m in batch}
    problems = []
    for key, row in sorted(ready.items()):
        if key not in found:
            problems.append([f"{row['id']}: ready but {key} is not in the bucket"])
            continue
        data = (await (await obstore.get_async(store, key)).bytes_async()).to_bytes()
        problems.append(await asyncio.to_thread(_content_problems, row, data, seed))
    report.each("ready ZIPs in the bucket, CRC-valid and byte-exact", problems)
    # ZIPs whose owner removed them while the store was down are left to the daily cleanup
    # (their rows expired first, so they are never served): run its orphan removal now, as if
    # the hour it waits had passed, and count what is left.
    report.info(f"orphan ZIPs the cleanup removed: {await remove_orphan_objects(pool, store, 0)}")
    found = {m["path"] for batch in obstore.list(store) for m in batch}
    stray = sorted(found - set(ready))
    report.count("objects under the prefix that are a ready BDR's ZIP (no strays, no partials)",
                 len(found) - len(stray), len(found), [f"{k} is no ready BDR's ZIP" for k in stray])  # fmt: skip
    deadline = time.monotonic() + uploads_within
    while (left := await incomplete_uploads(bucket, access)) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling the store
        await asyncio.sleep(2)
    report.count("multipart uploads left open (aborted by the sweep)", 0 if left else 1, 1,
                 [f"upload of {u.key} still open" for u in left])  # fmt: skip


def check_emails(report: Report, bdrs: list[Any], received: list[EmailMessage]) -> None:
    got: Counter[str] = Counter()
    for m in received:
        body = m.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        match = BDR_LINK.search(text)
        got[match.group(1) if match else "?"] += 1
    by_id = {str(r["id"]): r for r in bdrs}
    bad: list[str] = []
    asked = [r for r in bdrs if r["send_email"]]
    ok = 0
    for r in asked:
        n = got[str(r["id"])]
        # Ready/failed: exactly one. Cancelled: none. Expired (removed by its owner): one if it
        # was taken while ready, none if the owner removed it first.
        want = {"ready": 1, "failed": 1, "cancelled": 0}.get(
            r["status"], 1 if r["email_sent_at"] else 0
        )
        if n == want and (n == 1) == (r["email_sent_at"] is not None):
            ok += 1
        else:
            bad.append(
                f"BDR {r['id']} ({r['status']}): {n} emails, email_sent_at {r['email_sent_at']}"
            )
    for bdr_id, n in got.items():
        if bdr_id not in by_id or not by_id[bdr_id]["send_email"]:
            bad.append(f"{n} email(s) for {bdr_id}, which did not ask for one")
    report.count("BDRs that asked for email with exactly the emails owed (1 on ready/failed)",
                 ok, len(asked), bad)  # fmt: skip
    report.info(f"emails received: {len(received)}")


def check_sse(
    report: Report, clients: list[SseClient], api_views: dict[int, dict[str, Any]]
) -> None:
    problems = []
    for c in clients:
        want = api_views[c.user.id]
        diff = sorted(k for k in set(want) | set(c.view) if want.get(k) != c.view.get(k))
        problems.append([f"{c.name}: {len(diff)} BDRs differ, e.g. {diff[0]}: client "
                         f"{_brief(c.view.get(diff[0]))} vs API {_brief(want.get(diff[0]))}"]
                        if diff else [])  # fmt: skip
    report.each("SSE clients whose final view equals the database (every field of every BDR)",
                problems)  # fmt: skip
    report.info(
        f"SSE: {sum(c.connects for c in clients)} connections, {sum(c.events for c in clients)} "
        f"bdr_update events, {sum(c.resets for c in clients)} resets; ends: "
        + ", ".join(f"{k} {v}" for k, v in sum((c.ends for c in clients), Counter()).most_common())
    )


def _brief(item: dict[str, Any] | None) -> str:
    if item is None:
        return "absent"
    return f"{item['status']} {item['progress']['done']}/{item['progress']['total']}"


async def check_limit(report: Report, pool: asyncpg.Pool, limit: int, ledger: Ledger) -> None:
    rows = await pool.fetch(
        """
        SELECT user_id, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
        FROM batch_download_requests GROUP BY 1, 2 ORDER BY 1, 2
        """
    )
    over = [f"user {r['user_id']} made {r['n']} on {r['day']}" for r in rows if r["n"] > limit]
    at_limit = sum(r["n"] == limit for r in rows)
    report.count(f"users within the daily limit of {limit}", len(rows) - len(over), len(rows), over)
    report.info(f"users who reached the limit: {at_limit}; 429s answered: "
                f"{ledger.counts['BDR requests refused by the daily limit (429)']}")  # fmt: skip


def check_actions(report: Report, ledger: Ledger) -> None:
    keys = sorted(k for k in ledger.counts if k.startswith("actions:"))
    total = sum(ledger.counts[k] for k in keys)
    half = [
        v
        for v in ledger.violations
        if "half-applied" in v or "changed posts" in v or "not every id" in v
    ]
    report.count(
        "batch actions all-or-nothing (verified in the database)", total - len(half), total, half
    )
    for k in keys:
        report.info(f"  {k.removeprefix('actions: ')}: {ledger.counts[k]}")


def check_5xx(report: Report, ledger: Ledger) -> None:
    fives = sum(n for (_, _, status), n in ledger.statuses.items() if status >= 500)
    bad = [v for v in ledger.violations if " from server-" in v]
    report.count("5xx answers that are allowed 503s (server shutting down, documented "
                 "Redis-down, store-down or PgBouncer-paused 503, or disk short of space)",
                 fives - len(bad), fives, bad, at_least=0)  # fmt: skip
    report.info(f"503 from a server shutting down: {ledger.shutdown_503}; documented Redis-down, "
                f"store-down or PgBouncer-paused 503s: {dict(ledger.dependency_503) or 0}; new BDRs refused while the disk "
                f"was full: {ledger.disk_503}")  # fmt: skip
    answers = sum(ledger.statuses.values())
    by_status = Counter[int]()
    for (_, _, status), n in ledger.statuses.items():
        by_status[status] += n
    report.info(f"answers: {answers} (" + ", ".join(f"{s}×{n}" for s, n in sorted(by_status.items()))
                + f"); connection errors: {dict(ledger.conn_errors) or 0}")  # fmt: skip


def check_downloads(report: Report, ledger: Ledger) -> None:
    """Every download the actors checked, failed ones included: only a documented 503 (booked
    by Api.classify, never checked) is no failure."""
    checked = sum(n for k, n in ledger.counts.items() if k.startswith("downloads checked: "))
    bad = [v for v in ledger.violations if DOWNLOAD_FAILED in v]
    report.count("downloads that got the recorded ZIP's bytes (whole, Range, If-Range, HEAD)",
                 checked - len(bad), checked, bad)  # fmt: skip


@dataclass(frozen=True)
class Workload:
    """What the run's size owes: each minimum is well under what a healthy run makes (about a
    third or less of the CI run's counts), so only a run where something stopped working, or
    never ran, falls short."""

    users: int
    seconds: float

    def minimums(self) -> dict[str, int]:
        u, per_minute = self.users, self.users * self.seconds / 60
        return {
            "BDRs created (202)": 4 * u,
            "BDRs ready at the end": math.ceil(1.5 * u),
            "downloads checked": math.ceil(4 * per_minute),
            # By the minute, as the rest: a 2-user, 25 s run (the --break-downloads self-test)
            # owed 1 email when 3 of its BDRs asked for one and 1 of those ended ready.
            "emails received": math.ceil(per_minute / 2),
            "batch actions checked in the database": math.ceil(6 * per_minute),
            "SSE bdr_update events": 4 * u,
        }


def check_volume(
    report: Report, work: Workload, ledger: Ledger, bdrs: list[Any], emails: int,
    clients: list[SseClient],
) -> None:  # fmt: skip
    got = {
        "BDRs created (202)": ledger.counts["BDRs created (202)"],
        "BDRs ready at the end": sum(r["status"] == "ready" for r in bdrs),
        "downloads checked": sum(
            n for k, n in ledger.counts.items() if k.startswith("downloads checked: ")
        ),
        "emails received": emails,
        "batch actions checked in the database": sum(
            n for k, n in ledger.counts.items() if k.startswith("actions:")
        ),
        "SSE bdr_update events": sum(c.events for c in clients),
    }
    for name, want in work.minimums().items():
        report.minimum(f"workload: {name}", got[name], want)
