"""With PMD_CI_STRICT_SKIPS=1, skips tests/skips_allowed.txt does not allow fail the run."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SWITCH = "PMD_CI_STRICT_SKIPS"
ALLOW_LIST = Path("tests", "skips_allowed.txt")
# A worker's modules skipped at import, sent back: xdist passes on one collection report.
WORKER_OUTPUT = "pmd_skip_guard_refused"
# xdist's loadgroup adds "@<its xdist_group>" to a grouped test's id where pytest lets it.
GROUP_SUFFIX = re.compile(r"@[^:/\[\]]+$")


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
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ")


def _outcome(report: pytest.TestReport) -> str | None:
    """A test's outcome when the run did not check it; None if it did."""
    if not hasattr(report, "wasxfail"):
        return "SKIPPED" if report.skipped else None
    if report.skipped:
        return "XFAIL"
    return "XPASS" if report.passed else None  # a strict xfail that passed has failed


@dataclass(eq=False)  # a plugin: registered by identity
class SkipGuard:
    allowed: list[Allowed]
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # outcome, id, reason
    worker: bool = False  # an xdist worker: it judges only its collection, for the controller

    def _skipped(self, outcome: str, nodeid: str, reason: str) -> None:
        entry = (outcome, GROUP_SUFFIX.sub("", nodeid), reason)
        if entry not in self.refused and not any(a.covers(entry[1]) for a in self.allowed):
            self.refused.append(entry)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # a module skipped as a whole, at import
            self._skipped("SKIPPED", report.nodeid, _reason(report.longrepr))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = _outcome(report)
        if outcome is None or self.worker:  # a worker's tests: the controller judges them
            return
        why = _reason(report.longrepr) if outcome == "SKIPPED" else str(report.wasxfail)
        self._skipped(outcome, report.nodeid, why or "no reason given")

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        for outcome, nodeid, reason in getattr(node, "workeroutput", {}).get(WORKER_OUTPUT, []):
            self._skipped(outcome, nodeid, reason)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker:
            session.config.workeroutput[WORKER_OUTPUT] = self.refused  # type: ignore[attr-defined]
            return
        ok = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.refused and session.exitstatus in ok:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.refused:
            return
        title = f"skips and xfails that {SWITCH}=1 does not allow"
        terminalreporter.write_sep("=", title, red=True)
        for outcome, nodeid, reason in self.refused:
            terminalreporter.write_line(f"{outcome} {nodeid}: {reason}")
        terminalreporter.write_line(
            f"{SWITCH}=1: {len(self.refused)} skip(s) or xfail(s) not allowed by {ALLOW_LIST}: "
            "make each test run (and pass) here, or allow it there with the reason",
            red=True,
        )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(SWITCH) == "1" and not config.pluginmanager.has_plugin("skip-guard"):
        path = config.rootpath / ALLOW_LIST
        guard = SkipGuard(read_allow_list(path), worker=hasattr(config, "workerinput"))
        config.pluginmanager.register(guard, "skip-guard")
