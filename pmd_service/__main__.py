"""Operations CLI: `python -m pmd_service --help`.

Commands: migrate, dev, token, requeue, sweep, cleanup, stats, check-host, import-host-bdrs. Each uses the same environment
as the server and worker (DATABASE_URL, REDIS_URL, …; embedded servers when unset).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .core.rules import UTC_DAY_START
from .core.settings import Settings
from .core.startup import load_settings
from .dev.embedded import services
from .jobs.context import job_context


class CliError(Exception):
    """Bad input or state: printed as one line, exit status 2."""


async def _migrate(settings: Settings) -> None:
    from .core.db import connect
    from .core.migrate import migrate

    conn = await connect(settings.direct_url, "pmd-cli", search_path=settings.search_path)
    try:
        applied = await migrate(conn, settings)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")


async def _check_host(settings: Settings) -> bool:
    from .core.db import connect
    from .host.hostcheck import check_host

    conn = await connect(settings.direct_url, "pmd-cli", search_path=settings.search_path)
    try:
        report = await check_host(conn, settings.host_schema)
    finally:
        await conn.close()
    print(report.render())
    return report.fits


async def _import_host_bdrs(settings: Settings, apply: bool) -> None:
    from .host.cutover import import_host_bdrs
    from .jobs.context import state

    async with job_context(settings) as ctx, state(ctx).pool.acquire() as conn:
        summary = await import_host_bdrs(
            conn, ctx["redis"], settings.vault_path, settings.host_schema, apply=apply
        )
    print(json.dumps(summary.as_json(), indent=2))
    if not apply:
        print("dry run: nothing was written; run again with --apply", file=sys.stderr)


async def _token(settings: Settings, sqid: str, ttl: int) -> None:
    from .core.db import connect
    from .host.tokens import mint_token

    conn = await connect(settings.database_url, "pmd-cli", search_path=settings.search_path)
    try:
        roles = await conn.fetchval("SELECT roles FROM users WHERE public_sqid = $1", sqid[:16])
    finally:
        await conn.close()
    if roles is None:
        raise CliError(f"no user has the public id {sqid!r}")
    print(mint_token(settings.jwt_secret_key, sqid, ttl_seconds=ttl, roles=list(roles)))


SQL_REQUEUE_FAILED = """
UPDATE batch_download_requests
SET status = 'pending', attempts = 0, error_message = NULL, completed_at = NULL,
    claim_token = NULL, heartbeat_at = NULL, retry_at = NULL, email_sent_at = NULL,
    email_attempts = 0
WHERE id = $1 AND status = 'failed'
"""


async def _requeue(settings: Settings, raw_id: str) -> None:
    from .core.queue import enqueue_bdr
    from .jobs.context import state

    try:
        bdr_id = uuid.UUID(raw_id)
    except ValueError:
        raise CliError(f"{raw_id!r} is not a BDR id (a UUID)") from None
    async with job_context(settings) as ctx:
        pool = state(ctx).pool
        status = await pool.fetchval(
            "SELECT status FROM batch_download_requests WHERE id = $1", bdr_id
        )
        if status is None:
            raise CliError(f"no BDR {bdr_id}")
        if status == "failed":
            await pool.execute(SQL_REQUEUE_FAILED, bdr_id)
        elif status not in ("pending", "processing"):
            raise CliError(
                f"BDR {bdr_id} is {status}; only pending, processing or failed ones can be requeued"
            )
        # A fresh job id: the plain one may still be held by a dead run's job.
        await enqueue_bdr(ctx["redis"], bdr_id, retake=f"cli{uuid.uuid4().hex[:8]}")
    print(f"requeued {bdr_id} (was {status})")


async def _run_job(settings: Settings, job: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
    async with job_context(settings) as ctx:
        print(json.dumps(await job(ctx)))


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


def _bdr_id(raw: str) -> str:
    """Checked before anything connects: a bad id never starts an embedded server."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a BDR id (a UUID)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pmd_service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("dev", help="run everything locally (what `make run` does)")
    sub.add_parser("serve", help="run the HTTP server (what `python server.py` does)")
    token = sub.add_parser("token", help="mint a Bearer token for a user (dev and support)")
    token.add_argument("user_sqid", help="the user's public id")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    requeue = sub.add_parser("requeue", help="enqueue a BDR again (pending, processing or failed)")
    requeue.add_argument("bdr_id", type=_bdr_id, help="the BDR's id (a UUID)")
    sub.add_parser("sweep", help="run the every-minute sweep once now")
    sub.add_parser("cleanup", help="run the daily cleanup once now")
    sub.add_parser("stats", help="BDRs by status today, oldest pending, queue depth")
    cutover = sub.add_parser(
        "import-host-bdrs",
        help="the cut-over from the host's own PMD: rebuild its pending requests, serve its "
        "ready ZIPs until they expire (a dry run unless --apply; safe to run again)",
    )
    cutover.add_argument("--apply", action="store_true", help="write (default: a dry run)")
    sub.add_parser(
        "check-host",
        help="report the host-table indexes and columns the service relies on; prints CREATE "
        "INDEX CONCURRENTLY for missing indexes (exit 0 when everything fits, 1 when something "
        "is missing or does not fit)",
    )
    args = parser.parse_args(argv)

    if args.command == "token" and args.ttl <= 0:
        parser.error("--ttl must be a positive number of seconds")
    try:
        if args.command == "dev":
            from .dev.stack import run_dev

            return run_dev()
        if args.command == "serve":
            from .web.serve import main as serve

            serve()
            return 0
        settings = load_settings("pmd", embedded=services)
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "token":
            asyncio.run(_token(settings, args.user_sqid, args.ttl))
        elif args.command == "requeue":
            asyncio.run(_requeue(settings, args.bdr_id))
        elif args.command == "sweep":
            from .jobs.sweep import sweep

            asyncio.run(_run_job(settings, sweep))
        elif args.command == "cleanup":
            from .jobs.cleanup import cleanup_expired_bdrs

            asyncio.run(_run_job(settings, cleanup_expired_bdrs))
        elif args.command == "stats":
            asyncio.run(_stats(settings))
        elif args.command == "import-host-bdrs":
            asyncio.run(_import_host_bdrs(settings, args.apply))
        elif args.command == "check-host":
            return 0 if asyncio.run(_check_host(settings)) else 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
