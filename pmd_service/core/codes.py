"""The one table of error codes: each `Code` (this service's stable name, sent as
`details.reason`) with its status, meaning, `details` fields and the `HostCode` on the wire.
The OpenAPI document and docs/errors.md (`python -m pmd_service.core.codes`) come from it.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import generated


class HostCode(enum.StrEnum):
    """The codes the host's app knows on the PMD's paths (its `ErrorCode` enum)."""

    # The host's specific names for the PMD's situations
    POSTS_NOT_OWNED = "posts_not_owned"
    BDR_DAILY_LIMIT = "bdr_daily_limit"
    BDR_NOT_READY = "bdr_not_ready"
    BDR_EXPIRED = "bdr_expired"
    BDR_NOT_FOUND = "bdr_not_found"
    FORBIDDEN_ROLE = "forbidden_role"
    OWNER_PROTECTED = "owner_protected"
    USER_NOT_FOUND = "user_not_found"
    ACCOUNT_BANNED = "account_banned"
    ACCOUNT_DEACTIVATED = "account_deactivated"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 (codes, not secrets)
    # Its fallbacks by status
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FILE_TOO_LARGE = "file_too_large"
    VALIDATION_ERROR = "validation_error"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    # A failed download's `error_code` (no answer carries these three)
    NO_POSTS = "no_posts"
    INTERNAL = "internal"


# The host's code for a status without a specific code; any other reads internal_error.
FALLBACK: dict[int, HostCode] = {
    400: HostCode.BAD_REQUEST,
    401: HostCode.UNAUTHORIZED,
    403: HostCode.FORBIDDEN,
    404: HostCode.NOT_FOUND,
    405: HostCode.BAD_REQUEST,
    409: HostCode.CONFLICT,
    413: HostCode.FILE_TOO_LARGE,
    422: HostCode.VALIDATION_ERROR,
    429: HostCode.RATE_LIMITED,
}


class Code(enum.StrEnum):
    """This service's name for each situation (`details.reason`)."""

    # Authentication and whose posts
    TOKEN_MISSING = "token_missing"  # noqa: S105 (codes, not secrets)
    TOKEN_INVALID = "token_invalid"  # noqa: S105
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    ACCOUNT_DEACTIVATED = "account_deactivated"
    ACCOUNT_BANNED = "account_banned"
    FORBIDDEN_ROLE = "forbidden_role"
    OWNER_PROTECTED = "owner_protected"
    MODERATOR_PROTECTED = "moderator_protected"
    TARGET_NOT_FOUND = "target_not_found"
    TARGET_MISMATCH = "target_mismatch"
    TICKET_INVALID = "ticket_invalid"
    TICKET_WRONG_DOWNLOAD = "ticket_wrong_download"
    # The request itself
    MALFORMED_JSON = "malformed_json"
    DUPLICATE_KEY = "duplicate_key"
    INVALID_TEXT = "invalid_text"
    VALIDATION_FAILED = "validation_failed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BODY_TOO_LARGE = "body_too_large"
    BODY_TIMEOUT = "body_timeout"
    BAD_REQUEST = "bad_request"
    INVALID_QUERY = "invalid_query"
    INVALID_ID = "invalid_id"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INTERNAL_ERROR = "internal_error"
    # The server and what it depends on
    DATABASE_UNAVAILABLE = "database_unavailable"
    REDIS_UNAVAILABLE = "redis_unavailable"
    TICKETS_UNAVAILABLE = "tickets_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"
    LOW_DISK_SPACE = "low_disk_space"
    DOWNLOADS_BUSY = "downloads_busy"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SHUTTING_DOWN = "shutting_down"
    NOT_READY = "not_ready"
    # Posts and bulk actions
    POSTS_NOT_OWNED = "posts_not_owned"
    POSTS_NOT_RESTORABLE = "posts_not_restorable"
    POSTS_DELETED_BY_MODERATOR = "posts_deleted_by_moderator"
    TOO_MANY_TAGS = "too_many_tags"
    NO_DERIVATIVES_LICENSE = "no_derivatives_license"
    INVALID_TAGS = "invalid_tags"
    VALUE_REQUIRED = "value_required"
    UNKNOWN_LICENSE = "unknown_license"
    TOO_MANY_POSTS = "too_many_posts"
    COUNT_CHANGED = "count_changed"
    SET_CHANGED = "set_changed"
    ARTWORK_REUPLOADED = "artwork_reuploaded"
    RESTORE_INTERRUPTED = "restore_interrupted"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_SORT = "invalid_sort"
    INVALID_FILTER = "invalid_filter"
    RATE_LIMITED = "rate_limited"
    ACTION_NOT_FOUND = "action_not_found"
    ALREADY_UNDONE = "already_undone"
    UNDO_EXPIRED = "undo_expired"
    UNDO_DROPPED = "undo_dropped"
    UNDO_HISTORY_MISSING = "undo_history_missing"
    ROW_BUDGET_EXCEEDED = "row_budget_exceeded"
    SITE_BUDGET_EXCEEDED = "site_budget_exceeded"
    # Cleanup policies
    POLICIES_OFF = "policies_off"
    POLICY_NOT_FOUND = "policy_not_found"
    POLICY_OWNER_ONLY = "policy_owner_only"
    TOO_MANY_POLICIES = "too_many_policies"
    POLICY_WIDENS = "policy_widens"
    POLICY_PAUSED_BY_MODERATOR = "policy_paused_by_moderator"
    POLICY_RUN_TIMEOUT = "policy_run_timeout"
    # Batch downloads (BDR), their files and streams
    BDR_DAILY_LIMIT = "bdr_daily_limit"
    BDR_REPEATED = "bdr_repeated"
    BDR_DAILY_BYTES_LIMIT = "bdr_daily_bytes_limit"
    BDR_TOO_LARGE = "bdr_too_large"
    BDR_NOT_FOUND = "bdr_not_found"
    BDR_MADE_BY_MODERATOR = "bdr_made_by_moderator"
    BDR_NOT_READY = "bdr_not_ready"
    BDR_NO_FILE = "bdr_no_file"
    BDR_EXPIRED = "bdr_expired"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    PRECONDITION_FAILED = "precondition_failed"
    TOO_MANY_DOWNLOADS = "too_many_downloads"
    TOO_MANY_STREAMS = "too_many_streams"
    # Full exports
    EXPORT_OWNER_ONLY = "export_owner_only"
    INVALID_PART_SIZE = "invalid_part_size"
    INVALID_SINCE = "invalid_since"
    INVALID_SCHEDULE = "invalid_schedule"
    INVALID_LAYOUT = "invalid_layout"
    EXPORT_RUNNING = "export_running"
    EXPORT_SCHEDULED = "export_scheduled"
    EXPORT_COOLDOWN = "export_cooldown"
    NOTHING_TO_EXPORT = "nothing_to_export"
    EXPORT_NOT_FOUND = "export_not_found"
    PART_NOT_FOUND = "part_not_found"
    SCHEDULE_NOT_FOUND = "schedule_not_found"
    PART_NOT_READY = "part_not_ready"
    PART_NO_FILE = "part_no_file"
    EXPORT_EXPIRED = "export_expired"
    # A failed download's or export's `error_reason` (no answer carries these)
    USER_NOT_FOUND = "user_not_found"
    NO_POSTS = "no_posts"
    TOO_LARGE = "too_large"
    UNEXPECTED = "unexpected"
    INTERNAL = "internal"


# A `details` field's JSON Schema, by the short names the table uses.
_KINDS: dict[str, dict[str, Any]] = {
    **{kind: {"type": kind} for kind in ("integer", "string", "boolean", "object")},
    "integers": {"type": "array", "items": {"type": "integer"}},
}


@dataclass(frozen=True)
class Entry:
    """One row: status (None: a failed item's), meaning, `details` fields by kind, and the
    host's specific code (None: the status's fallback)."""

    status: int | None
    meaning: str
    details: dict[str, str] = field(default_factory=dict)
    host: HostCode | None = None

    @property
    def code(self) -> HostCode:
        """The `code` the answer carries (a failed item's `error_code`)."""
        if self.host is not None:
            return self.host
        if self.status is None:
            raise ValueError("a failed item's row names its host code")
        return FALLBACK.get(self.status, HostCode.INTERNAL_ERROR)

    def details_schema(self, reason: Code) -> dict[str, Any]:
        return {
            "type": "object",
            "required": sorted({*self.details, "reason"}),
            "properties": {
                "reason": {"const": str(reason), "description": self.meaning},
                **{name: _KINDS[kind] for name, kind in self.details.items()},
            },
        }


_RETRY = {"retry_after_seconds": "integer"}
_IDS = {"missing_ids": "integers"}
_REFUSED = {"invalid_post_ids": "integers"}
_SET = {"count": "integer", "match_digest": "string"}

TABLE: dict[Code, Entry] = {
    Code.TOKEN_MISSING: Entry(401, "No `Authorization: Bearer` token (nor `?ticket=` where one is taken)"),
    Code.TOKEN_INVALID: Entry(401, "The token is malformed, badly signed, not an access token, or names no account"),
    Code.TOKEN_EXPIRED: Entry(401, "The access token (or the one behind a ticket) has expired: sign in again", host=HostCode.TOKEN_EXPIRED),
    Code.ACCOUNT_DEACTIVATED: Entry(403, "The caller's account is deactivated", host=HostCode.ACCOUNT_DEACTIVATED),
    Code.ACCOUNT_BANNED: Entry(403, "The caller's account is banned until `banned_until` (`permanent`: for good)", {"banned_until": "string", "permanent": "boolean"}, host=HostCode.ACCOUNT_BANNED),
    Code.FORBIDDEN_ROLE: Entry(403, "`target_sqid` (or this action) needs a role the caller lacks", {"required": "string"}, host=HostCode.FORBIDDEN_ROLE),
    Code.OWNER_PROTECTED: Entry(403, "A site owner's posts are managed by that owner only", host=HostCode.OWNER_PROTECTED),
    Code.MODERATOR_PROTECTED: Entry(403, "A moderator's posts are managed by that moderator or an owner only"),
    Code.TARGET_NOT_FOUND: Entry(404, "No user has the public id in `target_sqid`", host=HostCode.USER_NOT_FOUND),
    Code.TARGET_MISMATCH: Entry(400, "`target_sqid` differs between the query and the body, or from the ticket's"),
    Code.TICKET_INVALID: Entry(401, "The ticket is unknown, expired or already used: mint a new one"),
    Code.TICKET_WRONG_DOWNLOAD: Entry(401, "The ticket was minted for another download, or for the stream"),
    Code.MALFORMED_JSON: Entry(400, "The body is empty or not UTF-8 JSON"),
    Code.DUPLICATE_KEY: Entry(400, "A key appears twice in the body, or a one-value query parameter twice", {"key": "string"}),
    Code.INVALID_TEXT: Entry(400, "A text value holds a NUL character (U+0000)"),
    Code.VALIDATION_FAILED: Entry(422, "The body does not match the schema; `errors` names the field"),
    Code.UNSUPPORTED_MEDIA_TYPE: Entry(415, "The body is not sent as JSON"),
    Code.BODY_TOO_LARGE: Entry(413, "The body is larger than the server takes", {"limit_bytes": "integer"}),
    Code.BODY_TIMEOUT: Entry(408, "The body did not arrive in time; the connection is closed", {"timeout_seconds": "integer"}),
    Code.BAD_REQUEST: Entry(400, "The request could not be read as HTTP"),
    Code.INVALID_QUERY: Entry(400, "A query parameter is not of its type or range"),
    Code.INVALID_ID: Entry(400, "The id in the path is not a UUID"),
    Code.NOT_FOUND: Entry(404, "Nothing is at this URL"),
    Code.METHOD_NOT_ALLOWED: Entry(405, "The method is not one this URL takes (`Allow` lists them)"),
    Code.INTERNAL_ERROR: Entry(500, "The server failed; it has been logged"),
    Code.DATABASE_UNAVAILABLE: Entry(503, "The database is not taking connections or not answering; see Retry-After", _RETRY),
    Code.REDIS_UNAVAILABLE: Entry(503, "Redis is not taking connections; see Retry-After", _RETRY),
    Code.TICKETS_UNAVAILABLE: Entry(503, "Tickets cannot be minted or redeemed now (Redis); see Retry-After", _RETRY),
    Code.STORE_UNAVAILABLE: Entry(503, "The object store holding the ZIPs does not answer; see Retry-After", _RETRY),
    Code.LOW_DISK_SPACE: Entry(503, "The server is short of disk space for new downloads; see Retry-After", _RETRY),
    Code.DOWNLOADS_BUSY: Entry(503, "This server streams as many downloads as it can; see Retry-After", _RETRY),
    Code.TOO_MANY_CONNECTIONS: Entry(503, "This server holds as many connections as it may; see Retry-After", _RETRY),
    Code.SHUTTING_DOWN: Entry(503, "This server is shutting down; reconnect (Retry-After)", _RETRY),
    Code.NOT_READY: Entry(503, "Readiness: the database or Redis is unreachable", {"checks": "object"}),
    Code.POSTS_NOT_OWNED: Entry(400, "Some `post_ids` are not the target's artworks (or are deleted); nothing changed", _IDS, host=HostCode.POSTS_NOT_OWNED),
    Code.POSTS_NOT_RESTORABLE: Entry(400, "Some `post_ids` are not the target's deleted artworks still in the restore window", _IDS),
    Code.POSTS_DELETED_BY_MODERATOR: Entry(400, "Some posts were deleted by a moderator: only a moderator restores them", _REFUSED),
    Code.TOO_MANY_TAGS: Entry(400, "The tags action would put too many tags on some posts", _REFUSED),
    Code.NO_DERIVATIVES_LICENSE: Entry(400, "Some posts have a NoDerivatives license, which forbids remixes", _REFUSED),
    Code.INVALID_TAGS: Entry(400, "The `tags` action's `add`/`remove` are empty, too long or overlap"),
    Code.VALUE_REQUIRED: Entry(400, "The `remixable` action needs `value`"),
    Code.UNKNOWN_LICENSE: Entry(400, "No license has this `license_id`"),
    Code.TOO_MANY_POSTS: Entry(400, "The filter matches more posts than one action changes", {"count": "integer", "limit": "integer"}),
    Code.COUNT_CHANGED: Entry(409, "The filter matches `count` posts now, not `expect_count`; nothing changed", _SET),
    Code.SET_CHANGED: Entry(409, "The filter matches other posts than `expect_digest` approved; nothing changed", _SET),
    Code.ARTWORK_REUPLOADED: Entry(409, "A restore names posts whose artwork another post now holds", _REFUSED),
    Code.RESTORE_INTERRUPTED: Entry(409, "An artwork was uploaded again while the restore ran; nothing changed: retry"),
    Code.INVALID_CURSOR: Entry(400, "`cursor` is not one this list returned for this filter and order"),
    Code.INVALID_SORT: Entry(400, "`sort` or `order` is not one the list takes"),
    Code.INVALID_FILTER: Entry(400, "A filter key's value is not valid"),
    Code.RATE_LIMITED: Entry(429, "Too many bulk actions in the last minute; see Retry-After", {"limit": "integer", "window_seconds": "integer", **_RETRY}),
    Code.ROW_BUDGET_EXCEEDED: Entry(429, "The action would change more posts than the minute's or hour's budget has left; nothing changed (see Retry-After)", {"limit": "integer", "window_seconds": "integer", "used": "integer", "requested": "integer", "scope": "string", **_RETRY}),
    Code.SITE_BUDGET_EXCEEDED: Entry(429, "The action would take the posts changed across the site in the last minute past the site's budget; nothing changed (see Retry-After)", {"limit": "integer", "window_seconds": "integer", "used": "integer", "requested": "integer", "scope": "string", **_RETRY}),
    Code.ACTION_NOT_FOUND: Entry(404, "No bulk action with this id is the caller's to undo"),
    Code.ALREADY_UNDONE: Entry(409, "The action was undone already"),
    Code.UNDO_EXPIRED: Entry(410, "The action is older than the undo window", {"hours": "integer"}),
    Code.UNDO_DROPPED: Entry(410, "The action's undo history was dropped to make room for newer actions of the same person", {"kept_history_bytes": "integer"}),
    Code.UNDO_HISTORY_MISSING: Entry(410, "The previous release recorded the action, and its history is gone"),
    Code.POLICIES_OFF: Entry(404, "Cleanup policies are turned off on this site (CLEANUP_POLICIES), or off until the service can read the host's posts.promoted_at"),
    Code.POLICY_NOT_FOUND: Entry(404, "No cleanup policy with this id is the target's"),
    Code.POLICY_OWNER_ONLY: Entry(403, "Only the owner creates, changes, runs or deletes a cleanup policy; a moderator may read and pause one"),
    Code.TOO_MANY_POLICIES: Entry(409, "The owner has as many cleanup policies as allowed", {"limit": "integer"}),
    Code.POLICY_WIDENS: Entry(409, "The change widens what a run would change, or turns `hide` into `delete`: send `expect_count` (the `count` now); nothing was saved", _SET),
    Code.POLICY_PAUSED_BY_MODERATOR: Entry(403, "A moderator paused the cleanup policy: only a moderator lifts that, and only a moderator pauses as one"),
    Code.POLICY_RUN_TIMEOUT: Entry(503, "The run took longer than a run may (a post it needed was locked, or the database was busy); nothing changed: run it again after Retry-After", _RETRY),
    Code.BDR_DAILY_LIMIT: Entry(429, "The day's download requests are used up; see Retry-After", {"limit": "integer", **_RETRY}, host=HostCode.BDR_DAILY_LIMIT),
    Code.BDR_DAILY_BYTES_LIMIT: Entry(429, "This download would take the day's bytes past the limit; see Retry-After", {"limit_bytes": "integer", **_RETRY}),
    Code.BDR_TOO_LARGE: Entry(400, "The artworks asked for are larger than one download holds", {"size_bytes": "integer", "limit_bytes": "integer"}),
    Code.BDR_REPEATED: Entry(409, "With `repeat: false`, a download of exactly these posts still serves: use it (nothing of the day's limit spent)", {"bdr_id": "string", "status": "string"}),
    Code.BDR_NOT_FOUND: Entry(404, "No download request with this id is the target's", host=HostCode.BDR_NOT_FOUND),
    Code.BDR_MADE_BY_MODERATOR: Entry(403, "A moderator asked for this download: only a moderator cancels or deletes it"),
    Code.BDR_NOT_READY: Entry(400, "The download is still pending or processing", {"status": "string"}, host=HostCode.BDR_NOT_READY),
    Code.BDR_NO_FILE: Entry(400, "The download failed or was cancelled: there is no file", {"status": "string"}, host=HostCode.BDR_NOT_READY),
    Code.BDR_EXPIRED: Entry(410, "The download expired or was removed, or its file is gone", host=HostCode.BDR_EXPIRED),
    Code.RANGE_NOT_SATISFIABLE: Entry(416, "The range asked for holds no byte of the ZIP", {"size_bytes": "integer"}),
    Code.PRECONDITION_FAILED: Entry(412, "If-Match or If-Unmodified-Since does not hold for the ZIP"),
    Code.TOO_MANY_DOWNLOADS: Entry(429, "Too many of the caller's downloads stream from this server; see Retry-After", {"limit": "integer", **_RETRY}),
    Code.TOO_MANY_STREAMS: Entry(429, "The caller has as many live streams open as it may; see Retry-After", {"limit": "integer", **_RETRY}),
    Code.EXPORT_OWNER_ONLY: Entry(403, "A full export is its owner's alone: a moderator's `target_sqid` is refused"),
    Code.INVALID_PART_SIZE: Entry(400, "`part_bytes` is outside the allowed range", {"min_part_bytes": "integer", "max_part_bytes": "integer"}),
    Code.INVALID_SINCE: Entry(400, "`since` names no ready export of the caller's to follow"),
    Code.INVALID_SCHEDULE: Entry(400, "`repeat_every_days`/`repeat_times` are not valid together"),
    Code.INVALID_LAYOUT: Entry(400, "`layout` is neither `bagit` nor `activitypub`"),
    Code.EXPORT_RUNNING: Entry(409, "An export is already running", {"export_id": "string", "progress": "object"}),
    Code.EXPORT_SCHEDULED: Entry(409, "A recurring export is already scheduled"),
    Code.EXPORT_COOLDOWN: Entry(429, "The next export can be asked for later; see Retry-After", _RETRY),
    Code.NOTHING_TO_EXPORT: Entry(422, "The caller has no artwork to export"),
    Code.EXPORT_NOT_FOUND: Entry(404, "No export with this id is the caller's"),
    Code.PART_NOT_FOUND: Entry(404, "The export has no part with this number"),
    Code.SCHEDULE_NOT_FOUND: Entry(404, "No recurring export is scheduled"),
    Code.PART_NOT_READY: Entry(409, "The part is still being built"),
    Code.PART_NO_FILE: Entry(409, "The part was never built (the export failed or was cancelled)"),
    Code.EXPORT_EXPIRED: Entry(410, "The export expired or was removed, or the part's file is gone", host=HostCode.BDR_EXPIRED),
    Code.USER_NOT_FOUND: Entry(None, "The account the download or export was for no longer exists", host=HostCode.USER_NOT_FOUND),
    Code.NO_POSTS: Entry(None, "None of the artworks could be added (deleted, moved, missing their file)", host=HostCode.NO_POSTS),
    Code.TOO_LARGE: Entry(None, "The download grew past the size one download may have", host=HostCode.INTERNAL),
    Code.UNEXPECTED: Entry(None, "An error nobody foresaw stopped it (a bug, logged): ask again", host=HostCode.INTERNAL),
    Code.INTERNAL: Entry(None, "A temporary failure on the server's side outlasted every retry: ask again", host=HostCode.INTERNAL),
}  # fmt: skip

if set(TABLE) != set(Code):  # at import: a member without its row would be undeclared
    raise RuntimeError(f"codes without a row: {sorted(set(Code) - set(TABLE))}")

PROBLEM_CODES = tuple(c for c in Code if TABLE[c].status is not None)
ITEM_CODES = tuple(c for c in Code if TABLE[c].status is None)
# Every `code` a problem may carry, in the table's order.
HOST_PROBLEM_CODES = tuple(dict.fromkeys(TABLE[c].code for c in PROBLEM_CODES))

# A failed item's `error_message`: one fixed sentence per `error_code`, never exception text.
ITEM_SENTENCES: dict[HostCode, str] = {
    HostCode.USER_NOT_FOUND: "The account this was requested for no longer exists.",
    HostCode.NO_POSTS: "None of the artworks could be added: each was deleted, moved to "
    "another account, or is missing its file.",
    HostCode.INTERNAL: "Something went wrong on our side while preparing it. Please ask again.",
}


@dataclass(frozen=True)
class ItemError:
    """What a failed item says: `error_code`, its sentence, and the finer `error_reason`."""

    code: HostCode
    message: str
    reason: Code


def item_error(stored: str | None) -> ItemError:
    """A failed row's error from its stored reason (none, or an unknown one: `internal`)."""
    reason = Code(stored) if stored in ITEM_CODES else Code.INTERNAL
    code = TABLE[reason].code
    return ItemError(code, ITEM_SENTENCES[code], reason)


DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
_BEGIN = "<!-- codes: generated by `python -m pmd_service.core.codes`; edit core/codes.py -->"
_END = "<!-- end of codes -->"


def rendered(text: str) -> str:
    """`text` (the page) with the generated part between its markers made current."""
    head, begin, rest = text.partition(_BEGIN)
    _, end, tail = rest.partition(_END)
    if not begin or not end:
        raise ValueError(f"{DOC.name} lacks the markers {_BEGIN!r} … {_END!r}")
    lines = [_BEGIN, "", "| `details.reason` | `code` | status | meaning | `details` |"]
    lines.append("|---|---|---|---|---|")
    for c in PROBLEM_CODES:
        e = TABLE[c]
        details = ", ".join(f"`{name}`" for name in e.details) or "—"
        lines.append(f"| `{c}` | `{e.code}` | {e.status} | {e.meaning} | {details} |")
    lines += [
        "",
        "A failed download's or export's `error_reason`, `error_code` and `error_message`:",
        "",
        "| `error_reason` | `error_code` | meaning | `error_message` |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{c}` | `{TABLE[c].code}` | {TABLE[c].meaning} | {ITEM_SENTENCES[TABLE[c].code]} |"
        for c in ITEM_CODES
    ]
    return head + "\n".join([*lines, "", _END]) + tail


def main(argv: list[str] | None = None) -> int:
    if not DOC.is_file():
        print(f"{DOC} is not there: run this from a checkout", file=sys.stderr)
        return 2
    return generated.main(
        "python -m pmd_service.core.codes",
        "Writes the codes table into docs/errors.md from core/codes.py.",
        DOC,
        lambda: rendered(DOC.read_text("utf-8")),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
