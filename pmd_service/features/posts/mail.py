"""A cleanup policy's run's email to its owner, when the policy has `notify` and the run changed
something: how many posts it hid or deleted, which policy, and until when the run can be undone
from the posts page.

The run's row (`cleanup_policy_runs`) is written in the run's own transaction (policy_runs.py),
so a run that committed owes its email and one rolled back owes none; the email is taken and
sent as a BDR's is (mail/notify.py): at most once, retried by the sweep if SMTP fails before the
message went out or its sender died. It is owed only within the run's undo window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from ...core.settings import Settings
from ...mail import language
from ...mail.compose import Block, Button, Email, Para, message_id
from ...mail.links import page_link
from ...mail.notify import EmailTable, takes
from .undo import UNDO_HOURS

# A run's row, past its undo window by this much, goes in the daily cleanup: no email is owed
# then, and the margin leaves a day to see whether one went out.
KEPT_PAST_WINDOW_HOURS = 24


@dataclass(frozen=True)
class PolicyRunMail:
    to: str
    handle: str
    user_sqid: str
    action_id: str  # the run's entry in the history
    policy_name: str
    action: str  # "hide" or "delete"
    changed_count: int
    undo_until: datetime
    request_id: str | None = None  # of the POST that ran it now; None for a scheduled run
    locale: str | None = None  # the owner's `users.locale` (None: English)


# What the run did, by its action.
_RAN = {"hide": "policy_hid", "delete": "policy_deleted"}


def compose_policy_run(settings: Settings, mail: PolicyRunMail) -> EmailMessage:
    """The posts page's link, where "Recent actions" holds the run and its undo; the API's
    undo is a POST, which a link cannot make."""
    link = page_link(settings, mail.user_sqid, f"action={mail.action_id}")
    words = language.words(settings, mail.locale)
    # A header holds one line, whatever the owner typed.
    name = " ".join(mail.policy_name.split())
    values = {"count": mail.changed_count, "name": name}
    body: list[Block] = [
        Para((_RAN[mail.action], values), ("policy_undo_until", {"until": mail.undo_until})),
        Button("policy_button"),
    ]
    email = Email(words.text("policy_subject", name=name), mail.handle, body, "policy_why")
    mid = message_id(settings, "policy-run", mail.action_id)
    return email.message(settings, words, mail.to, link, mid, mail.request_id)


# A run's row owes its email when its policy had `notify`, while the run can still be undone,
# and while its owner has an account to send it to.
_OWES = f"""t.send_email AND t.ran_at > now() - interval '{UNDO_HOURS} hours'
  AND EXISTS (SELECT 1 FROM users u_to WHERE u_to.id = t.owner_id)"""

# Taken as a BDR's is (features/bdr/job.py), to the policy's owner, in the owner's language.
_TAKE_EMAIL = """
UPDATE cleanup_policy_runs t {take}
FROM users owner
WHERE {take_row} AND owner.id = t.owner_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS action_id, t.policy_name,
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

# The daily cleanup's (upkeep/cleanup.py), $1 its clock.
_RUN_PURGE = f"ran_at < $1::timestamptz - interval '{UNDO_HOURS + KEPT_PAST_WINDOW_HOURS} hours'"
POLICY_RUNS_PAST = f"SELECT count(*) FROM cleanup_policy_runs WHERE {_RUN_PURGE}"
SQL_PURGE_POLICY_RUNS = f"DELETE FROM cleanup_policy_runs WHERE {_RUN_PURGE}"
