"""The operator's command line: `pmd-service --help` (or `python -m pmd_service --help`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from . import __version__, dev_servers
from .core.command import CliError, Command, arg
from .core.db import DatabaseSetupError
from .core.limits import UTC_DAY_START
from .core.logs import ResultLine
from .core.migrate import HostTablesMissing
from .core.settings import Settings
from .core.startup import check_env, load_settings, report, wait_for_services
from .features.registry import COMMANDS as FEATURE_COMMANDS
from .jobs.context import job_context
from .mail.language import check_at_start as check_email_copy

if TYPE_CHECKING:
    from .host.hostcheck import HostReport

log = logging.getLogger("pmd_service.cli")


async def _migrate(settings: Settings, with_host_tables: bool = False) -> None:
    from .core.db import connect
    from .core.migrate import migrate

    conn = await connect(settings.direct_url, "pmd-cli", search_path=settings.search_path)
    try:
        applied = await migrate(conn, settings, with_host_tables=with_host_tables)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")


async def _check_host(settings: Settings, dev_database: bool, judge_role: bool) -> int:
    from .core.opening import checked_connection
    from .host.hostcheck import check_host

    async with checked_connection(settings) as conn:
        report = await check_host(
            conn, settings.host_schema, dev_database=dev_database, privileges=True
        )
    report.judge_role = judge_role
    print(_host_report(report))
    return 0 if report.fits else 1


def _host_report(report: HostReport) -> str:
    """A fitting development database is one line with --dev-database; else the full report."""
    if report.standins and report.dev_database and not report.judge_role:
        if report.fits:
            return (
                f"development database: the stand-in host tables in schema {report.schema} fit "
                "what the service needs"
            )
        return dataclasses.replace(report, privileges=None).render()
    if report.refused_standins:
        return (
            f"NOT THE HOST'S: {', '.join(report.standins)} in schema {report.schema} are "
            "stand-ins the service created (`migrate --with-host-tables`): check DATABASE_URL. "
            "On a development database (`make run`, tests) run `check-host --dev-database`."
        )
    return report.render()


async def _token(settings: Settings, sqid: str, ttl: int) -> None:
    from .core.opening import checked_connection
    from .host.tokens import mint_token

    async with checked_connection(settings) as conn:
        roles = await conn.fetchval("SELECT roles FROM users WHERE public_sqid = $1", sqid[:16])
    if roles is None:
        raise CliError(f"no user has the public id {sqid!r}")
    print(mint_token(settings.jwt_secret_key, sqid, ttl_seconds=ttl, roles=list(roles)))


async def _demo(settings: Settings, more_posts: int = 0, locale: str | None = None) -> None:
    """Load the demo data into an empty database, add `more_posts` and set `locale`."""
    from importlib.util import find_spec

    from .core.opening import checked_connection
    from .core.public_ids import PublicIds
    from .dev.demo import add_posts, demo_language, load_demo
    from .dev.demo_user import DEMO_HANDLE, demo_user_sqid

    if find_spec("PIL") is None:  # before anything is written
        raise CliError(
            "the demo data needs Pillow: pip install 'pmd-service[embedded]' (the image: "
            "build it with --build-arg DEMO=true, as docker-compose.yml's demo service does)"
        )
    ids = PublicIds(settings.sqids_alphabet)
    async with checked_connection(settings) as conn:
        loaded = await load_demo(conn, settings.vault_path, ids)
        sqid = loaded or await demo_user_sqid(conn)
        if sqid is None:
            named = "SELECT EXISTS (SELECT 1 FROM users WHERE handle = $1)"
            if await conn.fetchval(named, DEMO_HANDLE):
                raise CliError(
                    f"the user @{DEMO_HANDLE} here was not made by `demo` (a real account?): "
                    "the demo never writes to it; nothing was written"
                )
            raise CliError(
                "the database already has users: the demo data goes only into an empty one"
            )
        artworks = await add_posts(conn, settings.vault_path, ids, more_posts)
        language = await demo_language(conn, locale)
    if locale is not None and not language.column:
        log.warning("users has no locale column here: @%s's emails stay in English", DEMO_HANDLE)
    print(
        json.dumps(
            {
                "handle": DEMO_HANDLE,
                "user_sqid": sqid,
                "loaded": loaded is not None,
                "added_posts": more_posts,
                "artworks": artworks,
                "page": f"{settings.base_url}/u/{sqid}/posts",
                "token": f"python -m pmd_service token {sqid}",
                "locale": language.locale,
                "email_language": language.language(settings),
            },
            indent=2,
        )
    )


N = TypeVar("N", int, float)


def _number_in(parse: Callable[[str], N], low: float, high: float, what: str) -> Callable[[str], N]:
    """An argument's type: `raw` parsed, from `low` to `high`, else "must be `what`"."""

    def checked(raw: str) -> N:
        try:
            value: N | None = parse(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {raw!r}")
        return value

    return checked


_wait_seconds = _number_in(float, 0, 3600, "a number of seconds from 0 to 3600")
_positive_seconds = _number_in(int, 1, math.inf, "a positive whole number of seconds")


def _more_posts(raw: str) -> int:
    from .dev.demo import MAX_MORE_POSTS

    what = f"a whole number of posts from 1 to {MAX_MORE_POSTS}"
    return _number_in(int, 1, MAX_MORE_POSTS, what)(raw)


def _locale(raw: str) -> str:
    from .dev.demo import locale_tag

    try:
        return locale_tag(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The sweep's and the cleanup's summary log line, left out here: it is the printed result.
SUMMARIES = (("pmd_service.upkeep.sweep", "sweep: %d pending re-enqueued"),
             ("pmd_service.upkeep.cleanup", "cleanup: %s"))  # fmt: skip


def _not_a_summary(record: logging.LogRecord) -> bool:
    return not any(record.name == n and str(record.msg).startswith(s) for n, s in SUMMARIES)


async def _run_job(settings: Settings, job: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
    loggers = [logging.getLogger(name) for name, _ in SUMMARIES]
    for logger in loggers:
        logger.addFilter(_not_a_summary)
    try:
        async with job_context(settings) as ctx:
            result = await job(ctx)
    finally:
        for logger in loggers:
            logger.removeFilter(_not_a_summary)
    print(json.dumps(result))


SQL_STATS = f"""
SELECT
  (SELECT coalesce(jsonb_object_agg(status, n), '{{}}'::jsonb) FROM (
      SELECT status, count(*) AS n FROM batch_download_requests
      WHERE created_at >= {UTC_DAY_START}
      GROUP BY status) s) AS today,
  (SELECT min(created_at) FROM batch_download_requests WHERE status = 'pending') AS oldest_pending,
  (SELECT count(*) FROM batch_download_requests WHERE status = 'processing') AS processing
"""


async def _stats(settings: Settings) -> None:
    from arq.constants import default_queue_name

    from .jobs.context import state

    async with job_context(settings) as ctx:
        row = await state(ctx).pool.fetchrow(SQL_STATS)
        assert row is not None
        depth = await ctx["redis"].zcard(default_queue_name)
    oldest = row["oldest_pending"]
    print(json.dumps({
        "bdrs_today_by_status": row["today"],
        "processing_now": row["processing"],
        "oldest_pending": oldest.isoformat() if oldest else None,
        "queue_depth": depth,
    }, indent=2))  # fmt: skip


def _grants_command(args: argparse.Namespace) -> int:
    """Only PMD_SCHEMA and HOST_SCHEMA matter: no database, no other setting is needed."""
    from .host.grants import GrantsError, grants_sql

    check_env("pmd")  # it reads two settings, but every mistake is one line everywhere
    try:
        print(grants_sql(
            args.role, cutover=args.cutover, pmd_schema=os.environ.get("PMD_SCHEMA") or "pmd",
            host_schema=os.environ.get("HOST_SCHEMA") or "public",
        ))  # fmt: skip
    except GrantsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _wait(given: float | None) -> tuple[float | None, str]:
    """How long to wait for the database, and what set it: --wait, STARTUP_WAIT_SECONDS or none."""
    if given is not None:
        return given, "--wait"
    if os.environ.get("STARTUP_WAIT_SECONDS"):
        return None, "STARTUP_WAIT_SECONDS"
    return 0.0, "--wait SECONDS"


def _dev(args: argparse.Namespace) -> int:
    from .dev.stack import run_dev

    return run_dev(args.locale)


def _serve(_: argparse.Namespace) -> int:
    from .web.serve import main as serve

    serve()
    return 0


def _worker(_: argparse.Namespace) -> int:
    from .worker import main as worker

    return worker()


def _sweep(_: argparse.Namespace, settings: Settings) -> None:
    from .upkeep.sweep import sweep

    asyncio.run(_run_job(settings, sweep))


def _cleanup(args: argparse.Namespace, settings: Settings) -> None:
    from .upkeep.cleanup import cleanup_dry_run, daily_cleanup

    if args.dry_run:  # no migration either: nothing is written
        settings = msgspec.structs.replace(settings, auto_migrate=False)
    asyncio.run(_run_job(settings, cleanup_dry_run if args.dry_run else daily_cleanup))


def _check_restore(args: argparse.Namespace, settings: Settings) -> int:
    from .upkeep.restore_check import CheckFailed, check_restore

    async def checked() -> Any:
        # No migration either: nothing is written.
        async with job_context(msgspec.structs.replace(settings, auto_migrate=False)) as ctx:
            return await check_restore(ctx)

    try:
        report = asyncio.run(checked())
    except CheckFailed as exc:
        raise CliError(str(exc)) from None
    print(json.dumps(report.as_json(), indent=2) if args.json else report.render())
    return 0 if report.consistent else 1


WAIT = arg(
    "--wait", type=_wait_seconds, metavar="SECONDS",
    help="wait up to SECONDS for the database to answer (default: STARTUP_WAIT_SECONDS when "
    "set, else a single try, failing within seconds)",
)  # fmt: skip

LOCALE = arg(
    "--locale", type=_locale, metavar="TAG",
    help="the language of the demo user's emails, its users.locale (es, pt-BR, zh-Hans, en, …): "
    "kept until another is given; nothing is written where the host's users have no locale",
)  # fmt: skip

COMMANDS = (
    Command(
        "migrate", "apply pending database migrations",
        arguments=(arg(
            "--with-host-tables", action="store_true",
            help="development and tests only: first create stand-ins for the host's tables when "
            "the database has none (nothing else ever creates a host table)",
        ),),
        run=lambda args, settings: asyncio.run(_migrate(settings, args.with_host_tables)),
        reads_redis=False,
    ),
    Command(
        "grants",
        "print the SQL a host admin runs for a least-privilege database role for the service "
        "(connects nowhere)",
        arguments=(
            arg("--role", required=True, help="the role's name (created if missing)"),
            arg("--cutover", action="store_true",
                help="also SELECT on the host's own batch_download_requests, for "
                "import-host-bdrs"),
        ),
        alone=_grants_command,
    ),
    Command(
        "dev", "run everything locally (what `make run` does)",
        details="Only in dev mode, when asked for: PMD_DEV=1 (else one line and exit status 2). "
        "Embedded PostgreSQL and Redis under PMD_DATA_DIR, demo data, the server and a "
        "worker; prints a link to the page and a token; Ctrl-C stops everything. PORT=9000 "
        "moves the server; --locale es (`make run DEMO_LOCALE=es`) sends the demo user's "
        "emails in Spanish. It runs only on what it makes itself (else one line, exit status 2): "
        "never with DATABASE_URL, DATABASE_DIRECT_URL, REDIS_URL or JWT_SECRET_KEY set, "
        "nor on a database holding users the demo did not make.",
        arguments=(LOCALE,),
        alone=_dev,
    ),
    Command(
        "serve", "run the HTTP server (what `python server.py` does)",
        details="Listens on HOST:PORT (127.0.0.1:8080 unless set; PORT=9000 moves it) with "
        "SERVER_PROCESSES processes, once PostgreSQL and Redis answer (it waits up to "
        "STARTUP_WAIT_SECONDS for them).",
        alone=_serve,
    ),
    Command(
        "worker", "run the arq worker (the supported form of `arq worker.WorkerSettings`)",
        details="Builds the ZIPs, sends the emails, runs the sweep and the daily cleanup, and "
        "serves its metrics on METRICS_PORT, once PostgreSQL and Redis answer (it waits up to "
        "STARTUP_WAIT_SECONDS for them). Each log line once, JSON under LOG_FORMAT=json.",
        alone=_worker,
    ),
    Command(
        "token", "mint a Bearer token for a user (dev and support)",
        details="Prints a JWT signed with JWT_SECRET_KEY, carrying the user's roles.",
        arguments=(
            arg("user_sqid", help="the user's public id"),
            arg("--ttl", type=_positive_seconds, default=3600,
                help="lifetime in seconds (default 3600)"),
        ),
        run=lambda args, settings: asyncio.run(_token(settings, args.user_sqid, args.ttl)),
        reads_redis=False, needs_secret=True,
    ),
    Command(
        "demo", "load the demo user and artworks into an empty database (demo stacks only)",
        details="The data `make run` shows (dev/demo.py), files in VAULT_PATH; once, and only "
        "into a database with no user (the host tables from `migrate --with-host-tables`), as "
        "a role that may write them. --posts N then gives the demo user N more artworks "
        "(thousands in seconds; tiny images), each time it is run; only to the demo user it "
        "made itself, never to a real account named `demo`. --locale TAG sets the language "
        "of the demo user's emails. Needs Pillow (the `embedded` extra; the image built with "
        "DEMO=true).",
        arguments=(arg(
            "--posts", type=_more_posts, default=0, metavar="N",
            help="add N more artworks to the demo user (the demo data is loaded first when the "
            "database is empty)",
        ), LOCALE),
        run=lambda args, settings: asyncio.run(_demo(settings, args.posts, args.locale)),
    ),
    Command(
        "sweep", "run the every-minute sweep once now",
        details="Re-enqueues pending requests and takes over those whose worker is gone.",
        run=_sweep, waits_for_redis=lambda _: True,
    ),
    Command(
        "cleanup", "run the daily cleanup once now",
        details="Expires downloads and export parts past their expiry, purges old requests and "
        "events, removes stale files; each step is a line on stderr, the summary goes to "
        "stdout. --dry-run says what it would do and changes nothing.",
        arguments=(arg(
            "--dry-run", action="store_true",
            help="say what it would expire and remove (the same counts as a run), change nothing",
        ),),
        run=_cleanup,
    ),
    Command(
        "check-restore",
        "report what a restore left inconsistent, changing nothing (exit 0 when nothing is, "
        "1 when something is)",
        details="One line a finding, saying what the service repairs by itself, then a "
        "summary: rows that say ready for a file that is gone, stored ZIPs and parts no ready "
        "row names, requests queued nowhere in Redis, recurring exports overdue, emails owed. "
        "Run it after a restore, before the service starts again (docs/operations.md, "
        "\"Backups and restores\").",
        arguments=(arg("--json", action="store_true",
                       help="one JSON document (findings, counts) instead of lines"),),
        run=_check_restore, waits_for_redis=lambda _: True,
    ),
    Command(
        "stats", "BDRs by status today, oldest pending, queue depth",
        run=lambda args, settings: asyncio.run(_stats(settings)), waits_for_redis=lambda _: True,
    ),
    *FEATURE_COMMANDS,
    Command(
        "check-host",
        "report the host-table indexes and columns the service relies on, and the connected "
        "role's privileges; prints CREATE INDEX CONCURRENTLY for missing indexes (exit 0 when "
        "everything fits, 1 when something is missing or does not fit, or the role could "
        "alter, drop or take over the host's tables)",
        arguments=(
            arg("--dev-database", action="store_true",
                help="accept host tables the service created itself (`migrate "
                "--with-host-tables`), and a role that could take them over (a dev database's "
                "admin)"),
            arg("--privileges", action="store_true",
                help="with --dev-database: report the connected role's privileges and judge "
                "them as on the host's database (exit 1 for a role that could take it over): a "
                "rehearsal of the role check on a scratch database"),
        ),
        run=lambda args, settings: asyncio.run(
            _check_host(settings, args.dev_database, args.privileges)
        ),
        reads_redis=False,
    ),
)  # fmt: skip

DESCRIPTION = """\
The Post Management Dashboard's backend for a pixel-art site: a person hides, deletes, restores
and relicenses their posts in bulk, and downloads them as ZIPs (or their whole account, in
parts) built in the background and announced live. This command runs its HTTP server and its
worker, everything at once for development, and the operator's tasks below."""

EPILOG = """\
Every command reads the environment the server and worker read (DATABASE_URL, REDIS_URL, …;
docs/configuration.md); a malformed or missing variable is one line naming it. With PMD_DEV=1,
unset URLs start embedded servers (development only). Results go to stdout, once; progress and
problems to stderr. `COMMAND --help` tells more about one."""


def parser() -> argparse.ArgumentParser:
    # The name the usage lines show: the console script's, or the module form.
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    prog = name if name == "pmd-service" else "python -m pmd_service"
    top = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    top.add_argument("--version", action="version", version=f"pmd-service {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        one = sub.add_parser(command.name, help=command.help, description=command.description())
        for names, options in command.arguments + ((WAIT,) if command.run else ()):
            one.add_argument(*names, **options)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    results = None  # under LOG_FORMAT=json: the command's output, as one JSON line
    try:
        if command.alone is not None:
            return command.alone(args)
        assert command.run is not None
        settings = load_settings("pmd", embedded=dev_servers, needs_secret=command.needs_secret,
                                 needs_redis=command.reads_redis)  # fmt: skip
        check_email_copy(settings, "pmd")  # `sweep` sends the emails owed
        wait, wait_hint = _wait(args.wait)
        redis = command.waits_for_redis(args)
        wait_for_services(settings, "pmd", wait=wait, redis=redis, wait_hint=wait_hint)
        results = ResultLine.capture(settings.log_format, args.command)
        return command.run(args, settings) or 0
    except (CliError, HostTablesMissing, DatabaseSetupError) as exc:
        report(str(exc))
        return 2
    finally:
        if results is not None:
            results.emit()


if __name__ == "__main__":
    sys.exit(main())
