"""`python -m pmd_service export`: a data-subject request, a full export made by an operator."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from ...core.command import CliError, Command, arg
from ...core.settings import Settings
from .schemas import BAGIT, part_filename
from .service import SQL_ARTWORKS, SQL_RUNNING

SQL_USER = """
SELECT id, public_sqid, handle, deactivated, banned_until FROM users WHERE public_sqid = $1
"""
SQL_START = """
INSERT INTO exports (user_id, user_sqid, part_bytes, include_comments, include_reactions,
                     request_id, artwork_count, by_operator)
VALUES ($1, $2, $3, true, true, 'operator-export', $4, true)
RETURNING id
"""
SQL_AUDIT = """
INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
VALUES (gen_random_uuid(), $1, 'pmd_operator_export', 'user', $2, $3)
"""
SQL_STATE = """
SELECT e.status, e.progress_done, e.artwork_count, e.error_message,
       (SELECT count(*) FROM export_parts p WHERE p.export_id = e.id) AS parts,
       (SELECT count(*) FROM export_parts p WHERE p.export_id = e.id AND p.status = 'ready')
           AS ready
FROM exports e WHERE e.id = $1
"""
SQL_PARTS = """
SELECT number, file_path, file_size_bytes, sha256 FROM export_parts
WHERE export_id = $1 ORDER BY number
"""
ENDED = ("ready", "failed", "cancelled", "expired")


# The audit row's note holds it: a sentence or a ticket's reference, not a document.
MAX_REASON_CHARS = 500


def check_arguments(reason: str, to: Path | None) -> None:
    """Before any export: a reason of a bounded length, and the folder (made when missing)."""
    if not reason.strip():
        raise CliError("--reason must say why (it goes into the audit log)")
    if len(reason) > MAX_REASON_CHARS:
        raise CliError(
            f"--reason is {len(reason)} characters; at most {MAX_REASON_CHARS} (name the "
            "request, e.g. its ticket, rather than quote it)"
        )
    if to is not None:
        try:
            to.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"--to {to}: cannot make that folder ({exc})") from None


async def operator_export(
    settings: Settings, user_sqid: str, reason: str, to: Path | None, poll: float = 1.0
) -> list[dict[str, Any]]:
    from ...jobs.context import job_context, state
    from .job_sql import enqueue_export

    async with job_context(settings) as ctx:
        st = state(ctx)
        async with st.pool.acquire() as conn, conn.transaction():
            user = await conn.fetchrow(SQL_USER, user_sqid)
            if user is None:
                raise CliError(f"no user {user_sqid!r}")
            running = await conn.fetchval(SQL_RUNNING, user["id"])
            if running is not None:
                raise CliError(f"export {running} of this user is running; wait for it")
            count = await conn.fetchval(SQL_ARTWORKS, user["id"])
            if not count:
                raise CliError(f"@{user['handle']} has no artwork to export")
            export_id: uuid.UUID = await conn.fetchval(
                SQL_START, user["id"], user["public_sqid"], settings.export_part_bytes, count
            )
            note = {
                "export_id": str(export_id),
                "reason": reason,
                "operator": getpass.getuser(),
                "deactivated": user["deactivated"],
                "banned_until": user["banned_until"] and user["banned_until"].isoformat(),
            }
            await conn.execute(SQL_AUDIT, user["id"], str(user["id"]), json.dumps(note))
        await enqueue_export(ctx["redis"], export_id)
        print(
            f"export {export_id} of @{user['handle']}: {count} artworks; waiting for a worker",
            file=sys.stderr,
            flush=True,
        )
        row = await _wait(st.pool, export_id, poll)
        if row["status"] != "ready":
            why = row["error_message"] or row["status"]
            raise CliError(f"export {export_id} ended {row['status']}: {why}")
        parts = await st.pool.fetch(SQL_PARTS, export_id)
        found = []
        for part in parts:
            name = part_filename(export_id, part["number"], len(parts), BAGIT)  # its rows' default
            stored = await st.zips.locate(part["file_path"], part["file_size_bytes"])
            where = str(stored.path) if stored.path is not None else f"object {stored.key}"
            if to is not None:
                target = to / name
                if stored.path is not None:
                    await asyncio.to_thread(shutil.copyfile, stored.path, target)
                else:
                    with target.open("wb") as out:
                        read = await st.zips.read(stored, 0, part["file_size_bytes"])
                        async for chunk in st.zips.chunks(read, 1 << 20):
                            out.write(chunk)
                where = str(target)
            found.append(
                {
                    "part": part["number"],
                    "file": name,
                    "bytes": part["file_size_bytes"],
                    "sha256": part["sha256"].strip(),
                    "at": where,
                }
            )
        return found


async def _wait(pool: Any, export_id: uuid.UUID, poll: float) -> Any:
    said = ""
    tty = sys.stderr.isatty()
    while True:
        row = await pool.fetchrow(SQL_STATE, export_id)
        line = (
            f"export {export_id}: {row['status']}, {row['progress_done']} of "
            f"{row['artwork_count']} artworks, {row['ready']} of {row['parts']} parts ready"
        )
        if line != said:
            print(
                ("\r" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True
            )
            said = line
        if row["status"] in ENDED:
            if tty:
                print(file=sys.stderr)
            return row
        await asyncio.sleep(poll)


def _export(args: argparse.Namespace, settings: Settings) -> None:
    check_arguments(args.reason, args.to)
    parts = asyncio.run(operator_export(settings, args.user, args.reason, args.to))
    print(json.dumps(parts, indent=2))


COMMANDS = (
    Command(
        "export",
        "export all of one user's artworks for a data-subject request",
        details="A data-subject request: the same full export a user asks for, for any user, "
        "deactivated or banned too, with no cooldown, and not counted toward the user's own; "
        "one row in the audit log names --reason (at most 500 characters). "
        "A worker builds it (the command waits, a progress line on stderr); then each part's "
        "place, size and SHA-256 are printed (as JSON), and with --to DIR the parts are copied "
        "there under their download names.",
        arguments=(
            arg("--user", required=True, metavar="SQID", help="the user's public sqid"),
            arg(
                "--reason",
                required=True,
                help="why (written to the audit log; at most 500 characters)",
            ),
            arg(
                "--to",
                type=Path,
                metavar="DIR",
                help="copy the parts into DIR (made, with its parents, when missing)",
            ),
        ),
        run=_export,
        waits_for_redis=lambda _: True,
    ),
)
