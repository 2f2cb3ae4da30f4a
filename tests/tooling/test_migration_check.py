"""make lint's migration check: a later migration keeps what the previous release reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pmd_service.core.migrate import discover
from support.migration_check import Finding, Released, check, digest, record
from tests.helpers import CHECKOUT

# A trigger function of the previous release that notifies the stream's channel, redefined.
EMIT = """CREATE OR REPLACE FUNCTION export_emit_event() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM pg_notify({channels});
    RETURN NULL;
END
$f$;"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the checkout's migrations, released as 0.2.0 was: up to 0018."""
    folder = tmp_path / "migrations"
    shutil.copytree(CHECKOUT / "migrations", folder, ignore=shutil.ignore_patterns("__pycache__"))
    released = Released("0.2.0", 18, digest(m for m in discover(folder) if m.version <= 18))
    (folder / "RELEASED").write_text(released.line() + "\n")
    return tmp_path


def _add(tree: Path, sql: str, name: str = "0099_change.sql") -> Path:
    path = tree / "migrations" / name
    path.write_text(sql)
    return path


def _found(findings: list[Finding]) -> list[tuple[str, int, str]]:
    return [(f.file, f.line, f.what) for f in findings]


def test_todays_migrations_keep_the_previous_release_working() -> None:
    assert check(CHECKOUT) == []


def test_make_lint_fails_on_a_migration_that_drops_a_column_the_previous_release_reads(
    tree: Path,
) -> None:
    def lint() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "support.migration_check", "--root", str(tree)]
        return subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True, check=False)

    assert lint().returncode == 0
    _add(
        tree,
        "-- the status moves elsewhere\nALTER TABLE batch_download_requests DROP COLUMN status;\n",
    )
    done = lint()
    assert done.returncode == 1
    assert done.stderr.startswith("migrations/0099_change.sql:2: "), done.stderr


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        (
            "ALTER TABLE batch_download_requests DROP COLUMN status;",
            "batch_download_requests.status",
        ),
        ("ALTER TABLE posts DROP COLUMN title;", "posts.title"),  # a host table's
        ("ALTER TABLE exports RENAME TO export_requests;", "exports"),
        ("ALTER TABLE exports RENAME COLUMN part_bytes TO part_size;", "exports.part_bytes"),
        ("ALTER TABLE exports ALTER COLUMN part_bytes TYPE numeric;", "exports.part_bytes"),
        (
            "ALTER TABLE batch_download_requests ALTER COLUMN error_message SET NOT NULL;",
            "batch_download_requests.error_message",
        ),
        ("ALTER TABLE exports ADD COLUMN owner_note text NOT NULL;", "exports.owner_note"),
        ("ALTER TABLE exports ALTER COLUMN part_bytes DROP DEFAULT;", "exports.part_bytes"),
        (
            "ALTER TABLE exports DROP CONSTRAINT exports_status_check;",
            "exports.exports_status_check",
        ),
        ("ALTER TABLE exports DISABLE TRIGGER export_emit;", "exports"),
        ("ALTER TABLE exports SET SCHEMA archive;", "exports"),
        ("DROP TABLE IF EXISTS bulk_action_posts;", "bulk_action_posts"),
        ("DROP FUNCTION bdr_touch();", "bdr_touch"),
        ("ALTER FUNCTION bdr_touch() RENAME TO pmd_touch;", "bdr_touch"),
        ("DROP TRIGGER export_touch ON exports;", "exports.export_touch"),
        ("DROP INDEX bdr_user_created_idx;", "bdr_user_created_idx"),
        ("TRUNCATE audited_reads;", "audited_reads"),
        # The stream's channel renamed: the previous release's servers would hear nothing.
        (EMIT.format(channels="'pmd_events', '1'"), "pmd_bdr_events"),
        # A DO block is read statement by statement; what it EXECUTEs cannot be read.
        (
            "DO $$ BEGIN IF true THEN ALTER TABLE exports DROP COLUMN part_bytes; END IF; END $$;",
            "exports.part_bytes",
        ),
        ("DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'exports'; END $$;", "DO"),
    ],
)
def test_a_change_to_what_the_previous_release_reads_is_refused(
    tree: Path, sql: str, what: str
) -> None:
    _add(tree, f"-- a change\n{sql}\n")
    assert _found(check(tree)) == [("migrations/0099_change.sql", 2, what)]


def test_a_repeatable_definition_is_held_to_the_same_rule(tree: Path) -> None:
    _add(tree, "DROP TABLE moderator_deletions;\n", "repeatable/zz_cleanup.sql")
    assert _found(check(tree)) == [
        ("migrations/repeatable/zz_cleanup.sql", 1, "moderator_deletions")
    ]


@pytest.mark.parametrize(
    "sql",
    [
        # What the release itself adds, it may change: the previous release never saw it.
        "CREATE TABLE scratch (a integer);\nDROP TABLE scratch;",
        "ALTER TABLE exports ADD COLUMN note text;\nALTER TABLE exports RENAME COLUMN note TO remark;",
        "ALTER TABLE exports ADD COLUMN tries integer DEFAULT 0;\nALTER TABLE exports ALTER COLUMN tries SET NOT NULL;",
        "ALTER TABLE exports ADD COLUMN tries integer NOT NULL DEFAULT 0;",
        # Dropped and made again in one migration (one transaction), never missing.
        "DROP TRIGGER export_touch ON exports;\n"
        "CREATE TRIGGER export_touch BEFORE UPDATE ON exports FOR EACH ROW EXECUTE FUNCTION bdr_touch();",
        "ALTER TABLE exports DROP CONSTRAINT exports_status_check,\n"
        "    ADD CONSTRAINT exports_status_check CHECK (status IS NOT NULL);",
        # An expand: the old channel kept beside a new one.
        EMIT.format(channels="'pmd_bdr_events', '1'); PERFORM pg_notify('pmd_events', '1'"),
    ],
)
def test_an_expand_passes(tree: Path, sql: str) -> None:
    _add(tree, sql + "\n")
    assert check(tree) == []


def test_a_contract_step_passes_only_marked_after_a_released_expand(tree: Path) -> None:
    """The marker names what the step removes and its expand, which the release must have."""
    drop = "DROP TABLE bulk_action_posts;\n"
    path = _add(tree, "-- contract: bulk_action_posts, expanded in 0010\n" + drop)
    assert check(tree) == []
    # An expand of this same release: the previous release still reads what it contracts.
    path.write_text("-- contract: bulk_action_posts, expanded in 0019\n" + drop)
    assert _found(check(tree)) == [("migrations/0099_change.sql", 2, "bulk_action_posts")]
    # A marker for something else, or for the statement before, lets nothing else through.
    path.write_text("-- contract: moderator_deletions, expanded in 0010\n" + drop)
    assert _found(check(tree)) == [("migrations/0099_change.sql", 2, "bulk_action_posts")]
    path.write_text(
        "-- contract: bulk_action_posts, expanded in 0010\n"
        + drop
        + "DROP TABLE moderator_deletions;\n"
    )
    assert _found(check(tree)) == [("migrations/0099_change.sql", 3, "moderator_deletions")]


def test_the_record_holds_the_released_migrations_as_they_were(tree: Path) -> None:
    released = tree / "migrations" / "0005_statement_level_bdr_events.sql"
    released.write_text(released.read_text() + "-- edited after its release\n")
    assert _found(check(tree)) == [("migrations/RELEASED", 1, "record")]


def test_once_recorded_a_release_holds_its_own_migrations(tree: Path) -> None:
    """After `--record`, what that release's migrations added may no longer be dropped."""
    drop = "ALTER TABLE bulk_actions DROP COLUMN policy_id;\n"  # added by 0026
    _add(tree, drop)
    assert check(tree) == []
    (tree / "migrations" / "0099_change.sql").unlink()
    record(tree, "0.3.0")
    _add(tree, drop, "0100_change.sql")
    assert _found(check(tree)) == [("migrations/0100_change.sql", 1, "bulk_actions.policy_id")]


def test_the_record_matches_the_releases_tag_where_the_clone_has_it(tree: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=tree,
            check=True,
            capture_output=True,
        )

    later = sorted(p for p in (tree / "migrations").glob("[0-9]*.sql") if int(p.name[:4]) > 18)
    kept = {p: p.read_text() for p in later}
    for path in later:
        path.unlink()
    git("init", "--quiet")
    git("add", ".")
    git("commit", "--quiet", "-m", "the previous release")
    git("tag", "v0.2.0")
    for path, sql in kept.items():
        path.write_text(sql)
    assert check(tree) == []
    # A tag elsewhere (here: after the next migrations) disagrees with the record.
    git("add", ".")
    git("commit", "--quiet", "-m", "later")
    git("tag", "--force", "v0.2.0")
    assert _found(check(tree)) == [("migrations/RELEASED", 1, "record")]
