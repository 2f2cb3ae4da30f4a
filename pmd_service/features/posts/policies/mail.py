"""A cleanup policy's emails to its owner: a run's, within its undo window, and a held run's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ....core.named_sql import Named
from ....mail.compose import Block, Button, Email, FeatureEmail, Para, Recipient
from ....mail.language import Words
from ....mail.notify import EmailTable, takes
from ..undo import UNDO_HOURS

# A run's row is purged this long past its undo window, leaving a day to see its email went out.
KEPT_PAST_WINDOW_HOURS = 24


@dataclass(frozen=True)
class PolicyMail(Recipient):
    """What a run changed (`about`: its history entry) or a held run would (`about`: the policy)."""

    policy_name: str
    action: str  # "hide" or "delete"
    count: int
    approved_count: int | None  # a held run's: the count its owner last approved
    undo_until: datetime | None  # a run's: the end of its undo window


@dataclass(frozen=True)
class PolicyCopy:
    """The keys of one of a policy's emails."""

    subject: str
    did: dict[str, str]  # its first line's, by action
    then: str  # the line after it
    button: str
    why: str

    def write(self, words: Words, mail: PolicyMail) -> Email:
        # A header holds one line, whatever the owner typed.
        name = " ".join(mail.policy_name.split())
        # A key's copy names only its own placeholders (language.py checks), so both lines get all.
        values: dict[str, object] = {"count": mail.count, "name": name}
        values |= {"approved": mail.approved_count, "until": mail.undo_until}
        body: list[Block] = [
            Para((self.did[mail.action], values), (self.then, values)),
            Button(self.button),
        ]
        return Email(words.text(self.subject, name=name), body, self.why)


_RAN = PolicyCopy(
    "policy_subject",
    {"hide": "policy_hid", "delete": "policy_deleted"},
    "policy_undo_until",
    "policy_button",
    "policy_why",
)
_HELD = PolicyCopy(
    "policy_held_subject",
    {"hide": "policy_held_hide", "delete": "policy_held_delete"},
    "policy_held_approve",
    "policy_held_button",
    "policy_held_why",
)

# Taken as a BDR's is (features/bdr/mail.py), to the policy's owner, in the owner's language.
_TAKE_EMAIL = """
UPDATE {table} t {take}
FROM users owner
WHERE {take_row} AND owner.id = t.owner_id
RETURNING t.email_sent_at AS taken_at, t.request_id, {about}::text AS about, t.policy_name,
          t.action, {count} AS count, {approved} AS approved_count, {until} AS undo_until,
          owner.email AS "to", owner.handle, {locale} AS locale,
          coalesce(owner.public_sqid, '') AS user_sqid
"""


def _table(
    label: str, table: str, owes: str, since: str, write: FeatureEmail[PolicyMail], **fields: str
) -> EmailTable[PolicyMail]:
    """A policy's email owed by the rows of `table`, whose take returns `fields` as named."""
    take = takes(_TAKE_EMAIL, "owner", owes, table=table, **fields)
    return EmailTable(label, table, *take, PolicyMail, write, owes=owes, since=since)


# Owed while its owner has an account (a hold's, while its row is kept); a run's, with `notify`,
# while the run can be undone.
_OWNED = "EXISTS (SELECT 1 FROM users u_to WHERE u_to.id = t.owner_id)"
# Its email links the posts page, whose "Recent actions" holds the undo (a POST no link can make).
EMAIL = _table(
    "cleanup policy run",
    "cleanup_policy_runs",
    f"t.send_email AND t.ran_at > now() - interval '{UNDO_HOURS} hours' AND {_OWNED}",
    "ran_at",
    FeatureEmail("policy-run", "action", _RAN.write),
    about="t.id",
    count="t.changed_count",
    approved="NULL::int",
    until=f"t.ran_at + interval '{UNDO_HOURS} hours'",
)
SQL_TAKE_EMAIL, SQL_EMAILS_OWED = EMAIL.take, EMAIL.sql_emails_owed
send_policy_run_email = EMAIL.send

# Its email links the posts page at the policy, whose Cleanup panel approves the count.
HOLD_EMAIL = _table(
    "cleanup policy hold",
    "cleanup_policy_holds",
    _OWNED,
    "held_at",
    FeatureEmail("policy-hold", "policy", _HELD.write),
    about="t.policy_id",
    count="t.held_count",
    approved="t.approved_count",
    until="NULL::timestamptz",
)
SQL_TAKE_HOLD_EMAIL, SQL_HOLD_EMAILS_OWED = HOLD_EMAIL.take, HOLD_EMAIL.sql_emails_owed
send_policy_hold_email = HOLD_EMAIL.send

# The daily cleanup's (upkeep/cleanup.py), as of its `:clock`.
_RUN_PURGE = (
    f"ran_at < :clock::timestamptz - interval '{UNDO_HOURS + KEPT_PAST_WINDOW_HOURS} hours'"
)
POLICY_RUNS_PAST = f"SELECT count(*) FROM cleanup_policy_runs WHERE {_RUN_PURGE}"
SQL_PURGE_POLICY_RUNS = Named(f"DELETE FROM cleanup_policy_runs WHERE {_RUN_PURGE}")
# A hold's row, a week on: its email went out or never will.
_HOLD_PURGE = "held_at < :clock::timestamptz - interval '7 days'"
POLICY_HOLDS_PAST = f"SELECT count(*) FROM cleanup_policy_holds WHERE {_HOLD_PURGE}"
SQL_PURGE_POLICY_HOLDS = Named(f"DELETE FROM cleanup_policy_holds WHERE {_HOLD_PURGE}")
