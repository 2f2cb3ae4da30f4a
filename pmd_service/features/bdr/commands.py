"""The BDRs' operator commands: `requeue` and the cut-over's `import-host-bdrs`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import uuid

from ...core.command import CliError, Command, arg
from ...core.db import SET_NO_IDLE_BOUND
from ...core.opening import checked_connection
from ...core.settings import Settings
from ...jobs.context import job_context, state
from .cutover import import_host_bdrs
from .job_sql import enqueue_bdr

# The command line's logger: its lines read as the other commands'.
log = logging.getLogger("pmd_service.cli")


async def _import_host_bdrs(settings: Settings, apply: bool) -> None:
    where = (settings.vault_path, settings.host_schema)
    if apply:  # migrates (AUTO_MIGRATE) and writes
        async with job_context(settings) as ctx, state(ctx).pool.acquire() as conn:
            summary = await import_host_bdrs(
                conn, ctx["redis"], *where, apply=True, own_schema=settings.pmd_schema
            )
    else:  # a dry run writes nothing: no migration, no Redis, a read-only transaction
        async with checked_connection(settings) as reader, reader.transaction(readonly=True):
            await reader.execute(SET_NO_IDLE_BOUND)  # the vault is read between the statements
            summary = await import_host_bdrs(
                reader, None, *where, apply=False, own_schema=settings.pmd_schema
            )
    print(json.dumps(summary.as_json(), indent=2))
    if not apply:
        log.info("dry run: nothing was written; run again with --apply")


SQL_REQUEUE_FAILED = """
UPDATE batch_download_requests
SET status = 'pending', attempts = 0, error_message = NULL, error_code = NULL, completed_at = NULL,
    claim_token = NULL, heartbeat_at = NULL, retry_at = NULL, email_sent_at = NULL,
    email_lease_until = NULL, email_attempts = 0
WHERE id = $1 AND status = 'failed'
"""


async def _requeue(settings: Settings, bdr_id: uuid.UUID) -> None:
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


def _bdr_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a BDR id (a UUID)") from None


COMMANDS = (
    Command(
        "requeue",
        "enqueue a BDR again (pending, processing or failed)",
        details="A failed request starts over, its attempts reset.",
        arguments=(arg("bdr_id", type=_bdr_id, help="the BDR's id (a UUID)"),),
        run=lambda args, settings: asyncio.run(_requeue(settings, args.bdr_id)),
        waits_for_redis=lambda _: True,
    ),
    Command(
        "import-host-bdrs",
        "the cut-over from the host's own PMD: rebuild its pending requests, serve its ready "
        "ZIPs until they expire (a dry run unless --apply; safe to run again)",
        details="Progress goes to stderr as it goes through the host's requests.",
        arguments=(arg("--apply", action="store_true", help="write (default: a dry run)"),),
        run=lambda args, settings: asyncio.run(_import_host_bdrs(settings, args.apply)),
        waits_for_redis=lambda args: bool(args.apply),
    ),
)
