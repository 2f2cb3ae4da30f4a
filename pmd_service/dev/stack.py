"""`make run`: embedded PostgreSQL + Redis, migrations, demo data, server and worker, one Ctrl-C;
it prints sign-in tokens and serves every user's mail, so it runs only on what it makes itself."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
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

# What dev makes itself: a set one is refused, as most likely a real one.
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


def refuse_outside_settings() -> None:
    """One line naming each of OWN_SETTINGS that is set, exit status 2."""
    named = [name for name in OWN_SETTINGS if os.environ.get(name)]
    if not named:
        return
    one = len(named) == 1
    names = named[0] if one else f"{', '.join(named[:-1])} and {named[-1]}"
    example = "env " + " ".join(f"-u {name}" for name in named) + " make run"
    them, verb = ("it", "is") if one else ("them", "are")
    stop(SET_OUTSIDE.format(names=names, verb=verb, them=them, example=example), status=2)


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
    """embedded.services, stopping before writing to a database holding users not the demo's."""

    def check(url: str) -> None:
        if asyncio.run(_holds_other_users(url)):  # load_settings runs outside any event loop
            stop(OTHER_USERS.format(data=data_dir), status=2)

    return services(data_dir, database_url, redis_url, check=check)


async def _prepare(
    settings: Settings, locale: str | None = None
) -> tuple[str | None, str | None, DemoLanguage]:
    """The demo user's and moderator's sqids once the demo data is there, and its language."""
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


# Dev mode's export cooldowns, to try exports within minutes; a variable that is set wins.
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
    """What `make run` prints once everything answers, each line whole to be copied."""
    moderator = (
        f"The same page as @{MODERATOR_HANDLE}, a moderator: "
        f"{base}/u/{demo_sqid}/posts#token={moderator_token}\n"
        if moderator_token
        else ""
    )
    dev = port = ""
    if settings is not None:
        # The demo command prints the page's address: on this port, not the default one.
        port = f"PORT={settings.port} " if settings.port != 8080 else ""
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
    """Dev mode only when asked for (PMD_DEV=1): else one line saying how, exit status 2."""
    check_env("pmd dev")
    if not dev_requested():
        value = os.environ.get("PMD_DEV")
        why = "PMD_DEV is not set" if value is None else f"PMD_DEV={value}"
        stop(DEV_MODE_OFF.format(why=why), status=2)


def run_dev(locale: str | None = None) -> int:
    """`make run`; `locale`, when given, becomes the demo user's `users.locale`."""
    # Before anything starts or connects: it must never run on real servers.
    ensure_dev_mode()
    refuse_outside_settings()
    for name, value in DEV_DEFAULTS.items():
        os.environ.setdefault(name, value)  # the children inherit them
    settings = load_settings("pmd dev", embedded=own_services)
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
    command = [sys.executable, "-m", "pmd_service"]
    procs = [subprocess.Popen([*command, name], env=env) for name in ("serve", "worker")]
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    local = f"http://{settings.host}:{settings.port}"
    try:
        _wait_ready(f"{local}/readyz", procs)
        week = 7 * 86400
        token = mint_token(settings.jwt_secret_key, demo_sqid or "", ttl_seconds=week)
        moderator_token = moderator_sqid and mint_token(
            settings.jwt_secret_key, moderator_sqid, ttl_seconds=week, roles=["user", "moderator"]
        )
        base, limit = settings.base_url, settings.bdr_daily_limit
        text = banner(base, demo_sqid or "", token, limit, settings, moderator_token, language)
        print(text, flush=True)
        while not stopping.is_set() and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        stop_processes(procs, 10)
    # The embedded Redis and PostgreSQL stop in atexit handlers, after the children.
    return 0 if stopping.is_set() else 1
