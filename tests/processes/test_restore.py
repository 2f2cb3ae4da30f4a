"""Backups and restores (issue 54): the service's real processes on a database of their own make
downloads and exports (some ready, some pending, one mid-build, one email owed, a recurring
export overdue); the ZIP folder is copied (A), work goes on, the database is dumped with
`pg_dump -Fc` (B), work goes on again (requests, a removal, an expiry, a purge), and everything
stops. Then the dump is restored with `pg_restore` into a fresh database twice, Redis emptied
each time as a restore loses it:

1. with the files as they are (the database older than the files);
2. with the folder copied at A (the files older than the database).

Each time `check-restore`, run before the service starts, reports each inconsistency made
(exit 1); then the service starts and repairs: no 5xx, every listed download and export part
either downloads whole with its SHA-256 or answers 410 and is marked, every job the dump left
running is queued again and ends ready, the overdue schedule starts one export, files no ready
row names go once past the cleanup's hour (the files are aged: the grace is a constant), never
a named one, `check-restore` then finds nothing, and no email the dump showed as sent is sent
again."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg

from pmd_service.core.db import create_pool
from pmd_service.core.migrate import apply_migrations, create_host_tables
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.jobs.context import job_context
from pmd_service.upkeep.cleanup import daily_cleanup
from pmd_service.upkeep.restore_check import check_restore
from support.mailbox import Mailbox
from support.seeding import Factory, UserRow
from support.sse import SSE, Stream
from support.stack import WORKER, connected, create_database, drop_database, free_port, service_env
from tests.helpers import SECRET, as_role, eventually, grant_role, pg_program
from tests.procs import CLI, SERVE, Proc, run

T = TypeVar("T")
HUNG = 60.0  # a guard against a hang, not a measure
# The operator's step (docs/operations.md): the stream's event ids move past any the old
# database issued after the dump, so none is issued again for another event.
JUMP_EVENT_IDS = (
    "SELECT setval('pmd.stream_events_id_seq', (SELECT last_value FROM pmd.stream_events_id_seq)"
    " + 1000000000)"
)
# The age the cleanup's grace needs: past TEMP_MAX_AGE_SECONDS (an hour).
AGED = 2 * 3600


@dataclass
class Calls:
    """The API as a client calls it, every status kept: none may be a 5xx."""

    http: aiohttp.ClientSession
    base: str
    statuses: list[tuple[int, str, str]] = field(default_factory=list)

    async def call(
        self, method: str, path: str, user: UserRow, **kw: Any
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.http.request(method, self.base + path, headers=user.auth, **kw) as resp:
            body = await resp.read()
            self.statuses.append((resp.status, method, path))
            return resp.status, dict(resp.headers), body

    async def json(self, method: str, path: str, user: UserRow, status: int, **kw: Any) -> Any:
        got, _, body = await self.call(method, path, user, **kw)
        assert got == status, (method, path, got, body[:500])
        return json.loads(body) if body else None


@dataclass
class Place:
    """A database of the test's, and the service's processes on it."""

    name: str
    admin_url: str
    settings: Settings  # the service's processes'
    env: dict[str, str]
    port: int
    procs: list[Proc] = field(default_factory=list)
    worker: Proc | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Calls]:
        """The server and a worker (whose start runs the sweep), stopped with SIGTERM after."""
        server = await Proc.start(SERVE, self.env, f"server on {self.name}")
        self.procs.append(server)
        try:
            await self.start_worker()
            await server.line(lambda s: "listening on http://127.0.0.1:" in s, HUNG)
            async with aiohttp.ClientSession() as http:
                yield Calls(http, f"http://127.0.0.1:{self.port}")
        finally:
            await self.stop_worker()
            await server.stop(within=HUNG)

    async def start_worker(self) -> None:
        self.worker = await Proc.start(WORKER, self.env, f"worker on {self.name}")
        self.procs.append(self.worker)
        await self.worker.line(lambda s: "worker ready" in s, HUNG)

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop(within=HUNG)
            self.worker = None

    async def job(self, job: Callable[[dict[str, Any]], Awaitable[T]]) -> T:
        """A job the worker runs (the daily cleanup), run here at once as the worker would."""
        async with job_context(self.settings) as ctx:
            return await job(ctx)

    async def command(self, *argv: str) -> tuple[int, str]:
        code, proc = await run([*CLI, *argv], self.env, HUNG)
        return code, "\n".join(proc.out)

    def logs(self) -> str:
        return "\n".join(p.log()[-4000:] for p in self.procs)

    @asynccontextmanager
    async def pool(self) -> AsyncIterator[asyncpg.Pool]:
        """A pool on its database; its processes' logs printed if the block fails."""
        pool = await create_pool(self.admin_url, "pmd-test", min_size=1, max_size=4)
        try:
            yield pool
        except BaseException:
            print(self.logs())
            raise
        finally:
            await pool.close()


@dataclass
class Scenario:
    """The rows the test made, by what happened to them."""

    users: dict[str, UserRow]
    bdrs: dict[str, str] = field(default_factory=dict)  # name → id
    exports: dict[str, str] = field(default_factory=dict)
    emailed_at_dump: set[str] = field(default_factory=set)  # Message-IDs the dump shows sent
    last_event: int = 0  # the newest stream event id the old database issued


async def test_restores_in_either_direction_leave_nothing_inconsistent(
    test_database: Any, admin_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    created: list[str] = []
    vault, zip_path = tmp_path / "vault", tmp_path / "bdr"
    vault.mkdir()

    async def place(label: str) -> Place:
        """A fresh database (empty) and the settings of the service's processes on it."""
        name = f"pmd_restore_{label}_{uuid.uuid4().hex[:8]}"
        created.append(name)
        url = await create_database(admin_database_url, name)
        port = free_port()
        settings = Settings(
            database_url=as_role(url, test_database.role, test_database.password),
            redis_url=redis_url,
            data_dir=tmp_path,
            vault_path=vault,
            zip_path=zip_path,
            jwt_secret_key=SECRET,
            base_url="http://pmd.test",
            auto_migrate=False,
            smtp_host=mailbox.host,
            smtp_port=mailbox.port,
            smtp_timeout=2.0,
        )
        env = service_env(
            settings,
            tmp_path,
            PORT=str(port),
            SMTP_HOST=mailbox.host,
            SMTP_PORT=str(mailbox.port),
            SMTP_TIMEOUT="2",
            JOB_PENDING_GRACE_SECONDS="0",
            JOB_STALE_SECONDS="15",
            BDR_DAILY_LIMIT="50",
            EXPORT_COOLDOWN_SECONDS="0",
        )
        return Place(label, url, settings, env, port)

    with Mailbox() as mailbox:
        try:
            live = await place("live")
            async with connected(live.admin_url) as conn:
                await create_host_tables(conn)
                await grant_role(conn, test_database.role, test_database.password)
            async with connected(live.env["DATABASE_URL"]) as conn:
                await apply_migrations(conn)
            dump, files_a = tmp_path / "pmd.dump", tmp_path / "bdr-at-A"
            made = await _before_and_after_the_dump(live, mailbox, dump, files_a)

            # 1. The database older than the files: the folder as the work after B left it.
            older = await place("older")
            await _restore_and_repair(older, made, dump, mailbox, _expected_db_older(made))
            # 2. The files older than the database: the folder as copied at A.
            shutil.rmtree(zip_path)
            shutil.copytree(files_a, zip_path)
            newer = await place("newer")
            await _restore_and_repair(newer, made, dump, mailbox, _expected_db_newer(made))
        finally:
            for name in created:
                await drop_database(admin_database_url, name)

    # Across the whole test: an email the dump showed as sent went out once, never again.
    sent = Counter(str(m["Message-ID"]) for m in mailbox.received())
    assert len(made.emailed_at_dump) == 3
    assert {m: sent[m] for m in made.emailed_at_dump} == dict.fromkeys(made.emailed_at_dump, 1)


# --- before the restores ---------------------------------------------------------------------


async def _before_and_after_the_dump(
    live: Place, mailbox: Mailbox, dump: Path, files_a: Path
) -> Scenario:
    async with live.pool() as pool:
        return await _work(live, pool, mailbox, dump, files_a)


async def _work(
    live: Place, pool: asyncpg.Pool, mailbox: Mailbox, dump: Path, files_a: Path
) -> Scenario:
    factory = Factory(pool, live.settings)
    users = {name: await factory.user(name) for name in ("ann", "bob", "cat", "dan")}
    for user in users.values():
        await factory.post(user)
    ann, bob, cat, dan = users.values()
    p1, p2 = (await factory.post(ann)).id, (await factory.post(ann)).id
    made = Scenario(users)
    b, e = made.bdrs, made.exports

    async def bdr(key: str, post: int, **flags: Any) -> None:
        item = await api.json("POST", "/api/pmd/bdr", ann, 202, json={"post_ids": [post], **flags})
        b[key] = item["id"]

    async def export(key: str, user: UserRow, **body: Any) -> None:
        e[key] = (await api.json("POST", "/api/pmd/exports", user, 202, json=body))["id"]

    async def remove(key: str) -> None:
        assert (await api.call("DELETE", f"/api/pmd/bdr/{b[key]}", ann))[0] == 204

    async def ready(*keys: str) -> None:
        await _ready(pool, [b[k] for k in keys if k in b], [e[k] for k in keys if k in e], live)

    async with live.running() as api:
        # A: ready downloads and an export; then the folder is copied.
        await bdr("kept", p1, send_email=True)
        await bdr("removed_after_dump", p2)
        await bdr("expired_after_dump", p1)
        await bdr("removed_before_dump", p2)
        await export("kept", bob, send_email=True)
        await ready("kept", "removed_after_dump", "expired_after_dump", "removed_before_dump")
        await _emailed(mailbox, f"<bdr-{b['kept']}@localhost>", 1)
        shutil.copytree(live.settings.zip_path, files_a)
        # Between A and B: a removal, and a download and a recurring export built after A.
        await remove("removed_before_dump")
        await bdr("after_copy", p1, send_email=True)
        await export("recurring", cat, repeat_every_days=1, repeat_times=3)
        await ready("after_copy", "recurring")
        await _emailed(mailbox, f"<bdr-{b['after_copy']}@localhost>", 1)
        # An email owed at the dump: the SMTP server is down from here to the dump.
        mailbox.stop()
        await bdr("email_owed", p2, send_email=True)
        await ready("email_owed")
        await eventually(lambda: _owed(pool, b["email_owed"]), HUNG, live.logs)
        # Requests that wait in Redis, unbuilt, at the dump; one cancelled long ago.
        await live.stop_worker()
        await bdr("pending", p1, send_email=True)
        await bdr("processing", p2)
        await export("pending", dan)
        await bdr("purged_after_dump", p1)
        await remove("purged_after_dump")
        # As a worker killed mid-build leaves it: claimed, its heartbeat stopped.
        await pool.execute(
            "UPDATE batch_download_requests SET status = 'processing', claim_token = $2,"
            " heartbeat_at = now() - interval '20 seconds', attempts = 1, started_at = now()"
            " WHERE id = $1::uuid",
            b["processing"],
            uuid.uuid4(),
        )
        await pool.execute(
            "UPDATE batch_download_requests SET completed_at = now() - interval '15 days'"
            " WHERE id = $1::uuid",
            b["purged_after_dump"],
        )
        # The recurring export's next run three days overdue, with something new to export.
        await factory.post(cat, title="Made since the last export")
        await pool.execute(
            "UPDATE export_schedules SET next_at = now() - interval '3 days' WHERE user_id = $1",
            cat.id,
        )
        # B: the dump, as the host takes it, of the running stack.
        await asyncio.to_thread(_run, pg_program("pg_dump"), "-Fc", "-f", str(dump), live.admin_url)
        for table, kind in (("batch_download_requests", "bdr"), ("exports", "export")):
            rows = await pool.fetch(f"SELECT id FROM {table} WHERE email_sent_at IS NOT NULL")
            made.emailed_at_dump |= {f"<{kind}-{r['id']}@localhost>" for r in rows}
        # After B the work goes on: what waited is built, the owed email and the overdue
        # export go, a new request, a removal, an expiry and a purge.
        mailbox.start()
        await live.start_worker()
        await bdr("after_dump", p1)
        await remove("removed_after_dump")
        await ready("pending", "processing", "after_dump")
        await eventually(lambda: _started(pool, cat.id), HUNG, live.logs)
        e["scheduled_after_dump"] = str(await _scheduled(pool, cat.id))
        await ready("scheduled_after_dump")
        await pool.execute(
            "UPDATE batch_download_requests SET expires_at = now() - interval '1 minute'"
            " WHERE id = $1::uuid",
            b["expired_after_dump"],
        )
        done = await live.job(daily_cleanup)
        assert done["expired"] == 1 and done["purged"] == 1, done
        await _emailed(mailbox, f"<bdr-{b['email_owed']}@localhost>", 1)
    made.last_event = await pool.fetchval("SELECT max(id) FROM stream_events")
    return made


async def _owed(pool: asyncpg.Pool, bdr_id: str) -> bool:
    row = await pool.fetchrow(
        "SELECT email_sent_at, email_attempts FROM batch_download_requests WHERE id = $1::uuid",
        bdr_id,
    )
    return row is not None and row["email_sent_at"] is None and row["email_attempts"] >= 1


async def _scheduled(pool: asyncpg.Pool, user_id: int, since: Any = None) -> uuid.UUID | None:
    """The export the user's schedule started (since `since`), if one did."""
    rows = await pool.fetch(
        "SELECT id FROM exports WHERE user_id = $1 AND scheduled"
        " AND created_at >= coalesce($2::timestamptz, '-infinity')",
        user_id,
        since,
    )
    assert len(rows) <= 1, rows  # one export, however many runs were missed
    return rows[0]["id"] if rows else None


async def _started(pool: asyncpg.Pool, user_id: int, since: Any = None) -> bool:
    return await _scheduled(pool, user_id, since) is not None


async def _emailed(mailbox: Mailbox, message_id: str, times: int) -> None:
    async def arrived() -> bool:
        return sum(str(m["Message-ID"]) == message_id for m in mailbox.received()) >= times

    await eventually(arrived, HUNG, f"email {message_id} {times} times")


async def _ready(pool: asyncpg.Pool, bdrs: list[str], exports: list[str], place: Place) -> None:
    """Until every one of them is ready (none failed)."""

    async def done() -> bool:
        rows = await pool.fetch(
            "SELECT status FROM batch_download_requests WHERE id = ANY($1::uuid[])"
            " UNION ALL SELECT status FROM exports WHERE id = ANY($2::uuid[])",
            bdrs,
            exports,
        )
        assert not {r["status"] for r in rows} & {"failed", "cancelled"}, place.logs()
        return len(rows) == len(bdrs) + len(exports) and all(r["status"] == "ready" for r in rows)

    await eventually(done, HUNG, place.logs, interval=0.1)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=HUNG, check=False)
    assert done.returncode == 0, done.stderr


# --- what each restore must find, and repair -------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """Each finding of check-restore, by check, as ids (a schedule's: its user's; a file's:
    its stored path); and the listed downloads that must answer 410 (a part's:
    `{export id}/{number}`)."""

    findings: dict[str, set[str]]
    gone: set[str]


def _either_restore(made: Scenario) -> dict[str, set[str]]:
    """What any restore leaves: the queue lost with Redis, an email owed, a schedule due."""
    b, e = made.bdrs, made.exports
    return {
        "bdr-not-queued": {b["pending"], b["processing"]},
        "bdr-email-owed": {b["email_owed"]},
        "export-not-queued": {e["pending"]},
        "export-schedule-due": {str(made.users["cat"].id)},
    }


def _expected_db_older(made: Scenario) -> Expected:
    """The dump restored with the files as they are: rows ready at B whose files went after B,
    files of what was built after B."""
    b, e, ann = made.bdrs, made.exports, made.users["ann"]
    return Expected(
        findings={
            **_either_restore(made),
            "bdr-file-gone": {b["removed_after_dump"], b["expired_after_dump"]},
            "file-unnamed": {
                *(
                    f"bdr/{ann.sqid}/pmd-{b[k]}.zip"
                    for k in ("pending", "processing", "after_dump")
                ),
                *(
                    f"bdr/pmd-exports/{e[k]}/part-1.zip"
                    for k in ("pending", "scheduled_after_dump")
                ),
            },
        },
        gone={b["removed_after_dump"], b["expired_after_dump"]},
    )


def _expected_db_newer(made: Scenario) -> Expected:
    """The dump restored with the folder as copied at A: rows ready at B built after A, a file
    removed between A and B."""
    b, e, ann = made.bdrs, made.exports, made.users["ann"]
    return Expected(
        findings={
            **_either_restore(made),
            "bdr-file-gone": {b["after_copy"], b["email_owed"]},
            "export-part-file-gone": {e["recurring"]},
            "file-unnamed": {f"bdr/{ann.sqid}/pmd-{b['removed_before_dump']}.zip"},
        },
        gone={b["after_copy"], b["email_owed"], f"{e['recurring']}/1"},
    )


async def _restore_and_repair(
    place: Place, made: Scenario, dump: Path, mailbox: Mailbox, expected: Expected
) -> None:
    async with create_redis(place.settings.redis_url) as redis:
        await redis.flushdb()  # a restore loses the queue
    await asyncio.to_thread(
        _run, pg_program("pg_restore"), "--exit-on-error", "-d", place.admin_url, str(dump)
    )
    async with place.pool() as pool:
        await pool.execute(JUMP_EVENT_IDS)
        await _repaired(place, pool, made, dump, mailbox, expected)


async def _repaired(
    place: Place,
    pool: asyncpg.Pool,
    made: Scenario,
    dump: Path,
    mailbox: Mailbox,
    expected: Expected,
) -> None:
    zip_path = place.settings.zip_path
    # Before the service starts: every inconsistency made is reported, and nothing else.
    (code, out), (text_code, text) = await asyncio.gather(
        place.command("check-restore", "--json"), place.command("check-restore")
    )
    assert code == 1, out
    report = json.loads(out)
    found: dict[str, set[str]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["check"], set()).add(finding["id"])
    assert found == expected.findings, json.dumps(report, indent=2)
    assert text_code == 1 and len(text.splitlines()) == len(report["findings"]) + 1, text

    cat, owed = made.users["cat"], f"<bdr-{made.bdrs['email_owed']}@localhost>"
    emails_owed = sum(str(m["Message-ID"]) == owed for m in mailbox.received())
    started = await pool.fetchval("SELECT now()")
    async with place.running() as api:
        # Every job the dump left running is queued again and ends ready.
        await _ready(
            pool,
            sorted(expected.findings["bdr-not-queued"]),
            sorted(expected.findings["export-not-queued"]),
            place,
        )
        await _downloads(api, pool, made, expected)
        # The overdue schedule starts one export, not one a missed day, and moves on.
        await eventually(lambda: _started(pool, cat.id, started), HUNG, place.logs)
        await _ready(pool, [], [str(await _scheduled(pool, cat.id, started))], place)
        next_at = "SELECT next_at > now() FROM export_schedules WHERE user_id = $1"
        assert await pool.fetchval(next_at, cat.id)
        await _emailed(mailbox, owed, emails_owed + 1)
        # Once past the cleanup's hour, files no ready row names go; named ones stay.
        named = await _named(pool)
        for path in zip_path.rglob("*"):
            if path.is_file():
                os.utime(path, (time.time() - AGED, time.time() - AGED))
        await place.job(daily_cleanup)
        assert _stored(zip_path) == named == await _named(pool)
        assert not [p for p in zip_path.rglob("*") if p.is_file() and p.suffix != ".zip"]
        assert await _scheduled(pool, cat.id, started) is not None  # still the one
        # A browser resuming from an event of the old database's gets a fresh snapshot, and
        # no id it saw is issued again.
        await _resumed_from(api, made.users["ann"], made.last_event)
        issued = "SELECT min(id) FROM stream_events WHERE created_at >= $1"
        assert await pool.fetchval(issued, started) > made.last_event
    assert not [s for s in api.statuses if s[0] >= 500], api.statuses
    report = await place.job(check_restore)
    assert report.consistent, report.render()


def _stored(zip_path: Path) -> set[str]:
    """The ZIPs and parts in the folder, as stored paths."""
    return {f"bdr/{p.relative_to(zip_path).as_posix()}" for p in zip_path.rglob("*.zip")}


async def _resumed_from(api: Calls, user: UserRow, last_event: int) -> None:
    headers = {**user.auth, "Last-Event-ID": str(last_event)}
    async with api.http.get(api.base + SSE, headers=headers) as resp:
        assert resp.status == 200
        stream = Stream(resp)
        events = await stream.until(lambda m: m.event == "connected", HUNG)
    assert next(m.event for m in events if m.event) == "reset", events
    assert any(m.event == "bdr_update" for m in events)


async def _named(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch(
        "SELECT file_path FROM batch_download_requests WHERE status = 'ready'"
        " UNION ALL SELECT file_path FROM export_parts WHERE status = 'ready'"
    )
    return {r["file_path"] for r in rows}


async def _downloads(api: Calls, pool: asyncpg.Pool, made: Scenario, expected: Expected) -> None:
    """Every item the API lists: ready ones download whole (their SHA-256 as recorded) or
    answer 410 and are marked expired, exactly those expected to."""
    gone: set[str] = set()
    for user in made.users.values():
        listed = await api.json("GET", "/api/pmd/bdr", user, 200)
        for item in listed["items"]:
            if item["status"] != "ready":
                continue
            sha = await pool.fetchval(
                "SELECT file_sha256 FROM batch_download_requests WHERE id = $1::uuid", item["id"]
            )
            if not await _fetched(api, item["download_url"], user, sha):
                gone.add(item["id"])
                after = await api.json("GET", f"/api/pmd/bdr/{item['id']}", user, 200)
                assert after["status"] == "expired" and after["download_url"] is None, after
                assert after["removed_at"] is None  # lost, not removed by its owner
        exports = await api.json("GET", "/api/pmd/exports", user, 200)
        for item in exports["items"]:
            for part in item["parts"]:
                if part["status"] != "ready":
                    continue
                if not await _fetched(api, part["download_url"], user, part["sha256"]):
                    gone.add(f"{item['id']}/{part['number']}")
                    after = await api.json("GET", f"/api/pmd/exports/{item['id']}", user, 200)
                    (marked,) = [p for p in after["parts"] if p["number"] == part["number"]]
                    assert marked["status"] == "expired" and marked["download_url"] is None
    assert gone == expected.gone


async def _fetched(api: Calls, url: str, user: UserRow, sha256: str) -> bool:
    """True: 200, whole, its SHA-256 the recorded one (and its Repr-Digest); False: a 410."""
    status, headers, body = await api.call("GET", url, user)
    if status == 410:
        assert headers["Content-Type"].startswith("application/problem+json"), body
        return False
    assert status == 200, (url, status, body[:300])
    assert int(headers["Content-Length"]) == len(body)
    digest = hashlib.sha256(body).digest()
    assert digest.hex() == sha256
    assert headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    return True
