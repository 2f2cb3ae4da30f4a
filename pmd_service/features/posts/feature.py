"""The posts, their bulk actions and the cleanup policies: one manifest."""

from __future__ import annotations

from ...jobs.kind import Email
from ...manifest import Feature, Purge, Schedule
from . import undo
from .endpoints import ENDPOINTS, host_cache_ctx
from .events import EVENTS
from .policies.endpoints import ENDPOINTS as POLICY_ENDPOINTS
from .policies.mail import (
    POLICY_HOLDS_PAST,
    POLICY_RUNS_PAST,
    SQL_EMAILS_OWED,
    SQL_HOLD_EMAILS_OWED,
    SQL_PURGE_POLICY_HOLDS,
    SQL_PURGE_POLICY_RUNS,
    send_policy_hold_email,
    send_policy_run_email,
)
from .policies.runs import TICK_SECONDS, run_due_policies

FEATURE = Feature(
    name="posts",
    endpoints=(*ENDPOINTS, *POLICY_ENDPOINTS),
    lifetimes=(host_cache_ctx,),
    events=EVENTS,
    # Every minute, so a due policy runs within one (arq runs each tick on one worker).
    schedules=(
        Schedule(
            "cron:cleanup_policies",
            run_due_policies,
            second=frozenset({30}),
            timeout=TICK_SECONDS + 30,
        ),
    ),
    # A run's email to its owner, and a held run's: sent right after a scheduled run, else by
    # the sweep.
    emails=(
        Email(SQL_EMAILS_OWED, send_policy_run_email),
        Email(SQL_HOLD_EMAILS_OWED, send_policy_hold_email),
    ),
    purges=(
        # The marks of posts no longer deleted by their owner: planned by id, as the dry run shows.
        Purge("marks", undo.MARKS_PAST, undo.SQL_PURGE_MARKS),
        Purge("undo_rows", undo.UNDO_ROWS_PAST, undo.SQL_PURGE_UNDO_HISTORY),
        Purge("policy_runs", POLICY_RUNS_PAST, SQL_PURGE_POLICY_RUNS),
        Purge("policy_holds", POLICY_HOLDS_PAST, SQL_PURGE_POLICY_HOLDS),
    ),
)
