"""`python -m pmd_service check-host`: does the host's database give the service what it needs
(indexes, columns, privileges), read from the catalog alone? An older host is a note, no failure.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import asyncpg

from ..core.migrate import HOST_TABLES, STANDIN_COMMENT

if TYPE_CHECKING:
    from ..core.db import Conn

log = logging.getLogger(__name__)


# --- indexes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexNeed:
    table: str
    columns: tuple[str, ...]  # leading key columns, in order (a btree scans both ways)
    name: str  # of the recommended index
    why: str
    keys: str = ""  # the recommended index's key columns; empty: `columns`
    where: str | None = None  # the query's predicate, which the recommended index shares
    # Predicates of partial indexes that serve, as pg_get_expr prints them; a non-partial index
    # serves too unless `partial_only` (a count read from the index alone needs just its rows).
    serving_predicates: tuple[str, ...] = ()
    partial_only: bool = False

    @property
    def label(self) -> str:
        label = f"{self.table} ({', '.join(self.columns)})"
        return f"{label} WHERE {self.where}" if self.where else label

    def statement(self, schema: str) -> str:
        keys = self.keys or ", ".join(self.columns)
        where = f" WHERE {self.where}" if self.where else ""
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} "
            f"ON {quote_ident(schema)}.{self.table} ({keys}){where};"
        )


_LIVE_ARTWORKS = (
    # `kind` as the host has it (varchar), and as text.
    "(((kind)::text = 'artwork'::text) AND (NOT deleted_by_user))",
    "(((kind)::text = 'artwork'::text) AND (deleted_by_user = false))",
    "((kind = 'artwork'::text) AND (NOT deleted_by_user))",
    "((kind = 'artwork'::text) AND (deleted_by_user = false))",
)

# From the SQL of the posts' list and counts, the ZIPs' contents and the token's user.
NEEDED_INDEXES = (
    IndexNeed(
        "posts",
        ("owner_id", "created_at"),
        "pmd_posts_owner_live",
        "the live list, newest first, and its total, counted from this index alone (with an "
        "index of all the owner's posts the count reads each post)",
        "owner_id, created_at DESC, id DESC",
        "kind = 'artwork' AND NOT deleted_by_user",
        _LIVE_ARTWORKS,
        partial_only=True,
    ),
    IndexNeed(
        "posts",
        ("owner_id", "deleted_by_user_date"),
        "pmd_posts_owner_deleted",
        "the recently-deleted list and its restore window",
        "owner_id, deleted_by_user_date DESC, id DESC",
        "deleted_by_user",
        ("deleted_by_user", "(deleted_by_user = true)"),
    ),
    IndexNeed(
        "post_files",
        ("post_id",),
        "pmd_post_files_post",
        "each listed post's files, each ZIP's artwork files",
    ),
    IndexNeed(
        "comments",
        ("post_id",),
        "pmd_comments_post",
        "comment counts, comments.json",
        "post_id, created_at",
    ),
    IndexNeed("reactions", ("post_id",), "pmd_reactions_post", "reaction counts, reactions.json"),
    IndexNeed(
        "users",
        ("public_sqid",),
        "pmd_users_public_sqid",
        "every request: the token's user, by `sub`",
    ),
    IndexNeed(
        "users",
        ("user_key",),
        "pmd_users_user_key",
        "the host's older tokens, by their legacy `user_id`",
    ),
)


# --- columns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeFamily:
    label: str  # for the report
    names: frozenset[str]  # pg_type.typname


INT = TypeFamily("integer or bigint", frozenset({"int4", "int8"}))
TEXT = TypeFamily("varchar or text", frozenset({"varchar", "text"}))
TEXT_ARRAY = TypeFamily("varchar[] or text[]", frozenset({"_varchar", "_text"}))
BOOL = TypeFamily("boolean", frozenset({"bool"}))
# Not `timestamp`: asyncpg returns naive datetimes for it, which the cursors cannot compare.
TIME = TypeFamily("timestamp with time zone", frozenset({"timestamptz"}))
JSON = TypeFamily("json or jsonb", frozenset({"json", "jsonb"}))
UUID = TypeFamily("uuid", frozenset({"uuid"}))

# "set": the service reads a value in every row (NULL would break a reply or hide a row);
# "cleared": the service writes NULL into it; "any": either.
Null = Literal["any", "set", "cleared"]


@dataclass(frozen=True)
class ColumnNeed:
    column: str
    family: TypeFamily
    null: Null = "any"
    why: str = ""
    table: str = ""
    rights: str = "SELECT"  # or "UPDATE", "INSERT": written only (UPDATES: what else is written)

    @property
    def newer(self) -> bool:
        """Of the host's newer releases: an older host lacks it, and that fits."""
        return f"{self.table}.{self.column}" in NEWER_COLUMNS


_col = ColumnNeed


def _table(table: str, why: str, *columns: ColumnNeed) -> tuple[ColumnNeed, ...]:
    return tuple(replace(c, table=table, why=c.why or why) for c in columns)


# Every host column the package's SQL names (a test prepares each statement against them).
NEEDED_COLUMNS = (
    *_table(
        "users",
        "read on every request: the token's user",
        _col("id", INT, "set"),
        _col("user_key", UUID),
        _col("public_sqid", TEXT),
        _col("handle", TEXT, "set"),
        _col("avatar_url", TEXT, "any", "a mention carries its account's avatar"),
        _col("bio", TEXT, why="an archive's actor.json carries it as the summary"),
        _col("email", TEXT, "set", "BDR emails go to it"),
        _col("roles", JSON),
        _col("deactivated", BOOL),
        _col("banned_until", TIME),
        _col("locale", TEXT, why="the emails' language (without it, English)"),
    ),
    *_table(
        "posts",
        "listed, checked and changed by the dashboard",
        _col("id", INT, "set"),
        _col("owner_id", INT, "set"),
        _col("kind", TEXT, "set"),
        _col("public_sqid", TEXT),
        _col("title", TEXT, "set"),
        _col("description", TEXT),
        _col("created_at", TIME, "set"),
        _col("width", INT),
        _col("height", INT),
        _col("frame_count", INT, "set"),
        _col("art_url", TEXT),
        _col("hidden_by_user", BOOL, "set"),
        _col("hidden_by_mod", BOOL, "set"),
        _col("deleted_by_user", BOOL, "set"),
        _col("deleted_by_user_date", TIME, "cleared", "delete sets it, restore clears it"),
        _col("view_count", INT, "set"),
        _col("license_id", INT, "cleared", "the license action sets or clears it"),
        _col("updated_at", TIME, why="the service sets it on every change", rights="UPDATE"),
        _col(
            "metadata_modified_at",
            TIME,
            "set",
            "every change bumps it: the players sync on it",
        ),
        _col("remixable", BOOL, "set", "a NoDerivatives license turns it off (rule L5)"),
        _col(
            "mod_hashtags",
            TEXT_ARRAY,
            "set",
            "a moderator's tags, kept by the tags action",
        ),
        _col(
            "mkpx_file_bytes", INT, why="the layers filter, items' layers_bytes, the .mkpx in ZIPs"
        ),
        _col(
            "artwork_modified_at", TIME, why="an incremental export takes the posts changed since"
        ),
        _col("mkpx_attached_at", TIME, why="an incremental export takes layers attached since"),
        _col("hashtags", TEXT_ARRAY, why="metadata.json"),
        _col(
            "hash",
            TEXT,
            why="a deleted post whose artwork a live post holds (the host's "
            "uq_posts_hash_active) cannot be restored",
        ),
        _col("storage_shard", TEXT, why="where the worker finds the artwork file"),
        _col("storage_key", UUID, "set", "where the worker finds the artwork file"),
        _col("promoted_at", TIME, why="every cleanup policy keeps what the site promoted"),
    ),
    *_table(
        "post_files",
        "each post's files",
        _col("post_id", INT, "set"),
        _col("format", TEXT, "set"),
        _col("file_bytes", INT, "set"),
        _col("is_native", BOOL, "set"),
    ),
    *_table(
        "licenses",
        "the license action and the listed posts' license",
        _col("id", INT, "set"),
        _col("identifier", TEXT, "set"),
        _col("title", TEXT, "set"),
    ),
    *_table(
        "comments",
        "comment counts, comments.json",
        _col("id", UUID, "set"),
        _col("post_id", INT, "set"),
        _col("author_id", INT),
        _col("parent_id", UUID),
        _col("body", TEXT, "set"),
        _col("created_at", TIME, "set"),
        _col("hidden_by_mod", BOOL, "set"),
        _col("deleted_by_owner", BOOL, "set"),
        _col("deleted_by_mod", BOOL, "set"),
    ),
    *_table(
        "reactions",
        "reaction counts, reactions.json",
        _col("post_id", INT, "set"),
        _col("emoji", TEXT, "set"),
    ),
    *_table(
        "audit_logs",
        "written for every moderator's batch",
        _col("id", UUID, rights="INSERT"),
        _col("actor_id", INT, rights="INSERT"),
        _col("action", TEXT, rights="INSERT"),
        _col("target_type", TEXT, rights="INSERT"),
        _col("target_id", TEXT, rights="INSERT"),
        _col("note", TEXT, rights="INSERT"),
    ),
)

# The columns each INSERT of the service names: any other NOT NULL column without a default
# makes the insert fail.
INSERTED = {"audit_logs": frozenset(c.column for c in NEEDED_COLUMNS if c.rights == "INSERT")}
# What the bulk actions and their undos write (a test holds it equal to the actions' records).
UPDATES: dict[str, tuple[str, ...]] = {
    "posts": (
        "hidden_by_user",
        "hidden_by_mod",
        "deleted_by_user",
        "deleted_by_user_date",
        "license_id",
        "updated_at",
        "metadata_modified_at",
        "remixable",
        "hashtags",
        "mod_hashtags",
    ),
}
# `import-host-bdrs` only: the host's own PMD table, read once at cut-over.
CUTOVER_READS: dict[str, tuple[str, ...]] = {
    "batch_download_requests": (
        "id",
        "user_id",
        "post_ids",
        "include_comments",
        "include_reactions",
        "send_email",
        "status",
        "file_path",
        "file_size_bytes",
        "artwork_count",
        "created_at",
        "started_at",
        "completed_at",
        "expires_at",
    ),
}


# --- the host's revisions ------------------------------------------------------------------


@dataclass(frozen=True)
class HostRevision:
    revision: str  # the host's alembic revision (api/alembic/versions/<revision>_*.py)
    date: str
    adds: tuple[str, ...] = ()  # the columns it adds to the host tables the service touches
    feature: str = ""  # the host's, that the columns serve
    without: str = ""  # what the service does on a host without them ("": it never uses them)


# The host's revision at commit 4350ab8, the release the service was first fitted to.
FITTED = HostRevision("d4e5f6a7b8c9", "2026-08-14")
FITTED_COMMIT = "4350ab8"
# Every revision since, oldest first: the service runs on a host at any of them.
HOST_REVISIONS = (
    HostRevision("a1b2c3d4e5f6", "2026-08-27", ("users.webauthn_user_handle",), "passkeys"),
    HostRevision("b2c3d4e5f6a7", "2026-09-02"),  # social_notifications only
    HostRevision("c3d4e5f6a7b8", "2026-09-09"),  # rows of view_events only
    HostRevision("e5f6a7b8c9d0", "2026-09-12", ("posts.promoted_at",), "the promoted feed's order"),
    HostRevision("f7a8b9c0d1e2", "2026-09-22", ("users.mention_policy",), "who may mention whom"),
    HostRevision(
        "a8b9c0d1e2f3",
        "2026-10-02",
        ("posts.listed_at", "posts.pending_listing"),
        "the feeds' order and pending listings",
    ),
    HostRevision(
        "d3e4f5a6b7c8",
        "2026-10-05",
        ("users.locale",),
        "the person's language",
        "emails go out in English",
    ),
)
HOST_HEAD = HOST_REVISIONS[-1]
# Columns an older host lacks: a NEEDED_COLUMNS entry among them missing is no column problem.
NEWER_COLUMNS = frozenset(column for rev in HOST_REVISIONS for column in rev.adds)


@dataclass(frozen=True)
class HostHead:
    """Which of the host's revisions the database is at, and what it lacks of the newest."""

    recorded: list[str] | None  # alembic_version's rows; None: no such table, or not readable
    unreadable: bool  # alembic_version is there, but the role may not read it
    from_columns: HostRevision | None  # the newest revision whose columns are all there
    lacking: list[str]  # the newest head's columns it lacks, "table.column", oldest first

    def lines(self) -> list[str]:
        lines = [
            f"The host's schema, against its newest head {HOST_HEAD.revision} "
            f"({HOST_HEAD.date}) that this release knows:"
        ]
        if self.recorded is not None:
            lines.append(
                f"  alembic_version: {', '.join(self.recorded) or 'empty'}{_known(self.recorded)}"
            )
        elif self.unreadable:
            lines.append(
                "  alembic_version: not readable by this role (the service needs no "
                "right on it); from the columns instead"
            )
        else:
            lines.append("  alembic_version: no such table; from the columns instead")
        lines.append(f"  its columns show: {self.shown()}")
        if self.lacking:
            lines.append(
                "  the service still works (lists, actions, undo, downloads, exports): "
                + self.consequences()
            )
        return lines

    def shown(self) -> str:
        if not self.lacking:
            return f"{HOST_HEAD.revision} (every column of the newest head)"
        at = self.from_columns
        if at is None:
            at_text = f"host at {FITTED_COMMIT} ({FITTED.revision}) or older"
        else:
            # Revisions that add no column seen here look like the one before them.
            later = HOST_REVISIONS[HOST_REVISIONS.index(at) + 1 :]
            silent = [r.revision for r in itertools.takewhile(lambda r: not r.adds, later)]
            at_text = f"host at {at.revision}" + (f" to {silent[-1]}" if silent else "")
        return f"{at_text}: no {', '.join(self.lacking)}"

    def consequences(self) -> str:
        lacked = [r for r in HOST_REVISIONS if any(c in self.lacking for c in r.adds)]
        parts = [
            f"{r.without} (no {', '.join(c for c in r.adds if c in self.lacking)})"
            for r in lacked
            if r.without
        ]
        if others := [r.feature for r in lacked if not r.without]:
            parts.append(
                f"the rest is the host's own, which the service neither reads nor "
                f"writes ({', '.join(others)})"
            )
        return "; ".join(parts)


def _known(recorded: list[str]) -> str:
    dates = {r.revision: r.date for r in (FITTED, *HOST_REVISIONS)}
    if recorded == [HOST_HEAD.revision]:
        return " (the newest head)"
    if len(recorded) == 1 and recorded[0] in dates:
        return f" ({dates[recorded[0]]})"
    return (
        f" (not a revision this release lists: older than {FITTED.revision}, or newer than "
        f"{HOST_HEAD.revision}; the columns below tell what it has)"
    )


# --- reading the catalog -------------------------------------------------------------------

SQL_COLUMNS = """
SELECT c.relname AS table, a.attname AS column, t.typname AS type,
       format_type(a.atttypid, a.atttypmod) AS type_shown, a.attnotnull AS not_null,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' AS filled
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
"""
# Every index on the tables with its key columns in order; a key column is NULL where it is an
# expression or has another collation than the column's (no use to the service's queries).
SQL_INDEXES = """
SELECT c.relname AS table, i.relname AS index,
       x.indisvalid AND x.indisready AND am.amname = 'btree' AND x.indexprs IS NULL AS usable,
       array(SELECT CASE WHEN x.indcollation[k.o - 1] = a.attcollation THEN a.attname END
             FROM unnest(x.indkey[0:x.indnkeyatts - 1]) WITH ORDINALITY AS k(n, o)
             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n
             ORDER BY k.o) AS columns,
       pg_get_expr(x.indpred, x.indrelid) AS predicate
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = i.relam
WHERE n.nspname = $1 AND c.relname = ANY($2::text[])
"""


# The host's alembic version table, when the role may read it (`grants` gives no right on it).
SQL_ALEMBIC = """
SELECT c.oid IS NOT NULL AS present,
       c.oid IS NOT NULL AND has_table_privilege(c.oid, 'SELECT') AS readable
FROM (SELECT 1) AS one
LEFT JOIN pg_class c ON c.relname = 'alembic_version' AND c.relkind IN ('r', 'p')
    AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
"""
SQL_ALEMBIC_ROWS = "SELECT version_num::text FROM {schema}.alembic_version ORDER BY 1"

SQL_STANDINS = """
SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND obj_description(c.oid, 'pg_class') = $3
"""
# The roles the connected role may act as: every role it is a member of, with INHERIT or
# without, since a member may `SET ROLE` to any of them and use its rights.
_REACH = "SELECT r.oid FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER')"
SQL_ROLES = """
SELECT r.rolname::text AS name, r.rolname = current_user AS self, r.rolsuper,
       r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls
FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER')
ORDER BY r.rolname <> current_user, r.rolname
"""
SQL_SCHEMA = f"""
SELECT coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
       coalesce(bool_or(has_schema_privilege(reach.oid, n.oid, 'CREATE')), false) AS can_create
FROM (SELECT 1) AS one
LEFT JOIN pg_namespace n ON n.nspname = $1
LEFT JOIN ({_REACH}) AS reach ON true
GROUP BY n.oid
"""
# What any of those roles owns: the database, the host schema, and what is in it.
SQL_OWNED = """
SELECT o.kind, o.name, pg_get_userbyid(o.owner)::text AS owner
FROM (
    SELECT 'database' AS kind, d.datname::text AS name, d.datdba AS owner
    FROM pg_database d WHERE d.datname = current_database()
  UNION ALL
    SELECT 'schema', n.nspname::text, n.nspowner FROM pg_namespace n WHERE n.nspname = $1
  UNION ALL
    SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, c.relname::text,
           c.relowner
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  UNION ALL
    SELECT 'function', p.oid::regprocedure::text, p.proowner
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
) AS o
WHERE pg_has_role(o.owner, 'MEMBER')
ORDER BY o.owner, o.kind, o.name
"""
# Each host table: what the connected role holds itself and what it may reach (`reachable_…`).
_COLUMN_PRIVILEGES = """
array(SELECT p || ' ' || a.attname
      FROM pg_attribute a, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) AS p
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND {held}
      ORDER BY a.attnum)
"""
_HELD = "has_column_privilege(c.oid, a.attnum, p)"
_REACHABLE = f"""EXISTS (SELECT 1 FROM ({_REACH}) AS reach
                    WHERE has_column_privilege(reach.oid, c.oid, a.attnum, p))"""
SQL_PRIVILEGES = f"""
SELECT c.relname AS table,
       array(SELECT p FROM unnest($2::text[]) AS p
             WHERE EXISTS (SELECT 1 FROM ({_REACH}) AS reach
                           WHERE has_table_privilege(reach.oid, c.oid, p))) AS table_privileges,
       {_COLUMN_PRIVILEGES.format(held=_HELD)} AS column_privileges,
       {_COLUMN_PRIVILEGES.format(held=_REACHABLE)} AS reachable_column_privileges
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY c.relname
"""
SQL_SEQUENCES = f"""
SELECT c.relname AS sequence,
       array(SELECT p FROM unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p
             WHERE EXISTS (SELECT 1 FROM ({_REACH}) AS reach
                           WHERE has_sequence_privilege(reach.oid, c.oid, p))) AS privileges
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind = 'S'
ORDER BY c.relname
"""
# Table privileges the service never needs, each of which lets the role damage a host table.
TABLE_PRIVILEGES = ("DELETE", "TRUNCATE", "TRIGGER")
MAINTAIN_SINCE = 17  # PostgreSQL's major version that knows MAINTAIN

# What a role's attributes let whoever may act as it do.
ATTRIBUTES = (
    (
        "rolcreaterole",
        "CREATEROLE",
        "it may create roles, and before PostgreSQL 16 grant itself "
        "any role that is not a superuser, the host tables' owner included",
    ),
    ("rolcreatedb", "CREATEDB", "it may create databases"),
    ("rolreplication", "REPLICATION", "it may stream every row of the database out"),
    ("rolbypassrls", "BYPASSRLS", "it is exempt from every row-level security policy"),
)
# Predefined roles whose members may take over, or read all of, the database or its server.
PREDEFINED_ROLES = {
    "pg_read_all_data": "it may read every table, the host's credentials too",
    "pg_write_all_data": "it may write, delete and empty every table",
    "pg_execute_server_program": "it may run programs on the database server (COPY … PROGRAM)",
    "pg_read_server_files": "it may read the database server's files",
    "pg_write_server_files": "it may write the database server's files",
    "pg_signal_backend": "it may cancel and end the host's sessions",
    "pg_maintain": "it may lock, vacuum, cluster and reindex every table",
    "pg_create_subscription": "it may create subscriptions that write into the database",
}
# Implied by owning the database, which is reported as such.
_IMPLICIT_ROLES = frozenset({"pg_database_owner"})
FIX = (
    "as an admin, run the output of `python -m pmd_service grants --role {role}` again: it resets "
    "the role's attributes and takes back its memberships and its rights beyond need (an "
    "ownership stays: give the object to another role, ALTER … OWNER TO)"
)
# For a superuser or the host's own role, since REVOKEs would take the host's own rights away.
OWN_ROLE = (
    "role {role} {why}: it is not a role for the service, and `grants --role {role}` refuses it "
    "(its REVOKEs would take the role's own rights away). As an admin, make the service a role "
    "of its own with the output of `python -m pmd_service grants --role pmd`, and give the "
    "service that role in DATABASE_URL"
)


@dataclass
class Privileges:
    role: str
    superuser: bool
    owned: list[str] = field(default_factory=list)  # host tables it may act as the owner of
    unsafe: list[str] = field(default_factory=list)  # what fails check-host
    missing: list[str] = field(default_factory=list)  # "posts.title: no SELECT privilege"
    beyond: list[str] = field(default_factory=list)  # reads beyond need, harmless memberships
    not_a_service_role: str | None = None  # why `grants --role` cannot put the role right

    def lines(self) -> list[str]:
        lines = [f"  UNSAFE   {u}" for u in self.unsafe]
        if self.not_a_service_role:
            advice = OWN_ROLE.format(role=self.role, why=self.not_a_service_role)
            lines.append(f"  to fix:  {advice}")
        elif self.unsafe:
            lines.append(f"  to fix:  {FIX.format(role=self.role)}")
        lines += [f"  MISSING  {m}" for m in self.missing]
        lines += [f"  beyond need  {b}" for b in self.beyond]
        if not lines:
            lines.append(f"  ok       role {self.role} holds exactly what the service needs")
        return lines


def _shown(columns: list[str], most: int = 6) -> str:
    shown = ", ".join(columns[:most])
    return shown + (f" (+{len(columns) - most} more)" if len(columns) > most else "")


def _as(role: str, other: str) -> str:
    """Who holds something: the role itself, or a role it may act as."""
    if other == role:
        return f"role {role}"
    return f"role {role} may act as role {other} (a member: SET ROLE needs no INHERIT), which"


async def read_privileges(
    conn: Conn, host_schema: str, absent: frozenset[tuple[str, str]]
) -> Privileges:
    """`absent`: the newer columns the host lacks (no privilege on them is needed)."""
    roles = await conn.fetch(SQL_ROLES)
    me = roles[0]  # the connected role comes first
    name = me["name"]
    # A superuser is a member of every role: only its own line.
    supers = [name] if me["rolsuper"] else [r["name"] for r in roles if r["rolsuper"]]
    found = Privileges(name, bool(supers))
    if me["rolsuper"]:
        found.not_a_service_role = "is a superuser"
    found.unsafe += [
        f"{_as(name, other)} is a superuser: it may alter, drop or empty any host table"
        for other in supers
    ]
    if not found.superuser:
        await _read_reach(conn, host_schema, found, roles)
    schema = await conn.fetchrow(SQL_SCHEMA, host_schema)
    assert schema is not None
    if not schema["usage"]:
        found.missing.append(f"schema {host_schema}: no USAGE privilege")
    if schema["can_create"] and not found.superuser:
        found.unsafe.append(
            f"schema {host_schema}: CREATE: a table or function the role creates there may take "
            "the place of one the host's queries name (CVE-2018-1058)"
        )
    await _read_tables(conn, host_schema, found, absent)
    return found


async def _read_reach(
    conn: Conn, host_schema: str, found: Privileges, roles: list[asyncpg.Record]
) -> None:
    """Attributes, memberships and ownerships of every role the connected role may act as."""
    name = found.role
    owners: dict[str, dict[str, list[str]]] = {}
    for row in await conn.fetch(SQL_OWNED, host_schema):
        owners.setdefault(row["owner"], {}).setdefault(row["kind"], []).append(row["name"])
        if row["owner"] == name:
            found.not_a_service_role = "owns host objects (the host's own role)"
        if row["kind"] == "table":
            found.owned.append(row["name"])
    for role in roles:
        other = role["name"]
        unsafe = [f"{_as(name, other)} has {a}: {power}" for c, a, power in ATTRIBUTES if role[c]]
        if other in PREDEFINED_ROLES:
            unsafe.append(
                f"role {name} may act as role {other} (a member: SET ROLE needs no INHERIT): "
                f"{PREDEFINED_ROLES[other]}"
            )
        if other in owners:
            unsafe.append(
                f"{_as(name, other)} owns {_things(owners[other])}: an owner may alter or drop "
                "them, and grant itself any right on them"
            )
        found.unsafe += unsafe
        if not (unsafe or role["self"] or other in _IMPLICIT_ROLES):
            found.beyond.append(
                f"member of role {other}: the service needs no other role's rights "
                "(`grants` takes the membership back)"
            )


def _things(owned: dict[str, list[str]]) -> str:
    kinds = {
        "database": "the database",
        "schema": "schema",
        "table": "host tables",
        "sequence": "sequences",
        "function": "functions",
    }
    return "; ".join(f"{kinds[kind]} {_shown(owned[kind])}" for kind in kinds if kind in owned)


async def _read_tables(
    conn: Conn, host_schema: str, found: Privileges, absent: frozenset[tuple[str, str]]
) -> None:
    table_privileges = [*TABLE_PRIVILEGES]
    if conn.get_server_version().major >= MAINTAIN_SINCE:
        table_privileges.append("MAINTAIN")
    need = needed(absent)
    for row in await conn.fetch(SQL_PRIVILEGES, host_schema, table_privileges):
        table = row["table"]
        held = _by_privilege(row["column_privileges"])
        for privilege in ("SELECT", "UPDATE", "INSERT"):
            lacking = need.get((table, privilege), frozenset()) - set(held.get(privilege, ()))
            found.missing += [f"{table}.{c}: no {privilege} privilege" for c in sorted(lacking)]
        if found.superuser or table in found.owned:
            continue  # they hold everything: a line above says so
        reachable = _by_privilege(row["reachable_column_privileges"])
        writes = list(row["table_privileges"])
        for privilege in ("INSERT", "UPDATE", "REFERENCES"):
            if more := _beyond(reachable, need, table, privilege):
                writes.append(f"{privilege} on {_shown(more)}")
        if writes:
            found.unsafe.append(f"{table}: {'; '.join(writes)} (the service needs none of these)")
        if reads := _beyond(reachable, need, table, "SELECT"):
            line = f"{table}: SELECT on {_shown(reads)}"
            if set(reads) <= set(CUTOVER_READS.get(table, ())):
                line += " (`grants --cutover`, for import-host-bdrs: revoke after the cut-over)"
            found.beyond.append(line)
    if found.superuser:
        return
    for row in await conn.fetch(SQL_SEQUENCES, host_schema):
        privileges = list(row["privileges"])
        if "UPDATE" in privileges:
            found.unsafe.append(
                f"sequence {row['sequence']}: UPDATE: setval() may make the host's inserts "
                "collide with its rows"
            )
            privileges.remove("UPDATE")
        if privileges:
            found.beyond.append(f"sequence {row['sequence']}: {', '.join(privileges)}")


def needed(absent: frozenset[tuple[str, str]]) -> dict[tuple[str, str], frozenset[str]]:
    """(table, privilege) -> columns the service needs; `absent`: newer columns the host lacks."""
    out: dict[tuple[str, str], set[str]] = {}
    for c in NEEDED_COLUMNS:
        if (c.table, c.column) not in absent and c.rights != "UPDATE":
            out.setdefault((c.table, c.rights), set()).add(c.column)
    for table, columns in UPDATES.items():
        out.setdefault((table, "UPDATE"), set()).update(columns)
    return {key: frozenset(columns) for key, columns in out.items()}


def _by_privilege(entries: list[str]) -> dict[str, list[str]]:
    held: dict[str, list[str]] = {}
    for entry in entries:
        privilege, column = entry.split(" ", 1)
        held.setdefault(privilege, []).append(column)
    return held


def _beyond(
    held: dict[str, list[str]],
    need: dict[tuple[str, str], frozenset[str]],
    table: str,
    privilege: str,
) -> list[str]:
    return [c for c in held.get(privilege, ()) if c not in need.get((table, privilege), ())]


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexFound:
    need: IndexNeed
    covered_by: str | None  # an existing index that serves the need (the narrowest)
    # One under the recommended name that does not serve (a failed CONCURRENTLY): dropped first.
    in_the_way: str | None = None

    def statements(self, schema: str) -> list[str]:
        if self.covered_by is not None:
            return []
        drop = f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(schema)}.{self.need.name};"
        create = self.need.statement(schema)
        return [drop, create] if self.in_the_way else [create]


@dataclass
class HostReport:
    schema: str
    indexes: list[IndexFound] = field(default_factory=list)
    column_problems: list[str] = field(default_factory=list)
    standins: list[str] = field(default_factory=list)  # host tables the service created
    dev_database: bool = False  # stand-ins and an admin role accepted
    privileges: Privileges | None = None
    judge_role: bool = False  # `--dev-database --privileges`: the role judged as on the host's
    head: HostHead | None = None

    @property
    def refused_standins(self) -> bool:
        return bool(self.standins) and not self.dev_database

    @property
    def fits(self) -> bool:
        return (
            not missing_indexes(self)
            and not self.column_problems
            and not self.refused_standins
            and not (self.privileges and self.privileges.missing)
            and not (
                self.privileges
                and self.privileges.unsafe
                and (self.judge_role or not self.dev_database)
            )
        )

    def statements(self) -> list[str]:
        return [s for found in self.indexes for s in found.statements(self.schema)]

    def render(self) -> str:
        lines = []
        if self.refused_standins:
            lines.append(
                f"NOT THE HOST'S: {', '.join(self.standins)} in schema {self.schema} are stand-ins "
                "the service created (`migrate --with-host-tables`); is DATABASE_URL the host's "
                "database? (--dev-database accepts them)"
            )
        if self.head is not None and not self.standins:  # stand-ins are at no host revision
            lines += self.head.lines()
        lines += [
            f"Indexes the service's queries need on the host's tables (schema {self.schema}), "
            "compared by definition whatever their names:"
        ]
        lines += [_index_line(found) for found in self.indexes]
        if self.column_problems:
            lines.append("Host columns the service reads or writes that do not fit:")
            lines += [f"  {problem}" for problem in self.column_problems]
        else:
            lines.append(f"Host columns the service reads or writes: all {len(NEEDED_COLUMNS)} fit")
        if self.privileges is not None:
            lines.append(
                f"Privileges of role {self.privileges.role} on the host's tables, against what the "
                "service needs (`python -m pmd_service grants`):"
            )
            lines += self.privileges.lines()
        if missing_indexes(self):
            lines.append(
                "Create the missing indexes when convenient: CONCURRENTLY takes no write lock; "
                "run each statement on its own, outside a transaction (psql does):"
            )
            lines += self.statements()
        return "\n".join(lines)


def _index_line(found: IndexFound) -> str:
    if found.covered_by is not None:
        return f"  ok       {found.need.label}: served by {found.covered_by} ({found.need.why})"
    line = f"  MISSING  {found.need.label} ({found.need.why})"
    if found.in_the_way:
        line += f"; {found.in_the_way} exists but does not serve it (invalid, or another shape)"
    return line


def missing_indexes(report: HostReport) -> list[IndexNeed]:
    return [found.need for found in report.indexes if found.covered_by is None]


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted: safe for any name, in the statements printed."""
    return '"' + name.replace('"', '""') + '"'


async def check_host(
    conn: Conn, host_schema: str, *, dev_database: bool = False, privileges: bool = False
) -> HostReport:
    """`dev_database`: stand-in host tables pass; `privileges`: judge the role's privileges too."""
    indexes = await conn.fetch(SQL_INDEXES, host_schema, HOST_TABLES)
    columns = await conn.fetch(SQL_COLUMNS, host_schema, HOST_TABLES)
    found = {(r["table"], r["column"]): r for r in columns}
    absent = frozenset(
        (c.table, c.column) for c in NEEDED_COLUMNS if c.newer and (c.table, c.column) not in found
    )
    return HostReport(
        host_schema,
        [_index_found(need, indexes) for need in NEEDED_INDEXES],
        _column_problems(host_schema, found),
        standins=await conn.fetchval(SQL_STANDINS, host_schema, HOST_TABLES, STANDIN_COMMENT),
        dev_database=dev_database,
        privileges=await read_privileges(conn, host_schema, absent) if privileges else None,
        head=await read_head(conn, host_schema, {f"{t}.{c}" for t, c in found}),
    )


async def read_head(conn: Conn, host_schema: str, present: set[str]) -> HostHead:
    """The host's revision: alembic_version's rows if readable, and what columns `present` show."""
    # The newest revision adding columns whose columns, and its predecessors', are present.
    complete = itertools.takewhile(lambda r: all(c in present for c in r.adds), HOST_REVISIONS)
    at = next((r for r in reversed(list(complete)) if r.adds), None)
    lacking = [c for rev in HOST_REVISIONS for c in rev.adds if c not in present]
    table = await conn.fetchrow(SQL_ALEMBIC, host_schema)
    assert table is not None
    recorded = None
    if table["readable"]:
        sql = SQL_ALEMBIC_ROWS.format(schema=quote_ident(host_schema))
        recorded = [row[0] for row in await conn.fetch(sql)]
    return HostHead(recorded, table["present"] and not table["readable"], at, lacking)


def serves(need: IndexNeed, columns: list[str | None], predicate: str | None) -> bool:
    """Whether a usable btree index with these key columns and predicate serves `need`."""
    # A partial index serves only queries within its own predicate.
    fits = not need.partial_only if predicate is None else predicate in need.serving_predicates
    return fits and tuple(columns[: len(need.columns)]) == need.columns


def _index_found(need: IndexNeed, indexes: list[asyncpg.Record]) -> IndexFound:
    # The narrowest first (fewest key columns), then by name: stable from run to run.
    serving = sorted(
        (len(r["columns"]), r["index"])
        for r in indexes
        if r["table"] == need.table
        and r["usable"]
        and serves(need, list(r["columns"]), r["predicate"])
    )
    if serving:
        return IndexFound(need, serving[0][1])
    in_the_way = next((r["index"] for r in indexes if r["index"] == need.name), None)
    return IndexFound(need, None, in_the_way)


def _column_problems(schema: str, found: dict[tuple[str, str], asyncpg.Record]) -> list[str]:
    present = {table for table, _ in found}
    problems = [f"{t}: no such table in schema {schema}" for t in HOST_TABLES if t not in present]
    for need in NEEDED_COLUMNS:
        row = found.get((need.table, need.column))
        if row is None and need.newer:
            continue  # an older host's: the head's report names it and what the service does
        if need.table in present and (problem := _column_problem(need, row)):
            problems.append(f"{need.table}.{need.column}: {problem}")
    for (table, column), row in sorted(found.items()):
        named = INSERTED.get(table)
        if named is not None and column not in named and row["not_null"] and not row["filled"]:
            problems.append(
                f"{table}.{column}: NOT NULL without a default, and the service's inserts do "
                "not name it"
            )
    return problems


def _column_problem(need: ColumnNeed, row: asyncpg.Record | None) -> str | None:
    if row is None:
        return f"missing ({need.why})"
    if row["type"] not in need.family.names:
        return f"type {row['type_shown']}, expected {need.family.label}"
    if need.null == "set" and not row["not_null"]:
        return f"nullable, expected NOT NULL (the service reads a value in every row: {need.why})"
    if need.null == "cleared" and row["not_null"]:
        return f"NOT NULL, expected nullable (the service writes NULL into it: {need.why})"
    return None


async def warn_if_host_lacks(conn: Conn, host_schema: str) -> None:
    """At start: one warning line when an index or column does not fit; never a failure."""
    try:
        report = await check_host(conn, host_schema, dev_database=True)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("could not check the host's tables in schema %s (%s)", host_schema, exc)
        return
    if report.head is not None and report.head.lacking and not report.standins:
        log.info(
            "the host's database (schema %s) is older than its head %s (%s); %s",
            host_schema,
            HOST_HEAD.revision,
            report.head.shown(),
            report.head.consequences(),
        )
    if not report.fits:
        missing = missing_indexes(report)
        parts = ["missing indexes: " + ", ".join(n.label for n in missing)] if missing else []
        if report.column_problems:
            parts.append("columns: " + "; ".join(report.column_problems))
        log.warning(
            "the host's database (schema %s) lacks what the service relies on: %s; "
            "run `python -m pmd_service check-host` for the details and the "
            "CREATE INDEX CONCURRENTLY statements",
            host_schema,
            "; ".join(parts),
        )
