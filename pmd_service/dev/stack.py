"""`make run`: embedded PostgreSQL + Redis, migrations, demo data, server and worker, one Ctrl-C.

The children are ordinary `python -m pmd_service serve` and `python -m pmd_service worker`
processes given explicit URLs, exactly as in production; only this supervisor owns the embedded servers, and it
stops them after the children have exited. It prints sign-in tokens and serves every user's mail,
so it runs only on what it makes itself: never with a database, Redis or secret from the
environment, nor on a database holding users the demo did not make.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..core.db import connect
from ..core.migrate import migrate
from ..core.public_ids import PublicIds
from ..core.settings import Settings, dev_requested
from ..core.startup import check_env, load_settings, stop
from ..host.tokens import mint_token
from .demo import MODERATOR_HANDLE, DemoLanguage, demo_language, holds_other_users, load_demo
from .demo_user import DEMO_HANDLE, demo_user_sqid
from .embedded import services, stop_processes

# What dev makes itself, so never takes from the environment. A set JWT_SECRET_KEY is refused
# rather than ignored: it is most likely a real one, from an environment whose other settings
# (mail, storage) would otherwise go along unnoticed.
OWN_SETTINGS = ("DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL", "JWT_SECRET_KEY")

SET_OUTSIDE = (
    "pmd dev: {names} {verb} set: dev runs only on what it makes itself (an embedded PostgreSQL "
    "and Redis under PMD_DATA_DIR, a secret of its own), since it prints sign-in tokens and shows "
    "every user's mail; run dev without {them} (`{example}`); `serve` and `worker` are the "
    "commands that use {them}"
)

OTHER_USERS = (
    "pmd dev: the database under {data} holds users the demo did not make (real accounts, or "
    "those of a `make run` from before the demo marked its own): dev prints sign-in tokens and "
    "shows every user's mail, so it runs only on its own demo data; for a fresh one, move {data} "
    "aside or set PMD_DATA_DIR to an empty folder"
)


class OtherUsers(Exception):
    """The embedded database holds users the demo did not make: one line, exit status 2."""


def refuse_outside_settings() -> None:
    """One line naming each of OWN_SETTINGS that is set, exit status 2, before anything is
    started or written."""
    named = [name for name in OWN_SETTINGS if os.environ.get(name)]
    if not named:
        return
    names = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    example = "env " + " ".join(f"-u {name}" for name in named) + " make run"
    one = len(named) == 1
    stop(
        SET_OUTSIDE.format(
            names=names,
            verb="is" if one else "are",
            them="it" if one else "them",
            example=example,
        ),
        status=2,
    )


async def _holds_other_users(url: str) -> bool:
    schema = os.environ.get("HOST_SCHEMA") or "public"  # where embedded.services puts them
    conn = await connect(url, "pmd-dev", search_path=f'"{schema}"')
    try:
        return await holds_other_users(conn)
    finally:
        await conn.close()


def own_services(
    data_dir: Path, database_url: str | None, redis_url: str | None
) -> tuple[str, str]:
    """embedded.services, stopping before anything is written to a database that holds users
    the demo did not make."""

    def check(url: str) -> None:
        if asyncio.run(_holds_other_users(url)):  # load_settings runs outside any event loop
            raise OtherUsers(OTHER_USERS.format(data=data_dir))

    return services(data_dir, database_url, redis_url, check=check)


async def _prepare(
    settings: Settings, locale: str | None = None
) -> tuple[str | None, str | None, DemoLanguage]:
    """The demo user's sqid and the demo moderator's, once the demo data is there, and the
    language of the demo user's emails, first set to `locale` when one is given."""
    conn = await connect(settings.database_url, "pmd-dev", search_path=settings.search_path)
    try:
        # Development: the stand-in host tables too, explicitly (nothing else creates them).
        await migrate(conn, settings, with_host_tables=True)
        await load_demo(conn, settings.vault_path, PublicIds(settings.sqids_alphabet))
        language = await demo_language(conn, locale)
        return await demo_user_sqid(conn), await demo_user_sqid(conn, MODERATOR_HANDLE), language
    finally:
        await conn.close()


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("pmd dev: a child process exited during start-up; see its log above")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL we built
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"pmd dev: {url} did not become ready within {timeout:.0f} s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    stop_processes(procs, 10)


def _port_free(host: str, port: int) -> None:
    """Before the slow start-up: a taken port is one line naming it and what to do."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SystemExit(
                f"pmd dev: cannot listen on {host}:{port} ({exc.strerror}): another process "
                f"(an earlier `make run`?) holds it. Stop it, or choose another port: "
                f"PORT=9000 make run"
            ) from None


def public_base(settings: Settings) -> str:
    """BASE_URL, which is http://HOST:PORT while it is unset (core/settings.py): the same
    address as the server's start-up line and every email's link."""
    return settings.base_url


# Dev mode's export cooldowns (production: 7 days and 1 day), so that a full export and then an
# incremental one can be tried within minutes; a variable that is set wins.
DEV_DEFAULTS = {"EXPORT_COOLDOWN_SECONDS": "120", "EXPORT_INCREMENTAL_COOLDOWN_SECONDS": "30"}


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def banner(
    base: str,
    demo_sqid: str,
    token: str,
    daily_limit: int,
    settings: Settings | None = None,
    moderator_token: str | None = None,
    language: DemoLanguage | None = None,
) -> str:
    """What `make run` prints once everything answers: each line whole, to be copied. The first
    URL opens the dashboard signed in; `base` is BASE_URL, or http://HOST:PORT when it is unset.
    With `settings`, also the export cooldowns it runs with and where its emails go; with
    `moderator_token`, the same page opened by the demo's moderator; with `language` too, the
    language of the demo user's emails."""
    moderator = (
        f"The same page as @{MODERATOR_HANDLE}, a moderator: "
        f"{base}/u/{demo_sqid}/posts#token={moderator_token}\n"
        if moderator_token
        else ""
    )
    dev = ""
    # The demo command prints the page's address: on this port, not the default one.
    port = f"PORT={settings.port} " if settings is not None and settings.port != 8080 else ""
    if settings is not None:
        full = _duration(settings.export_cooldown_seconds)
        incremental = _duration(settings.export_incremental_cooldown_seconds)
        dev = (
            f"Exports: a full one every {full}, an incremental one {incremental} after any "
            "(dev mode; EXPORT_COOLDOWN_SECONDS, EXPORT_INCREMENTAL_COOLDOWN_SECONDS)\n"
        )
        if settings.smtp_host is None:
            dev += f"Emails are not sent (SMTP_HOST unset): read them at {base}/dev/mail\n"
        if language is not None:
            dev += (
                f"Emails to @{DEMO_HANDLE} are in {language.shown(settings)}; another "
                "language: make run DEMO_LOCALE=TAG (es, pt-BR, ja, en, …)\n"
            )
    return (
        f"\npmd-service is running. This link opens the dashboard signed in as @{DEMO_HANDLE}:\n"
        # The token rides in the fragment, which browsers never send to a server.
        f"Open the dashboard: {base}/u/{demo_sqid}/posts#token={token}\n"
        f"{moderator}\n"
        f"API reference: {base}/docs  (the OpenAPI document: {base}/openapi.json; "
        f"the API is under {base}/api/pmd)\n"
        f"Download requests (BDRs): at most {daily_limit} per user per UTC day "
        f"(BDR_DAILY_LIMIT; more: BDR_DAILY_LIMIT=50 make run)\n"
        f"{dev}\n"
        f"Demo user @{DEMO_HANDLE} ({demo_sqid}); Bearer token, valid 7 days:\n\n{token}\n\n"
        f"Try: curl -H 'Authorization: Bearer {token}' {base}/api/pmd/posts\n"
        f"More posts for @{DEMO_HANDLE}: {port}PMD_DEV=1 .venv/bin/python -m pmd_service demo "
        "--posts 5000\n"
        "Another port: PORT=9000 make run. Press Ctrl-C to stop everything.\n"
    )


DEV_MODE_OFF = (
    "pmd dev: dev mode is off ({why}): it starts embedded servers, a worker and a mailbox that "
    "shows every user's mail, so it runs only when asked: PMD_DEV=1 python -m pmd_service dev "
    "(what `make run` does)"
)


def ensure_dev_mode() -> None:
    """Dev mode only when asked for (PMD_DEV=1): else one line saying how, exit status 2. A
    malformed setting is named first, as every command names it."""
    check_env("pmd dev")
    if not dev_requested():
        value = os.environ.get("PMD_DEV")
        why = "PMD_DEV is not set" if value is None else f"PMD_DEV={value}"
        stop(DEV_MODE_OFF.format(why=why), status=2)


def run_dev(locale: str | None = None) -> int:
    """`make run`; `locale`, when given, becomes the demo user's `users.locale`."""
    # Before anything starts or connects: on real servers it would serve every user's mail,
    # start a second worker on the real queue and sign tokens with the real secret.
    ensure_dev_mode()
    refuse_outside_settings()
    for name, value in DEV_DEFAULTS.items():
        os.environ.setdefault(name, value)  # the children inherit them
    try:
        settings = load_settings("pmd dev", embedded=own_services)
    except OtherUsers as exc:
        stop(str(exc), status=2)
    _port_free(settings.host, settings.port)
    demo_sqid, moderator_sqid, language = asyncio.run(_prepare(settings, locale))

    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        JWT_SECRET_KEY=settings.jwt_secret_key,
        PMD_DEV="true",
        AUTO_MIGRATE="false",  # applied above, once
        PMD_DATA_DIR=str(settings.data_dir),
    )
    procs = [
        subprocess.Popen([sys.executable, "-m", "pmd_service", "serve"], env=env),
        subprocess.Popen([sys.executable, "-m", "pmd_service", "worker"], env=env),
    ]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    local = f"http://{settings.host}:{settings.port}"
    try:
        _wait_ready(f"{local}/readyz", procs)
        token = mint_token(settings.jwt_secret_key, demo_sqid or "", ttl_seconds=7 * 86400)
        base = public_base(settings)
        moderator_token = moderator_sqid and mint_token(
            settings.jwt_secret_key,
            moderator_sqid,
            ttl_seconds=7 * 86400,
            roles=["user", "moderator"],
        )
        text = banner(
            base,
            demo_sqid or "",
            token,
            settings.bdr_daily_limit,
            settings,
            moderator_token,
            language,
        )
        print(text, flush=True)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        _stop(procs)
    # The embedded Redis and PostgreSQL stop in atexit handlers, after the children.
    return 0 if stopping else 1
