"""The bulk actions' records (posts/actions.py) against the `grants` command: the host columns
each record says it writes are the ones its statements need, and together they are the UPDATE
grant the command gives on the host's `posts`."""

from __future__ import annotations

import re

import asyncpg
import pytest

from pmd_service.features.posts.action_shape import BUMPED, BulkAction
from pmd_service.features.posts.actions import ACTIONS
from pmd_service.features.posts.batch_sql import statement
from pmd_service.features.posts.undo import undo_statement
from pmd_service.host.grants import grants_sql
from tests.helpers import admin_and_role, any_refused, refused


def _granted_updates(script: str) -> set[str]:
    """The columns of `posts` the printed script grants UPDATE on."""
    found = re.findall(r"GRANT UPDATE \(([^)]*)\) ON public\.posts TO", script)
    assert len(found) == 1, found
    return {column.strip() for column in found[0].split(",")}


def _statements(action: BulkAction) -> dict[str, str]:
    """Every statement of `action`: per caller, by ids, by filter, and its undo."""
    found: dict[str, str] = {}
    for moderator in (False, True):
        who = "moderator" if moderator else "owner"
        for by_filter in (False, True):
            how = "filter" if by_filter else "ids"
            found[f"{who} by {how}"] = statement(action, moderator=moderator, by_filter=by_filter)
        found[f"{who}'s undo"] = undo_statement(action, moderator=moderator)
    return found


def test_the_records_write_what_the_grants_command_grants() -> None:
    written = {column for action in ACTIONS for column in action.writes}
    assert written | set(BUMPED) == _granted_updates(grants_sql("pmd"))
    # Every record writes a column of its own; the bumped columns are the template's.
    for action in ACTIONS:
        assert action.writes, action.name
        assert not set(action.writes) & set(BUMPED), action.name


async def _updatable(admin: asyncpg.Connection, role: str) -> set[str]:
    rows = await admin.fetch(
        "SELECT column_name FROM information_schema.column_privileges WHERE grantee = $1"
        " AND table_schema = 'public' AND table_name = 'posts' AND privilege_type = 'UPDATE'",
        role,
    )
    return {row["column_name"] for row in rows}


@pytest.mark.parametrize("action", ACTIONS, ids=[a.name for a in ACTIONS])
async def test_a_records_statements_need_exactly_the_columns_it_names(
    host_url: str, host_role_url: str, action: BulkAction
) -> None:
    async with admin_and_role(host_url, host_role_url) as (admin, role_conn, role):
        await admin.execute(grants_sql(role))
        granted = await _updatable(admin, role)
        assert granted == {column for a in ACTIONS for column in a.writes} | set(BUMPED)
        statements = _statements(action)
        # With UPDATE on its own columns only (and the bumped ones), all of them run.
        for column in granted - set(action.writes) - set(BUMPED):
            await admin.execute(f"REVOKE UPDATE ({column}) ON posts FROM {role}")
        assert await refused(role_conn, statements) == {}
        # Without any one of its columns, some of them are refused: none is named in vain.
        unneeded = []
        for column in (*action.writes, *BUMPED):
            await admin.execute(f"REVOKE UPDATE ({column}) ON posts FROM {role}")
            if not await any_refused(role_conn, statements, column):
                unneeded.append(column)
            await admin.execute(f"GRANT UPDATE ({column}) ON posts TO {role}")
        assert unneeded == []
