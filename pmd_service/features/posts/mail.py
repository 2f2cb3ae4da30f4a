"""A cleanup policy's run's email to its owner, owed within the run's undo window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ...mail.compose import Block, Button, Email, FeatureEmail, Para, Recipient
from ...mail.language import Words
from ...mail.notify import EmailTable, takes
from .undo import UNDO_HOURS

# A run's row is purged this long past its undo window, leaving a day to see its email went out.
KEPT_PAST_WINDOW_HOURS = 24


@dataclass(frozen=True)
class PolicyRunMail(Recipient):  # `about` the run's entry in the history
    policy_name: str
    action: str  # "hide" or "delete"
    changed_count: int
    undo_until: datetime


_RAN = {"hide": "policy_hid", "delete": "policy_deleted"}


def _write_run(words: Words, mail: PolicyRunMail) -> Email:
    # A header holds one line, whatever the owner typed.
    name = " ".join(mail.policy_name.split())
    values = {"count": mail.changed_count, "name": name}
    body: list[Block] = [
        Para((_RAN[mail.action], values), ("policy_undo_until", {"until": mail.undo_until})),
        Button("policy_button"),
    ]
    return Email(words.text("policy_subject", name=name), body, "policy_why")


# Links the posts page, whose "Recent actions" holds the undo (a POST no link can make).
compose_policy_run = FeatureEmail("policy-run", "action", _write_run)


# Owed with `notify`, while the run can be undone and its owner has an account.
_OWES = f"""t.send_email AND t.ran_at > now() - interval '{UNDO_HOURS} hours'
  AND EXISTS (SELECT 1 FROM users u_to WHERE u_to.id = t.owner_id)"""

# Taken as a BDR's is (features/bdr/job.py), to the policy's owner, in the owner's language.
_TAKE_EMAIL = """
UPDATE cleanup_policy_runs t {take}
FROM users owner
WHERE {take_row} AND owner.id = t.owner_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS about, t.policy_name,
          t.action, t.changed_count, t.ran_at + interval '{hours} hours' AS undo_until,
          owner.email AS "to", owner.handle, {locale} AS locale,
          coalesce(owner.public_sqid, '') AS user_sqid
"""
SQL_TAKE_EMAIL, SQL_TAKE_EMAIL_IN_ENGLISH = takes(
    _TAKE_EMAIL, "owner", _OWES, hours=str(UNDO_HOURS)
)
EMAIL = EmailTable(
    "cleanup policy run",
    "cleanup_policy_runs",
    SQL_TAKE_EMAIL,
    SQL_TAKE_EMAIL_IN_ENGLISH,
    PolicyRunMail,
    compose_policy_run,
    owes=_OWES,
    since="ran_at",
)
SQL_EMAILS_OWED = EMAIL.sql_emails_owed
send_policy_run_email = EMAIL.send


@dataclass(frozen=True)
class PolicyHoldMail(Recipient):  # `about` the policy
    policy_name: str
    action: str  # "hide" or "delete"
    held_count: int
    approved_count: int


_HELD = {"hide": "policy_held_hide", "delete": "policy_held_delete"}


def _write_hold(words: Words, mail: PolicyHoldMail) -> Email:
    name = " ".join(mail.policy_name.split())
    values = {"count": mail.held_count, "approved": mail.approved_count, "name": name}
    body: list[Block] = [
        Para((_HELD[mail.action], values), ("policy_held_approve", {})),
        Button("policy_held_button"),
    ]
    return Email(words.text("policy_held_subject", name=name), body, "policy_held_why")


# Links the posts page at the policy, whose Cleanup panel approves the count.
compose_policy_hold = FeatureEmail("policy-hold", "policy", _write_hold)


# Owed while its owner has an account, for as long as the hold row is kept.
_HOLD_OWES = "EXISTS (SELECT 1 FROM users u_to WHERE u_to.id = t.owner_id)"
_TAKE_HOLD_EMAIL = """
UPDATE cleanup_policy_holds t {take}
FROM users owner
WHERE {take_row} AND owner.id = t.owner_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.policy_id::text AS about,
          t.policy_name, t.action, t.held_count, t.approved_count,
          owner.email AS "to", owner.handle, {locale} AS locale,
          coalesce(owner.public_sqid, '') AS user_sqid
"""
HOLD_EMAIL = EmailTable(
    "cleanup policy hold",
    "cleanup_policy_holds",
    *takes(_TAKE_HOLD_EMAIL, "owner", _HOLD_OWES),
    PolicyHoldMail,
    compose_policy_hold,
    owes=_HOLD_OWES,
    since="held_at",
)
SQL_HOLD_EMAILS_OWED = HOLD_EMAIL.sql_emails_owed
send_policy_hold_email = HOLD_EMAIL.send

# The daily cleanup's (upkeep/cleanup.py), $1 its clock.
_RUN_PURGE = f"ran_at < $1::timestamptz - interval '{UNDO_HOURS + KEPT_PAST_WINDOW_HOURS} hours'"
POLICY_RUNS_PAST = f"SELECT count(*) FROM cleanup_policy_runs WHERE {_RUN_PURGE}"
SQL_PURGE_POLICY_RUNS = f"DELETE FROM cleanup_policy_runs WHERE {_RUN_PURGE}"
# A hold's row, a week on: its email went out or never will.
_HOLD_PURGE = "held_at < $1::timestamptz - interval '7 days'"
POLICY_HOLDS_PAST = f"SELECT count(*) FROM cleanup_policy_holds WHERE {_HOLD_PURGE}"
SQL_PURGE_POLICY_HOLDS = f"DELETE FROM cleanup_policy_holds WHERE {_HOLD_PURGE}"
