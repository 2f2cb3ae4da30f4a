"""The size bounds of issue 77, item 6 (`make lint` runs this file): the harness around the
package (bench/, runs/, support/) within 10,000 lines of Python and 40% of pmd_service/'s, the
tests' shared modules (tests/*.py) within 10% of tests/, every page under docs/ within 6,000
words and README.md within 1,500. A failure names the bound exceeded."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import CHECKOUT

HARNESS = ("bench", "runs", "support")
HARNESS_LINES, HARNESS_SHARE, SHARED_SHARE = 10_000, 0.40, 0.10
PAGE_WORDS, README_WORDS = 6_000, 1_500


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
