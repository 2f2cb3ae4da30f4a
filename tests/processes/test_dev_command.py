"""`python -m pmd_service dev` (what `make run` runs), started as a person starts it, and the
README's steps after it: its banner names the short export cooldowns of dev mode, a full
export is followed by an incremental one within them, the ready email is read in the dev
mailbox, the demo's posts show their mentions, and `demo --locale es` makes the demo user's
next email Spanish, without a setting edited or a line of SQL. And what it refuses, in one line,
exit status 2, nothing served and no token printed: a database, Redis or JWT secret from the
environment, and an embedded database holding users the demo did not make (its own, from an
earlier run, it starts on again)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from support.stack import answers, free_port
from tests.helpers import CHECKOUT, SECRET, run_python


def call(base: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the loopback server the test started
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback
        text: str = resp.read().decode()
        return text


def until(what: str, check: Any, within: float = 180) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {within:.0f} s")


DEV = [sys.executable, "-m", "pmd_service", "dev"]


def start_dev(
    env: dict[str, str], stdout: IO[str], stderr: IO[str] | int = subprocess.STDOUT
) -> subprocess.Popen[bytes]:
    """`dev` as a person starts it: no input, in a session of its own, as a terminal's group."""
    alone: dict[str, Any] = {"stdin": subprocess.DEVNULL, "start_new_session": True}
    return subprocess.Popen(DEV, env=env, cwd=CHECKOUT, stdout=stdout, stderr=stderr, **alone)


def ctrl_c(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, which a terminal sends the whole group, if `proc` still runs; then its end."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(60)


def dev_env(data: Path, port: int) -> dict[str, str]:
    """`make run`'s environment: PMD_DEV=1, the data under `data`, none of the developer's own
    settings."""
    own = ("PMD_", "LOG_", "METRICS_", "STARTUP_", "EXPORT_", "SMTP_")
    named = ("DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL", "JWT_SECRET_KEY")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(own) and k not in (*named, "PORT", "HOST", "BASE_URL", "HOST_SCHEMA")
    }
    return env | {
        "PMD_DATA_DIR": str(data),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "PMD_DEV": "1",
    }


def test_make_run_lets_the_incremental_export_and_the_ready_email_be_tried(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = dev_env(tmp_path / "data", port)
    log = (tmp_path / "dev.log").open("w+")
    proc = start_dev(env, log)
    try:
        text = until(
            "the banner",
            lambda: "Press Ctrl-C" in (out := Path(log.name).read_text()) and out,
            within=300,
        )
        assert proc.poll() is None, text
        base = f"http://127.0.0.1:{port}"
        token = next(line for line in text.splitlines() if line.startswith("eyJ"))
        assert (
            "Exports: a full one every 2 minutes, an incremental one 30 seconds after any"
        ) in text
        assert f"read them at {base}/dev/mail" in text
        assert "Emails to @demo are in English, en (users.locale is unset)" in text
        # The demo's moderator opens the same page, with a moderator's token.
        moderator = re.search(r"The same page as @mod, a moderator: (\S+)#token=(\S+)", text)
        owner_page = re.search(r"Open the dashboard: (\S+)#", text)
        assert moderator and owner_page and moderator[1] == owner_page[1]
        status, listed = call(
            base,
            moderator[2],
            "GET",
            "/api/pmd/posts?limit=1&target_sqid=" + moderator[1].split("/")[-2],
        )
        assert status == 200 and listed["items"], listed

        # The demo's descriptions mention people: plain, with the stored markup beside them.
        status, newest = call(base, token, "GET", "/api/pmd/posts?limit=10")
        assert status == 200
        by_text = {i["description"]: i for i in newest["items"] if i["mentions"]}
        jam = by_text["Drawn live with @fan1 and @fan2 at the pixel jam ✨"]
        assert jam["description_markup"].startswith("Drawn live with <@")
        assert [m["handle"] for m in jam["mentions"]] == ["fan1", "fan2"]
        assert any(
            "@user" in (i["description"] or "") and "<@" in i["description_markup"]
            for i in newest["items"]
        ), newest

        status, made = call(base, token, "POST", "/api/pmd/exports", {"send_email": True})
        assert status == 202, made
        ready = until(
            "the export ready",
            lambda: (
                (item := call(base, token, "GET", f"/api/pmd/exports/{made['id']}")[1])
                and item["status"] == "ready"
                and item
            ),
        )
        # The cooldowns are dev mode's: minutes and seconds, not days.
        status, listed = call(base, token, "GET", "/api/pmd/exports")
        assert status == 200
        now = datetime.now(UTC)
        full_at = datetime.fromisoformat(listed["next_export_at"])
        assert now < full_at <= now + timedelta(minutes=2)
        assert listed["limits"]["incremental_cooldown_seconds"] == 30

        # Something changes, and once the short wait is over the incremental export holds it.
        assert ready["artwork_count"] > 30
        status, posts = call(base, token, "GET", "/api/pmd/posts?limit=1&hidden=false")
        assert status == 200
        hide = {"action": "hide", "post_ids": [posts["items"][0]["id"]]}
        status, _ = call(base, token, "POST", "/api/pmd/action", hide)
        assert status == 200
        incremental = until(
            "an incremental export accepted",
            lambda: (
                (
                    answer := call(
                        base,
                        token,
                        "POST",
                        "/api/pmd/exports",
                        {"since": "last", "send_email": True},
                    )
                )
                and answer[0] != 429
                and answer
            ),
        )
        assert incremental[0] == 202, incremental
        assert incremental[1]["follows_export_id"] == made["id"]

        # The ready emails, read in the dev mailbox, link to the exports on the page; the
        # incremental one names itself as the changes since the first.
        mails = until(
            "the emails kept",
            lambda: "changes since" in (box := page(f"{base}/dev/mail")) and box,
        )
        first = re.search(
            r'<a href="(/dev/mail/[^"]+)"[^>]*>Your export of \d+ artworks is ready</a>', mails
        )
        assert first, mails
        assert f"/posts?export={made['id']}#token=" in page(base + first[1])
        changes = re.search(
            r'<a href="(/dev/mail/[^"]+)"[^>]*>Your export of the changes since [^<]+ is ready</a>',
            mails,
        )
        assert changes, mails
        counts = re.search(r"(\d+) added, (\d+) changed, (\d+) removed", page(base + changes[1]))
        assert counts and (int(counts[1]), int(counts[2]), int(counts[3])) == (0, 1, 0), counts
        assert 'href="/dev/mail"' in page(f"{base}/u/x/posts")

        # The demo user's language, given while it runs: its next email is Spanish.
        demo = run_python("-m", "pmd_service", "demo", "--locale", "es", env=env, timeout=120)
        assert demo.returncode == 0, demo.stderr
        assert json.loads(demo.stdout)["email_language"] == "es"
        one = {"post_ids": [jam["id"]], "include_comments": True, "send_email": True}
        status, asked = call(base, token, "POST", "/api/pmd/bdr", one)
        assert status == 202, asked
        spanish = until(
            "the Spanish email",
            lambda: re.search(r'<a href="(/dev/mail/[^"]+)" lang="es">', page(f"{base}/dev/mail")),
        )
        read = page(base + spanish[1])
        assert '<dd id="mail-language">Spanish, es</dd>' in read
        assert f"/posts?bdr={asked['id']}#token=" in read
    finally:
        try:
            ctrl_c(proc)
        finally:
            log.close()
    assert proc.returncode == 0, Path(log.name).read_text()[-3000:]


class Refused:
    """A `dev` run that was to be refused, run to its end: stopped as by Ctrl-C when it still
    runs after `within` seconds, having started after all."""

    def __init__(self, env: dict[str, str], folder: Path, within: float = 120) -> None:
        readyz = f"http://127.0.0.1:{env['PORT']}/readyz"
        out, err = folder / "refused.out", folder / "refused.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = start_dev(env | {"LOG_FORMAT": "text"}, stdout, stderr)
            self.answered = False  # whether a server answered on the port meanwhile
            deadline = time.monotonic() + within
            while proc.poll() is None and time.monotonic() < deadline:
                self.answered = self.answered or answers(readyz)
                time.sleep(0.2)
            ctrl_c(proc)
        self.status = proc.returncode
        self.out = out.read_text()
        self.err = err.read_text()
        self.lines = [line for line in self.err.splitlines() if line.strip()]

    def assert_refused(self, *said: str) -> None:
        """Exit status 2, one line on stderr saying each of `said`, nothing served, no token."""
        assert self.status == 2, (self.status, self.out[-2000:], self.err[-3000:])
        assert len(self.lines) == 1, self.err[-3000:]
        assert "pmd dev: " in self.lines[0] and "Traceback" not in self.err
        for words in said:
            assert words in self.lines[0], self.lines[0]
        assert not self.answered
        assert "eyJ" not in self.out + self.err and "Bearer" not in self.out


@pytest.mark.parametrize(
    "variable", ["DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL", "JWT_SECRET_KEY"]
)
def test_dev_refuses_a_database_redis_or_secret_from_the_environment(
    tmp_path: Path, variable: str
) -> None:
    """Dev prints tokens and shows every user's mail: it runs only on the embedded servers and
    the secret it makes itself, never on ones the environment names (a production environment
    file, sourced): one line naming the variable and how to run without it, before anything is
    started or written."""
    closed = free_port()  # nothing listens there
    values = {
        "DATABASE_URL": f"postgresql://pmd@127.0.0.1:{closed}/pmd",
        "DATABASE_DIRECT_URL": f"postgresql://pmd@127.0.0.1:{closed}/pmd",
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "JWT_SECRET_KEY": SECRET,
    }
    data = tmp_path / "data"
    env = dev_env(data, free_port()) | {variable: values[variable]}
    refused = Refused(env, tmp_path)
    refused.assert_refused(f"pmd dev: {variable} is set", f"env -u {variable} make run")
    assert not data.exists()  # no embedded server, no dev secret


def test_dev_refuses_all_it_is_given_in_one_line(tmp_path: Path) -> None:
    """A production environment sets all three: each is named at once, not one a run."""
    data = tmp_path / "data"
    env = dev_env(data, free_port()) | {
        "DATABASE_URL": "postgresql://pmd@db.example.org:5432/makapix",
        "REDIS_URL": "redis://queue.example.org:6379/0",
        "JWT_SECRET_KEY": SECRET,
    }
    Refused(env, tmp_path).assert_refused(
        "pmd dev: DATABASE_URL, REDIS_URL and JWT_SECRET_KEY are set",
        "env -u DATABASE_URL -u REDIS_URL -u JWT_SECRET_KEY make run",
    )
    assert not data.exists()


# Runs SQL on the embedded database under argv[1], started for it and stopped after.
SQL_ON_EMBEDDED = """
import asyncio, sys
from pathlib import Path

import asyncpg

from pmd_service.dev.embedded import start_postgres


async def run(url):
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sys.argv[2])
    finally:
        await conn.close()


asyncio.run(run(start_postgres(Path(sys.argv[1]))))
"""


def on_embedded(data: Path, sql: str) -> None:
    done = run_python("-c", SQL_ON_EMBEDDED, str(data / "pg"), sql, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


DASHBOARD = re.compile(r"Open the dashboard: (\S+)#")


def run_to_banner(env: dict[str, str], log_path: Path) -> str:
    """`dev` until its banner, then Ctrl-C: what it printed; it exits 0."""
    with log_path.open("w+") as log:
        proc = start_dev(env, log)
        try:
            text: str = until(
                "the banner",
                lambda: (
                    ("Press Ctrl-C" in (out := log_path.read_text()) or proc.poll() is not None)
                    and out
                ),
                within=300,
            )
            assert proc.poll() is None, text[-3000:]
        finally:
            ctrl_c(proc)
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    return text


def test_dev_starts_again_on_its_own_database_and_never_on_one_with_other_users(
    tmp_path: Path,
) -> None:
    """A second `make run` starts on the database the first made (every user in it the demo's,
    each with the demo's mark); a user the demo did not make, a real account or one of its
    names without its mark, stops it in one line naming the data folder, before anything is
    written, the embedded servers stopped again."""
    data = tmp_path / "data"
    env = dev_env(data, free_port())
    first = run_to_banner(env, tmp_path / "first.log")
    again = run_to_banner(env, tmp_path / "again.log")
    tokens = [
        [line for line in text.splitlines() if line.startswith("eyJ")] for text in (first, again)
    ]
    assert all(len(found) == 1 for found in tokens), tokens
    # The same demo user, its page at the same address.
    pages = [found[1] for text in (first, again) if (found := DASHBOARD.search(text))]
    assert len(pages) == 2 and pages[0] == pages[1], pages

    on_embedded(
        data,
        "INSERT INTO users (handle, email, user_key)"
        " VALUES ('alice', 'alice@example.org', gen_random_uuid())",
    )
    said = ("users the demo did not make", str(data.resolve()), "PMD_DATA_DIR")
    Refused(env, tmp_path).assert_refused(*said)
    assert not (data / "pg" / "postmaster.pid").exists()  # the embedded PostgreSQL stopped

    # One of the demo's own names, without the demo's mark: a real account called `mod`, or
    # the moderator of a demo from before the mark.
    on_embedded(
        data,
        "DELETE FROM users WHERE handle = 'alice';"
        " UPDATE users SET user_key = gen_random_uuid() WHERE handle = 'mod'",
    )
    Refused(env, tmp_path).assert_refused(*said)
    assert not (data / "pg" / "postmaster.pid").exists()
