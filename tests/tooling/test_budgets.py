"""The size bounds of issue 77, item 6 (`make lint` runs this file): the harness around the
package (bench/, runs/, support/) within 10,000 lines of Python and 40% of pmd_service/'s, the
tests' shared modules (tests/*.py) within 10% of tests/, every page under docs/ within 6,000
words and README.md within 1,500; at most 40 pairs of files repeating a run of six lines
outside migrations/, and no import circle in the package. A failure names what is over."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import grimp

from tests.helpers import CHECKOUT

HARNESS = ("bench", "runs", "support")
HARNESS_LINES, HARNESS_SHARE, SHARED_SHARE = 10_000, 0.40, 0.10
PAGE_WORDS, README_WORDS = 6_000, 1_500
RUN_LINES, RUN_PAIRS, TOO_COMMON = 6, 40, 8
CODE = {".py", ".js", ".css", ".html", ".sql", ".sh"}
# Lines a repeat is not made of: blank, comments, imports and lone punctuation.
_PASSED = re.compile(r"(#|//|--|/?\*|import\b|from \S+ import\b|[\s()\[\]{},;:]*$)")


def lines(folder: str, pattern: str = "**/*.py") -> int:
    """Lines of the Python files under `folder` (as `wc -l` counts them)."""
    files = (CHECKOUT / folder).glob(pattern)
    return sum(p.read_bytes().count(b"\n") for p in files if "__pycache__" not in p.parts)


def words(page: Path) -> int:
    return len(page.read_text().split())


def test_the_harness_is_within_its_lines() -> None:
    harness = {folder: lines(folder) for folder in HARNESS}
    total, package = sum(harness.values()), lines("pmd_service")
    each = " + ".join(f"{folder}/ {n:,}" for folder, n in harness.items())
    assert total <= HARNESS_LINES, (
        f"bench/ + runs/ + support/ ≤ {HARNESS_LINES:,} lines of Python: {each} = {total:,}"
    )
    assert total <= HARNESS_SHARE * package, (
        f"bench/ + runs/ + support/ ≤ {HARNESS_SHARE:.0%} of pmd_service/'s {package:,} lines: "
        f"{each} = {total:,} ({total / package:.1%})"
    )


def test_the_tests_shared_modules_are_within_their_share() -> None:
    shared, tests = lines("tests", "*.py"), lines("tests")
    assert shared <= SHARED_SHARE * tests, (
        f"the tests' shared modules (tests/*.py) ≤ {SHARED_SHARE:.0%} of tests/'s {tests:,} "
        f"lines: {shared:,} ({shared / tests:.1%})"
    )


def test_every_docs_page_and_the_readme_are_within_their_words() -> None:
    pages = {p: PAGE_WORDS for p in sorted((CHECKOUT / "docs").rglob("*.md"))}
    over = [
        f"{p.relative_to(CHECKOUT)} ≤ {bound:,} words: {n:,}"
        for p, bound in (pages | {CHECKOUT / "README.md": README_WORDS}).items()
        if (n := words(p)) > bound
    ]
    assert not over, "over their bound: " + "; ".join(over)


def _runs(text: str) -> list[str]:
    """The lines a repeat is made of, white space folded."""
    return [" ".join(line.split()) for line in text.splitlines() if not _PASSED.match(line.strip())]


def repeating_pairs(names: list[str]) -> set[tuple[str, str]]:
    """The pairs of files (a file with itself too) sharing a run of RUN_LINES lines; a run
    standing in more than TOO_COMMON places is a common idiom, not a repeat."""
    places: defaultdict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for name in names:
        kept = _runs((CHECKOUT / name).read_text(errors="replace"))
        for i in range(len(kept) - RUN_LINES + 1):
            places[tuple(kept[i : i + RUN_LINES])].append((name, i))
    pairs = set()
    for where in places.values():
        if len(where) <= TOO_COMMON:
            for (a, i), (b, j) in combinations(where, 2):
                if a != b or abs(i - j) >= RUN_LINES:  # within a file: runs that do not overlap
                    pairs.add((a, b))
    return pairs


def test_few_files_repeat_runs_of_lines() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=CHECKOUT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    code = [n for n in tracked if Path(n).suffix in CODE and not n.startswith("migrations/")]
    pairs = repeating_pairs([n for n in code if (CHECKOUT / n).is_file()])
    assert len(pairs) <= RUN_PAIRS, (
        f"≤ {RUN_PAIRS} pairs of files repeating a run of {RUN_LINES} lines: {len(pairs)}: "
        + "; ".join(f"{a} ~ {b}" for a, b in sorted(pairs))
    )


def test_the_package_has_no_import_circle() -> None:
    graph = grimp.build_graph("pmd_service")
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * len(graph.modules)))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert not circles, "import circles: " + "; ".join(" ↔ ".join(c) for c in circles)
