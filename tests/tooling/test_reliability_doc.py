"""The counts docs/reliability.md gives (matrix cells, rows, callers, tests, the chaos runs'
users, seconds and faults) are the code's."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from types import SimpleNamespace

from runs.chaos import run as chaos
from runs.chaos.faults import Faults
from tests import access_table as matrix
from tests.helpers import CHECKOUT

DOC = (CHECKOUT / "docs" / "reliability.md").read_text()
# Every coroutine method of Faults a schedule may name.
FAULT_NAMES = [n for n in vars(Faults) if not n.startswith("_") and callable(getattr(Faults, n))]
FILES = [
    "tests/api/test_access_matrix.py",
    "tests/api/test_hostile_input.py",
    "tests/api/test_fuzz.py",
]


def _number(pattern: str) -> int:
    found = re.findall(pattern, DOC)
    assert found, f"docs/reliability.md no longer says {pattern!r}"
    assert len(set(found)) == 1, f"docs/reliability.md gives different figures: {found}"
    return int(found[0].replace(",", ""))


def _collected(*files: str) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=CHECKOUT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    tests = [line for line in out.stdout.splitlines() if "::" in line]
    assert tests, out.stdout[-2000:] + out.stderr[-2000:]
    return len(tests)


def _ticket_cells() -> int:
    source = (CHECKOUT / "tests" / "api" / "test_access_matrix.py").read_text()
    fn = next(
        n for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.AsyncFunctionDef) and n.name == "test_sse_tickets_of_someone_else"
    )  # fmt: skip
    return sum(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "cell"
        for n in ast.walk(fn)
    )


def test_the_matrix_figures_are_the_tables() -> None:
    rows, callers = (
        _collected("tests/api/test_access_matrix.py::test_access_matrix"),
        len(matrix.CALLERS),
    )
    cells = rows * callers
    assert _number(r"`: (\d[\d,]*) cells \+ \d+ ticket cells") == cells
    assert _number(r"caller \(\d+\), (\d[\d,]*) cells") == cells
    assert _number(r"`: \d[\d,]* cells \+ (\d+) ticket cells") == _ticket_cells()
    assert _number(r"HEAD included \((\d+)\s+rows") == rows
    assert _number(r"one column per kind of\s+caller \((\d+)\)") == callers


def test_the_test_counts_are_what_pytest_collects() -> None:
    assert _number(
        r"\| hostile input: `tests/api/test_hostile_input\.py`, (\d+) tests"
    ) == _collected(FILES[1])
    assert _number(r"tests/api/test_fuzz\.py` \((\d+) tests") == _collected(*FILES)


def test_the_chaos_sizes_are_the_harness_defaults() -> None:
    faults = SimpleNamespace(**{name: name for name in FAULT_NAMES}, store=None, pooler=None)
    for flags, row in (([], "chaos run, full"), (["--ci"], "chaos run, CI")):
        args = chaos.parse(flags)
        injected = len(chaos.schedule(faults, args.duration, args.ci))  # type: ignore[arg-type]
        users, seconds, count = _row_sizes(row)
        assert (users, seconds, count) == (args.users, args.duration, injected), (
            f"docs/reliability.md's '{row}' row says {users} users, {seconds:.0f} s, {count} "
            f"faults; runs/chaos/run.py makes {args.users}, {args.duration:.0f} s, {injected}"
        )


def _row_sizes(row: str) -> tuple[int, float, int]:
    line = next(line for line in DOC.splitlines() if f"| {row}: " in line)
    found = re.search(r"(\d+) users, (\d+) s[^,|]*, (\d+) faults", line)
    assert found, line
    return int(found[1]), float(found[2]), int(found[3])
