"""make lint's migration check: the migrations after the release migrations/RELEASED names keep
that release working (docs/operations.md, "What `make lint` checks"); `--record VERSION`
writes migrations/RELEASED (docs/operations.md, "Releasing")."""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pglast import ast, parse_plpgsql, parse_sql
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.parser import ParseError

from pmd_service.core.migrate import Migration, discover, discover_repeatable

CHECKOUT = Path(__file__).resolve().parents[1]
RECORD = Path("migrations") / "RELEASED"
MARKER = re.compile(r"--\s*contract:\s*(?P<what>.+?),\s*expanded in (?P<number>\d{4})\b")
_RECORD_LINE = re.compile(r"^(?P<version>\S+) (?P<last>\d{4}) sha256:(?P<digest>[0-9a-f]{64})$")
_RECORD_HEAD = """\
# The previous release: its version, the last migration it applies and a digest of its
# migrations. make lint's migration check (support/migration_check.py) holds every later
# migration to what that release reads; `python -m support.migration_check --record VERSION`
# writes this file at a release (docs/operations.md, "Releasing").
"""
_NOT_NULL = {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}
_FILLED = {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}
# Dropped and created again in one migration (one transaction), they never go missing.
_AGAIN = {ObjectType.OBJECT_TRIGGER, ObjectType.OBJECT_INDEX}
_OF_TABLE = {ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_TABCONSTRAINT, ObjectType.OBJECT_TRIGGER}
_DISABLE = {t for t in AlterTableType if t.name.startswith("AT_DisableTrig")}
# pglast reads PL/pgSQL as a function's body only: a DO block's is read as one.
_DO_AS_FUNCTION = "CREATE FUNCTION pg_temp.f() RETURNS void LANGUAGE plpgsql AS $pmd${}$pmd$"


@dataclass(frozen=True)
class Released:
    version: str
    last: int
    digest: str

    def line(self) -> str:
        return f"{self.version} {self.last:04d} sha256:{self.digest}"


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    what: str  # the object: `table`, `table.column`, `function`, `table.trigger`, a channel
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class _Made:
    """What migrations made, by name; columns as `table.column`, triggers as `table.trigger`."""

    objects: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    columns: set[str] = field(default_factory=set)
    defaulted: set[str] = field(default_factory=set)
    constraints: set[str] = field(default_factory=set)


class _Problem(NamedTuple):
    what: str
    message: str


def digest(migrations: Iterable[Migration]) -> str:
    """Over each migration's file name and checksum, as the ledger records them."""
    lines = "".join(f"{m.version:04d}_{m.name}.sql {m.checksum}\n" for m in migrations)
    return hashlib.sha256(lines.encode()).hexdigest()


def read_record(root: Path) -> Released:
    text = (root / RECORD).read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    match = _RECORD_LINE.match(lines[0]) if len(lines) == 1 else None
    if match is None:
        raise SystemExit(f"{RECORD}: one line `VERSION NNNN sha256:DIGEST` expected")
    return Released(match["version"], int(match["last"]), match["digest"])


def record(root: Path, version: str, rev: str | None = None) -> Released:
    """migrations/RELEASED for `version`: the migrations at git `rev`, or those there are now."""
    migrations = discover(root / "migrations") if rev is None else _at(root, rev)
    if not migrations:
        raise SystemExit(f"no migrations at {rev or root}")
    released = Released(version, migrations[-1].version, digest(migrations))
    (root / RECORD).write_text(_RECORD_HEAD + released.line() + "\n")
    return released


def _nodes(value: Any) -> Iterator[ast.Node]:
    if isinstance(value, ast.Node):
        yield value
        for slot in getattr(type(value), "__slots__", ()):
            yield from _nodes(getattr(value, slot))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _nodes(item)


def _low(name: str | None) -> str:
    return (name or "?").lower()


def _rel(relation: ast.RangeVar | None) -> str:
    return _low(relation.relname if relation is not None else None)


def _last(names: Iterable[Any] | None) -> str:
    strings = [_low(n.sval) for n in names or () if isinstance(n, ast.String)]
    return strings[-1] if strings else "?"


def _option(stmt: ast.CreateFunctionStmt | ast.DoStmt, name: str) -> Any:
    options = stmt.options if isinstance(stmt, ast.CreateFunctionStmt) else stmt.args
    return next((o.arg for o in options or () if o.defname == name), None)


def _plpgsql_queries(tree: Any) -> Iterator[tuple[str, str]]:
    """(`sql` or `dynamic`: what EXECUTE runs, text) of every SQL text in a PL/pgSQL tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "PLpgSQL_stmt_dynexecute":
                yield "dynamic", str(value.get("query", {}).get("PLpgSQL_expr", {}).get("query"))
            elif key == "PLpgSQL_expr" and isinstance(value, dict) and "query" in value:
                yield "sql", str(value["query"])
            yield from _plpgsql_queries(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_queries(item)


def _parsed(text: str) -> tuple[ast.Node, ...]:
    """A PL/pgSQL query's statements (an expression as a SELECT); none if unreadable."""
    for candidate in (text, f"SELECT {text}"):
        try:
            return tuple(raw.stmt for raw in parse_sql(candidate) if raw.stmt is not None)
        except ParseError:
            continue
    return ()


def _body_statements(stmt: ast.CreateFunctionStmt, source: str) -> Iterator[ast.Node]:
    """The readable statements of a function's body (`source`: its CREATE FUNCTION)."""
    body, language = _option(stmt, "as"), getattr(_option(stmt, "language"), "sval", None)
    queries: list[str] = []
    if stmt.sql_body is not None:
        yield from _nodes(stmt.sql_body)
    elif body and language == "sql":
        queries = [body[0].sval if isinstance(body, list | tuple) else str(body.sval)]
    elif body and language == "plpgsql":
        with suppress(ParseError):
            queries = [query for _, query in _plpgsql_queries(parse_plpgsql(source))]
    for query in queries:
        yield from _nodes(_parsed(query))


def notified(stmt: ast.CreateFunctionStmt, source: str) -> set[str]:
    """The channels a function's body notifies by name (pg_notify or NOTIFY)."""
    channels = set()
    for node in _body_statements(stmt, source):
        if isinstance(node, ast.NotifyStmt) and node.conditionname:
            channels.add(node.conditionname.lower())
        elif isinstance(node, ast.FuncCall) and _last(node.funcname) == "pg_notify" and node.args:
            first = node.args[0]
            if isinstance(first, ast.A_Const) and isinstance(first.val, ast.String):
                channels.add(_low(first.val.sval))
    return channels


def _dropped_name(kind: ObjectType, obj: Any) -> str:
    if isinstance(obj, ast.ObjectWithArgs):
        return _last(obj.objname)
    if isinstance(obj, ast.TypeName):
        return _last(obj.names)
    if isinstance(obj, ast.String):
        return _low(obj.sval)
    names = [_low(n.sval) for n in obj if isinstance(n, ast.String)]
    if kind in (ObjectType.OBJECT_TRIGGER, ObjectType.OBJECT_RULE, ObjectType.OBJECT_POLICY):
        return f"{names[-2]}.{names[-1]}"
    return names[-1] if names else "?"


def _make(stmt: ast.Node, made: _Made) -> None:
    if isinstance(stmt, ast.CreateStmt):
        made.tables.add(_rel(stmt.relation))
    elif isinstance(stmt, ast.CreateTableAsStmt):
        made.tables.add(_rel(stmt.into.rel if stmt.into else None))
    elif isinstance(stmt, ast.ViewStmt) and not stmt.replace:
        made.tables.add(_rel(stmt.view))
    elif isinstance(stmt, ast.CreateFunctionStmt) and not stmt.replace:
        made.objects.add(_last(stmt.funcname))
    elif isinstance(stmt, ast.IndexStmt) and stmt.idxname:
        made.objects.add(_low(stmt.idxname))
    elif isinstance(stmt, ast.CreateTrigStmt):
        made.objects.add(f"{_rel(stmt.relation)}.{_low(stmt.trigname)}")
    elif isinstance(stmt, ast.CreateSeqStmt):
        made.objects.add(_rel(stmt.sequence))
    elif isinstance(stmt, ast.CompositeTypeStmt):
        made.objects.add(_rel(stmt.typevar))
    elif isinstance(stmt, ast.CreateEnumStmt):
        made.objects.add(_last(stmt.typeName))
    elif isinstance(stmt, ast.CreateDomainStmt):
        made.objects.add(_last(stmt.domainname))
    elif isinstance(stmt, ast.AlterTableStmt):
        table = _rel(stmt.relation)
        for cmd in stmt.cmds or ():
            if cmd.subtype == AlterTableType.AT_AddColumn:
                added = cmd.def_
                assert isinstance(added, ast.ColumnDef)
                column = f"{table}.{_low(added.colname)}"
                made.columns.add(column)
                if any(c.contype in _FILLED for c in added.constraints or ()):
                    made.defaulted.add(column)
            elif cmd.subtype == AlterTableType.AT_ColumnDefault and cmd.def_ is not None:
                made.defaulted.add(f"{table}.{_low(cmd.name)}")
            elif cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(
                cmd.def_, ast.Constraint
            ):
                made.constraints.add(f"{table}.{_low(cmd.def_.conname)}")


@dataclass
class _Judge:
    """What the release made (`old`), later migrations made (`new`) and this file makes (`again`)."""

    old: _Made
    new: _Made
    channels: dict[str, set[str]]  # function -> channels its previous definition notified
    again: _Made = field(default_factory=_Made)

    def is_new(self, name: str) -> bool:
        fresh = name in self.new.objects or name in self.new.tables
        return fresh and name not in self.old.objects and name not in self.old.tables

    def new_table(self, table: str) -> bool:
        return table in self.new.tables and table not in self.old.tables

    def new_column(self, column: str) -> bool:
        return self.new_table(column.split(".")[0]) or (
            column in self.new.columns and column not in self.old.columns
        )

    def problems(self, statement: _Statement) -> Iterator[_Problem]:
        stmt = statement.node
        if isinstance(stmt, ast.DropStmt):
            kind = _type(stmt.removeType)
            for obj in stmt.objects or ():
                name = _dropped_name(kind, obj)
                if self.is_new(name) or (kind in _AGAIN and name in self.again.objects):
                    continue
                yield _Problem(name, f"drops {_kind(kind)} {name}")
        elif isinstance(stmt, ast.TruncateStmt):
            for relation in stmt.relations or ():
                if not self.new_table(table := _rel(relation)):
                    yield _Problem(table, f"truncates table {table}")
        elif isinstance(stmt, ast.RenameStmt):
            name, kind = _renamed(stmt), _type(stmt.renameType)
            of_new_table = "." in name and self.new_table(name.split(".")[0])
            fresh = of_new_table or (kind == ObjectType.OBJECT_COLUMN and self.new_column(name))
            if not (fresh or self.is_new(name)):
                yield _Problem(name, f"renames {_kind(kind)} {name} to {stmt.newname}")
        elif isinstance(stmt, ast.AlterObjectSchemaStmt):
            kind, relation = _type(stmt.objectType), stmt.relation
            name = _rel(relation) if relation is not None else _dropped_name(kind, stmt.object)
            if not self.is_new(name):
                yield _Problem(name, f"moves {name} to schema {stmt.newschema}")
        elif isinstance(stmt, ast.AlterEnumStmt) and stmt.oldVal is not None:
            name = _last(stmt.typeName)
            if not self.is_new(name):
                yield _Problem(name, f"renames the value {stmt.oldVal!r} of type {name}")
        elif isinstance(stmt, ast.AlterTableStmt):
            yield from self._altered(stmt)
        elif isinstance(stmt, ast.CreateFunctionStmt):
            name = _last(stmt.funcname)
            for channel in sorted(self.channels.get(name, set()) - notified(stmt, statement.text)):
                yield _Problem(channel, f"{name}() no longer notifies {channel}, which it notified")

    def _altered(self, stmt: ast.AlterTableStmt) -> Iterator[_Problem]:
        table = _rel(stmt.relation)
        if self.new_table(table):
            return
        for cmd in stmt.cmds or ():
            name, subtype = f"{table}.{(cmd.name or '').lower()}", cmd.subtype
            old = not self.new_column(name)
            if subtype == AlterTableType.AT_DropColumn and old:
                yield _Problem(name, f"drops column {name}")
            elif subtype == AlterTableType.AT_AlterColumnType and old:
                yield _Problem(name, f"changes the type of column {name}")
            elif subtype == AlterTableType.AT_SetNotNull and name not in self.new.defaulted:
                why = "which the previous release may leave null"
                yield _Problem(name, f"sets {name} NOT NULL, {why}")
            elif subtype == AlterTableType.AT_ColumnDefault and cmd.def_ is None and old:
                yield _Problem(name, f"drops the default of {name}")
            elif subtype == AlterTableType.AT_AddColumn:
                new = cmd.def_
                assert isinstance(new, ast.ColumnDef)
                constraints = {c.contype for c in new.constraints or ()}
                if (new.is_not_null or constraints & _NOT_NULL) and not constraints & _FILLED:
                    added = f"{table}.{_low(new.colname)}"
                    why = "with no default, which the previous release leaves null"
                    yield _Problem(added, f"adds {added} NOT NULL {why}")
            elif subtype == AlterTableType.AT_DropConstraint:
                if name not in self.again.constraints and name not in self.new.constraints:
                    yield _Problem(name, f"drops constraint {name}")
            elif subtype in _DISABLE:
                yield _Problem(table, f"disables triggers of {table}")


def _type(kind: Any) -> ObjectType:
    return ObjectType(kind)


def _kind(kind: ObjectType) -> str:
    return kind.name.removeprefix("OBJECT_").replace("TABCONSTRAINT", "constraint").lower()


def _renamed(stmt: ast.RenameStmt) -> str:
    kind = _type(stmt.renameType)
    if stmt.relation is not None:
        table = _rel(stmt.relation)
        return f"{table}.{(stmt.subname or '').lower()}" if kind in _OF_TABLE else table
    return _dropped_name(kind, stmt.object) if stmt.object is not None else _low(stmt.subname)


@dataclass(frozen=True)
class _Statement:
    node: ast.Node
    line: int
    before: str  # the text between the previous statement and this one (its comments)
    text: str
    problems: tuple[_Problem, ...] = ()  # what is wrong with it whatever it names


def _statements(sql: str) -> Iterator[_Statement]:
    """The statements of a file; a DO block's after the block, each as if the block's own."""
    end = 0
    for raw in parse_sql(sql):
        start = raw.stmt_location or 0
        line, before = sql.count("\n", 0, start) + 1, sql[end:start]
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        text = sql[start:end]
        assert raw.stmt is not None
        if not isinstance(raw.stmt, ast.DoStmt):
            yield _Statement(raw.stmt, line, before, text)
            continue
        function = _DO_AS_FUNCTION.format(_option(raw.stmt, "as").sval)
        queries = list(_plpgsql_queries(parse_plpgsql(function)))
        unread = _Problem("DO", "a DO block EXECUTEs a statement built at run time, unread here")
        dynamic = any(kind == "dynamic" for kind, _ in queries)
        yield _Statement(raw.stmt, line, before, text, (unread,) if dynamic else ())
        for kind, query in queries:
            if kind == "sql":
                for inner in _parsed(query):
                    yield _Statement(inner, line, before, query)


def _marked(before: str, problem: _Problem, released: Released) -> str | None:
    """None when the statement's contract marker lets `problem` through; else why not."""
    marker = MARKER.search(before)
    if marker is None:
        return (
            "the previous release may use it: change it a release after the one that stops "
            "using it, marked `-- contract: <what>, expanded in NNNN`"
        )
    names = {n.lower() for n in re.split(r"[\s,]+", marker["what"]) if n}
    # What a DO block EXECUTEs cannot be named: its marker vouches for the whole block.
    if problem.what != "DO" and problem.what.lower() not in names:
        return f"its contract marker does not name {problem.what}"
    if int(marker["number"]) > released.last:
        return (
            f"its contract marker names migration {marker['number']}, which release "
            f"{released.version} (up to {released.last:04d}) does not apply: the expand must "
            "ship in a release before its contract step"
        )
    return None


def _made_by(migrations: Iterable[Migration]) -> tuple[_Made, dict[str, set[str]]]:
    made, channels = _Made(), {}
    for migration in migrations:
        for statement in _statements(migration.sql):
            _make(statement.node, made)
            if isinstance(statement.node, ast.CreateFunctionStmt):
                channels[_last(statement.node.funcname)] = notified(statement.node, statement.text)
            elif isinstance(statement.node, ast.DropStmt):
                for obj in statement.node.objects or ():
                    channels.pop(_dropped_name(_type(statement.node.removeType), obj), None)
    return made, channels


def check(root: Path = CHECKOUT) -> list[Finding]:
    folder = root / "migrations"
    released = read_record(root)
    migrations = discover(folder)
    old = [m for m in migrations if m.version <= released.last]
    findings = _record_findings(root, released, old)
    made, channels = _made_by(old)
    judge = _Judge(old=made, new=_Made(), channels=channels)
    files = [(f"migrations/{m.version:04d}_{m.name}.sql", m.sql) for m in migrations[len(old) :]]
    files += [(f"migrations/repeatable/{r.name}.sql", r.sql) for r in discover_repeatable(folder)]
    for name, sql in files:
        items = list(_statements(sql))
        judge.again = _Made()
        for item in items:
            _make(item.node, judge.again)
        for item in items:
            for problem in [*item.problems, *judge.problems(item)]:
                why = _marked(item.before, problem, released)
                if why is not None:
                    message = f"{problem.message}: {why}"
                    findings.append(Finding(name, item.line, problem.what, message))
            _make(item.node, judge.new)
    return findings


def _record_findings(root: Path, released: Released, old: list[Migration]) -> list[Finding]:
    found = []
    if not old or old[-1].version != released.last:
        found.append(f"no migration {released.last:04d} here")
    elif digest(old) != released.digest:
        found.append(
            f"migrations up to {released.last:04d} differ from release {released.version}'s: a "
            "released migration is never edited, nor one inserted before it (every database "
            "that applied them refuses the change); add a new one after it"
        )
    tagged = _at(root, f"refs/tags/v{released.version}")
    if tagged and Released(released.version, tagged[-1].version, digest(tagged)) != released:
        found.append(
            f"tag v{released.version} holds migrations up to {tagged[-1].version:04d} "
            f"(sha256:{digest(tagged)}): record that release with --record at its tag"
        )
    return [Finding(str(RECORD), 1, "record", message) for message in found]


def _at(root: Path, rev: str) -> list[Migration] | None:
    """The migrations at git revision `rev` of `root`, or None (no git, no such revision)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = ["git", "-C", str(root), "archive", "-o", f"{tmp}/m.tar", f"{rev}:migrations"]
        try:
            if subprocess.run(archive, capture_output=True, check=False).returncode != 0:
                return None
        except FileNotFoundError:
            return None
        shutil.unpack_archive(f"{tmp}/m.tar", f"{tmp}/migrations")
        return discover(Path(tmp) / "migrations") or None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m support.migration_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=CHECKOUT, help="the tree to check")
    parser.add_argument("--record", metavar="VERSION", help="write migrations/RELEASED")
    parser.add_argument("--at", metavar="REV", help="with --record: the release's tag or commit")
    args = parser.parse_args()
    if args.record:
        print(record(args.root, args.record, args.at).line())
        sys.exit(0)
    findings = check(args.root)
    for finding in findings:
        print(finding, file=sys.stderr)
    sys.exit(1 if findings else 0)
