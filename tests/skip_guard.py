"""CI cannot quietly drop a test: with PMD_CI_STRICT_SKIPS=1 (`.ci/run` sets it), a pytest run
that skipped anything fails, naming each skip and its reason, unless the skip is allowed by
`tests/skips_allowed.txt` under the run's rootdir.

That file holds one allowed skip a line: a test's id as pytest prints it (fnmatch wildcards
allowed; a module's id also covers every test in it), then, after a space, why CI may skip it.
Blank lines and `#` comments are ignored; an entry without its reason stops the run.

tests/conftest.py loads this plugin; elsewhere `python -m pytest -p tests.skip_guard` does
(tests/tooling/test_ci_guards.py runs it on generated test files).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SWITCH = "PMD_CI_STRICT_SKIPS"
ALLOW_LIST = Path("tests", "skips_allowed.txt")


@dataclass(frozen=True)
class Allowed:
    pattern: str
    reason: str

    def covers(self, nodeid: str) -> bool:
        return fnmatch.fnmatchcase(nodeid, self.pattern) or nodeid.startswith(self.pattern + "::")


def read_allow_list(path: Path) -> list[Allowed]:
    if not path.is_file():
        raise pytest.UsageError(f"{SWITCH}=1, but there is no {path} (its allowed skips)")
    entries = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, reason = line.partition(" ")
        if not reason.strip():
            raise pytest.UsageError(f"{path}:{number}: {pattern} is allowed no reason to skip")
        entries.append(Allowed(pattern, reason.strip()))
    return entries


def _reason(longrepr: object) -> str:
    # A skip's longrepr is (file, line, "Skipped: why").
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ")


@dataclass(eq=False)  # a plugin: registered by identity
class SkipGuard:
    allowed: list[Allowed]
    refused: list[tuple[str, str]] = field(default_factory=list)

    def _skipped(self, nodeid: str, longrepr: object) -> None:
        if not any(entry.covers(nodeid) for entry in self.allowed):
            self.refused.append((nodeid, _reason(longrepr)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # a module skipped as a whole, at import
            self._skipped(report.nodeid, report.longrepr)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self._skipped(report.nodeid, report.longrepr)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        ok = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.refused and session.exitstatus in ok:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.refused:
            return
        terminalreporter.write_sep("=", f"skips that {SWITCH}=1 does not allow", red=True)
        for nodeid, reason in self.refused:
            terminalreporter.write_line(f"SKIPPED {nodeid}: {reason}")
        terminalreporter.write_line(
            f"{SWITCH}=1: {len(self.refused)} skip(s) not allowed by {ALLOW_LIST}: make "
            "each test run here, or allow its skip there with the reason",
            red=True,
        )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(SWITCH) == "1" and not config.pluginmanager.has_plugin("skip-guard"):
        path = config.rootpath / ALLOW_LIST
        config.pluginmanager.register(SkipGuard(read_allow_list(path)), "skip-guard")
