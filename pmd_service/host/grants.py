"""`python -m pmd_service grants --role NAME`: the SQL a host admin runs to give the service a
least-privilege role, with exactly the host columns check-host's lists name, taking back
anything given by hand since; a superuser or host owner is refused.
"""

from __future__ import annotations

import re

from ..core.db import IDLE_IN_TRANSACTION_SECONDS
from .hostcheck import CUTOVER_READS, NEEDED_COLUMNS
from .hostcheck import UPDATES as UPDATES


def _columns(rights: str, *, newer: bool = False) -> dict[str, tuple[str, ...]]:
    """check-host's columns the service needs `rights` on, per host table."""
    out: dict[str, tuple[str, ...]] = {}
    for c in NEEDED_COLUMNS:
        if c.rights == rights and c.newer == newer:
            out[c.table] = (*out.get(c.table, ()), c.column)
    return out


READS = _columns("SELECT")
# Columns of the host's newer releases the service reads when there, granted only where they are.
NEWER_READS = _columns("SELECT", newer=True)
INSERTS = _columns("INSERT")

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# The role's attributes: none beyond LOGIN (pg_roles column, and the keyword resetting it).
_RESETS = (
    ("rolsuper", "NOSUPERUSER"),
    ("rolcreatedb", "NOCREATEDB"),
    ("rolcreaterole", "NOCREATEROLE"),
    ("rolinherit", "NOINHERIT"),
    ("rolreplication", "NOREPLICATION"),
    ("rolbypassrls", "NOBYPASSRLS"),
    ("rolcanlogin", "LOGIN"),
)
_ATTRIBUTES = " ".join(reset for _, reset in _RESETS if reset != "LOGIN")


class GrantsError(ValueError):
    pass


def _name(kind: str, value: str) -> str:
    # Plain lower-case names only: they need no quoting, in SQL or in the DO block's literals.
    if not _NAME_RE.fullmatch(value):
        raise GrantsError(f"{kind} {value!r}: use a plain lower-case name ([a-z_][a-z0-9_]*)")
    return value


def _grant_if_there(table: str, column: str, schema: str, role: str) -> str:
    return (
        f"DO $$BEGIN IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{schema}.{table}'"
        f"::regclass AND attname = '{column}' AND attnum > 0 AND NOT attisdropped) THEN "
        f"GRANT SELECT ({column}) ON {schema}.{table} TO {role}; END IF; END$$;"
    )


def _grant(privilege: str, table: str, columns: tuple[str, ...], schema: str, role: str) -> str:
    return f"GRANT {privilege} ({', '.join(columns)}) ON {schema}.{table} TO {role};"


def _refusal(role: str, host: str) -> list[str]:
    """A guard that stops the script when the role is a superuser or owns the host's objects."""
    instead = (
        "make the service a role of its own instead (python -m pmd_service grants --role pmd) "
        "and give the service that role in DATABASE_URL"
    )
    return [
        "-- Refused for a superuser or a role owning the host's objects (the host's own role):",
        "-- the REVOKEs below would take its rights on its own tables away. Nothing changes then.",
        "DO $$DECLARE r record; owns text[]; shown text; BEGIN",
        f"  SELECT * INTO r FROM pg_roles WHERE rolname = '{role}';",
        "  IF NOT FOUND THEN RETURN; END IF;",
        "  IF r.rolsuper THEN",
        f"    RAISE EXCEPTION 'role {role} is a superuser, never the service''s role: {instead} "
        f"(a role of the service''s made superuser by mistake: ALTER ROLE {role} NOSUPERUSER, "
        "then run this again)';",
        "  END IF;",
        # In a fixed order, so the message does not depend on the catalog's.
        "  SELECT array_agg(what ORDER BY k, what) INTO owns FROM (",
        "    SELECT 0 AS k, 'the database ' || datname AS what FROM pg_database",
        "      WHERE datname = current_database() AND datdba = r.oid",
        f"    UNION ALL SELECT 1, 'schema {host}' FROM pg_namespace",
        f"      WHERE nspname = '{host}' AND nspowner = r.oid",
        "    UNION ALL SELECT CASE c.relkind WHEN 'r' THEN 2 ELSE 3 END, c.relname::text",
        "      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
        f"      WHERE n.nspname = '{host}' AND c.relowner = r.oid AND c.relkind <> 'i'",
        "    UNION ALL SELECT 4, p.oid::regprocedure::text FROM pg_proc p",
        "      JOIN pg_namespace n ON n.oid = p.pronamespace",
        f"      WHERE n.nspname = '{host}' AND p.proowner = r.oid) AS o;",
        "  IF owns IS NOT NULL THEN",
        "    shown := array_to_string(owns[1:5], ', ') || CASE WHEN cardinality(owns) > 5",
        "      THEN format(' and %s more', cardinality(owns) - 5) ELSE '' END;",
        f"    RAISE EXCEPTION 'role {role} owns %: the host''s own role, whose rights on them "
        f"this script would revoke; {instead}', shown;",
        "  END IF;",
        "END$$;",
    ]


def grants_sql(
    role: str, *, pmd_schema: str = "pmd", host_schema: str = "public", cutover: bool = False
) -> str:
    """The script: idempotent (run it again after an upgrade that needs more), one transaction."""
    role = _name("role", role)
    own, host = _name("schema", pmd_schema), _name("schema", host_schema)
    lines = [
        f"-- pmd-service's least-privilege role {role}: run as an admin of the host's database",
        "-- (psql -v ON_ERROR_STOP=1 -f grants.sql). Then set its password (psql: \\password "
        f"{role})",
        "-- and give the service DATABASE_URL=postgresql://" + role + ":…@host/db.",
        "BEGIN;",
        *_refusal(role, host),
        "-- The role, or an existing one's attributes reset: only those set are named (changing",
        "-- SUPERUSER, REPLICATION or BYPASSRLS takes a superuser).",
        "DO $$DECLARE r record; fix text := ''; BEGIN",
        f"  SELECT * INTO r FROM pg_roles WHERE rolname = '{role}';",
        "  IF NOT FOUND THEN",
        f"    CREATE ROLE {role} LOGIN {_ATTRIBUTES};",
        "    RETURN;",
        "  END IF;",
        *(
            f"  IF {'NOT ' if reset == 'LOGIN' else ''}r.{column} THEN "
            f"fix := fix || ' {reset}'; END IF;"
            for column, reset in _RESETS
        ),
        f"  IF fix <> '' THEN EXECUTE 'ALTER ROLE {role}' || fix; END IF;",
        "END$$;",
        "-- A session cut off mid-transaction gives its locks back after this long idle; the",
        "-- service asks it of direct connections itself, a pooler's take the role's.",
        f"ALTER ROLE {role} SET idle_in_transaction_session_timeout = "
        f"'{IDLE_IN_TRANSACTION_SECONDS}s';",
        "-- No membership of any role: a member may SET ROLE to it (NOINHERIT or not).",
        "DO $$DECLARE m record; BEGIN",
        "  FOR m IN SELECT g.rolname AS granted, w.rolname AS grantor FROM pg_auth_members a",
        "           JOIN pg_roles g ON g.oid = a.roleid LEFT JOIN pg_roles w ON w.oid = a.grantor",
        f"           WHERE a.member = '{role}'::regrole LOOP",
        "    IF m.grantor IS NULL THEN",
        f"      EXECUTE format('REVOKE %I FROM {role}', m.granted);",
        "    ELSE",
        f"      EXECUTE format('REVOKE %I FROM {role} GRANTED BY %I', m.granted, m.grantor);",
        "    END IF;",
        "  END LOOP;",
        "END$$;",
        "-- The service's own schema, owned by the role: its migrations create everything there.",
        f"CREATE SCHEMA IF NOT EXISTS {own} AUTHORIZATION {role};",
        f"ALTER SCHEMA {own} OWNER TO {role};",
        "-- Objects an earlier deployment created there as another role become the role's;",
        "-- only those: ALTER … OWNER locks a table whole, and a release still serves meanwhile.",
        "DO $$DECLARE r record; BEGIN",
        "  FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
        f"           WHERE n.nspname = '{own}' AND c.relkind IN ('r', 'p', 'v')",
        f"             AND c.relowner <> '{role}'::regrole LOOP",
        f"    EXECUTE format('ALTER TABLE {own}.%I OWNER TO {role}', r.relname);",
        "  END LOOP;",
        "  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p",
        f"           JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = '{own}'",
        f"             AND p.proowner <> '{role}'::regrole LOOP",
        f"    EXECUTE format('ALTER ROUTINE %s OWNER TO {role}', r.f);",
        "  END LOOP;",
        "END$$;",
        "-- The host's tables: only the columns the service reads and the ones it changes (what",
        "-- the role held there before is taken back first).",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {host} FROM {role};",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {host} FROM {role};",
        f"REVOKE CREATE ON SCHEMA {host} FROM {role};",
        f"GRANT USAGE ON SCHEMA {host} TO {role};",
    ]
    lines += [_grant("SELECT", t, columns, host, role) for t, columns in READS.items()]
    lines.append("-- Columns of the host's newer releases, where the host has them:")
    lines += [_grant_if_there(t, c, host, role) for t, cs in NEWER_READS.items() for c in cs]
    lines += [_grant("UPDATE", t, columns, host, role) for t, columns in UPDATES.items()]
    lines += [_grant("INSERT", t, columns, host, role) for t, columns in INSERTS.items()]
    if cutover:
        lines.append("-- import-host-bdrs only: revoke after the cut-over.")
        lines += [_grant("SELECT", t, columns, host, role) for t, columns in CUTOVER_READS.items()]
    lines.append("COMMIT;")
    return "\n".join(lines)
