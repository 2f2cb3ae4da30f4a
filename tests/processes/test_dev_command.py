"""`python -m pmd_service dev` (what `make run` runs), started as a person starts it, and the
README's steps after it: its banner names the short export cooldowns of dev mode, a full
export is followed by an incremental one within them, the ready email is read in the dev
mailbox, the demo's posts show their mentions, and `demo --locale es` makes the demo user's
next email Spanish, without a setting edited or a line of SQL."""

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
from typing import Any

from support.stack import free_port
from tests.helpers import CHECKOUT


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


def test_make_run_lets_the_incremental_export_and_the_ready_email_be_tried(
    tmp_path: Path,
) -> None:
    port = free_port()
    own = ("PMD_", "LOG_", "METRICS_", "STARTUP_", "EXPORT_", "SMTP_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(own)
        and k not in ("DATABASE_URL", "REDIS_URL", "PORT", "HOST", "BASE_URL", "JWT_SECRET_KEY")
    }
    env |= {
        "PMD_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "PMD_DEV": "1",
    }
    log = (tmp_path / "dev.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pmd_service", "dev"],
        env=env,
        cwd=CHECKOUT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
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
        demo = subprocess.run(
            [sys.executable, "-m", "pmd_service", "demo", "--locale", "es"],
            env=env,
            cwd=CHECKOUT,
            capture_output=True,
            text=True,
            timeout=120,
        )
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
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
        try:
            proc.wait(60)
        finally:
            log.close()
    assert proc.returncode == 0, Path(log.name).read_text()[-3000:]
