"""CI cannot quietly drop a test. A test whose prerequisite is missing skips with one line, or
fails with it where CI requires its area (PMD_REQUIRE_<AREA>=1, tests/prerequisites.py); and
with PMD_CI_STRICT_SKIPS=1 a run that skipped anything fails and names each skip, unless
tests/skips_allowed.txt allows it (tests/skip_guard.py). Each case is a real pytest run, in a
subprocess, of a small generated test file with that plugin alone."""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import CHECKOUT, run_python
from tests.skip_guard import ALLOW_LIST, SWITCH, read_allow_list

TESTS = """
import pytest

def test_runs():
    pass

def test_needs_a_frobnicator():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(True, reason="not on this kind of machine")
@pytest.mark.parametrize("n", [1, 2])
def test_marked(n):
    pass

@pytest.mark.xfail(reason="a known bug")
def test_known_bug():
    raise AssertionError

@pytest.mark.xfail(reason="a bug that may be fixed")
def test_maybe_fixed():
    pass

@pytest.mark.xfail(reason="fixed, and said so", strict=True)
def test_fixed_strictly():
    pass
"""
MODULE_SKIP = """
import pytest

pytest.skip("this whole module needs a frobnicator", allow_module_level=True)
"""
# Skipped where every such module is (tests/prerequisites.py): the same report for each.
MODULE_UNMET = """
from tests.prerequisites import unmet

unmet("deploy", "no frobnicator here", module=True)
"""
NEEDS = """
from pathlib import Path
import pytest
from tests.prerequisites import needs

@pytest.fixture
def server():
    Path(__file__).with_name("server-started").touch()

@needs("deploy", "frobnicator not found: install Debian's frobnicator (apt-get install frobnicator)")
def test_through_the_frobnicator(server):
    pass

@needs("deploy", None)
def test_with_everything_here(server):
    pass
"""


def pytest_run(
    folder: Path,
    allowed: str | None,
    *,
    strict: bool = True,
    plugin: str = "tests.skip_guard",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """`python -m pytest -p <plugin>` in `folder` (its rootdir), with `allowed` as its
    tests/skips_allowed.txt (None: no such file), and no PMD_ variable but `env`'s."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / ALLOW_LIST).parent.mkdir(exist_ok=True)
    if allowed is None:
        (folder / ALLOW_LIST).unlink(missing_ok=True)
    else:
        (folder / ALLOW_LIST).write_text(allowed)
    given = {k: v for k, v in os.environ.items() if not k.startswith(("PMD_", "PYTEST"))}
    given |= env or {}
    given["PYTHONPATH"] = str(CHECKOUT)
    given["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # this plugin alone: a faster start
    if strict:
        given[SWITCH] = "1"
    plugins = ("-p", plugin, "-p", "no:cacheprovider")
    config = ("-c", str(folder / "pytest.ini"), "--rootdir", str(folder), str(folder))
    return run_python("-m", "pytest", *args, *plugins, *config, env=given, timeout=120)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "test_tiny.py").write_text(TESTS)
    return tmp_path


def refused(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("SKIPPED ", "XFAIL ", "XPASS "))
    ]


def test_a_skip_not_allowed_fails_the_run_and_is_named_with_its_reason(suite: Path) -> None:
    done = pytest_run(suite, "# nothing allowed\n")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert refused(done) == [
        "SKIPPED test_tiny.py::test_needs_a_frobnicator: no frobnicator here",
        "SKIPPED test_tiny.py::test_marked[1]: not on this kind of machine",
        "SKIPPED test_tiny.py::test_marked[2]: not on this kind of machine",
        "XFAIL test_tiny.py::test_known_bug: a known bug",
        "XPASS test_tiny.py::test_maybe_fixed: a bug that may be fixed",
    ]  # an expected failure goes unchecked as a skip does; a strict one that passed failed
    assert f"{SWITCH}=1: 5 skip(s) or xfail(s) not allowed by {ALLOW_LIST}" in done.stdout
    # The same run without the switch: skips are only reported, as in any `make test`.
    plain = pytest_run(suite, "# nothing allowed\n", strict=False)
    assert plain.returncode == pytest.ExitCode.TESTS_FAILED, plain.stdout + plain.stderr
    assert refused(plain) == []
    assert "1 failed" in plain.stdout  # the strict xfail that passed, with or without the guard


def test_allowed_skips_pass_and_only_those(suite: Path) -> None:
    allowed = (
        "# why each may be skipped\n\n"
        "test_tiny.py::test_needs_a_frobnicator CI has no frobnicator, and never will\n"
    )
    done = pytest_run(suite, allowed)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert [line.split(": ")[0] for line in refused(done)] == [
        "SKIPPED test_tiny.py::test_marked[1]",
        "SKIPPED test_tiny.py::test_marked[2]",
        "XFAIL test_tiny.py::test_known_bug",
        "XPASS test_tiny.py::test_maybe_fixed",
    ]
    allowed += "test_tiny.py::test_marked[[]*] only on that machine\n"
    allowed += "test_tiny.py::test_known_bug its fix is another issue's, not yet made\n"
    allowed += "test_tiny.py::test_maybe_fixed its fix is another issue's, perhaps made\n"
    done = pytest_run(suite, allowed, args=("-k", "not strictly"))
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert refused(done) == []
    assert "3 skipped" in done.stdout and "1 xfailed" in done.stdout


def test_a_module_skipped_at_import_is_named_and_its_id_allows_it(tmp_path: Path) -> None:
    (tmp_path / "test_whole.py").write_text(MODULE_SKIP)
    done = pytest_run(tmp_path, "")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert refused(done) == ["SKIPPED test_whole.py: this whole module needs a frobnicator"]
    done = pytest_run(tmp_path, "test_whole.py no frobnicator in CI\n")
    assert done.returncode != pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert refused(done) == []


def test_in_parallel_workers_every_skip_is_named(tmp_path: Path) -> None:
    """`make test` runs pytest-xdist workers: the skips of every worker count, and modules
    skipped at import for the same reason are each judged by their own id."""
    (tmp_path / "test_tiny.py").write_text(TESTS)
    for name in ("test_whole.py", "test_whole_too.py"):
        (tmp_path / name).write_text(MODULE_UNMET)
    allowed = "test_whole.py no frobnicator in CI\n"
    done = pytest_run(tmp_path, allowed, args=("-p", "xdist", "-n", "2", "--dist", "loadgroup"))
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert sorted(refused(done)) == [
        "SKIPPED test_tiny.py::test_marked[1]: not on this kind of machine",
        "SKIPPED test_tiny.py::test_marked[2]: not on this kind of machine",
        "SKIPPED test_tiny.py::test_needs_a_frobnicator: no frobnicator here",
        "SKIPPED test_whole_too.py: no frobnicator here",
        "XFAIL test_tiny.py::test_known_bug: a known bug",
        "XPASS test_tiny.py::test_maybe_fixed: a bug that may be fixed",
    ]


def test_a_failing_run_stays_failed(tmp_path: Path) -> None:
    (tmp_path / "test_bad.py").write_text("def test_bad():\n    raise AssertionError\n")
    done = pytest_run(tmp_path, "")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED
    assert refused(done) == []


def test_an_allowed_skip_needs_its_reason_and_the_list_must_exist(suite: Path) -> None:
    done = pytest_run(suite, "test_tiny.py::test_needs_a_frobnicator\n")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "skips_allowed.txt:1: test_tiny.py::test_needs_a_frobnicator is allowed no reason" in (
        done.stderr
    )
    done = pytest_run(suite, None)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"{SWITCH}=1, but there is no" in done.stderr


def test_the_projects_allow_list_is_short_and_names_existing_tests() -> None:
    """Every entry has its reason (read_allow_list refuses one without) and names a test file
    that exists; the list stays short: a skip CI can avoid, it should."""
    entries = read_allow_list(CHECKOUT / ALLOW_LIST)
    assert 0 < len(entries) <= 5
    files = [str(p.relative_to(CHECKOUT)) for p in (CHECKOUT / "tests").rglob("test_*.py")]
    for entry in entries:
        name = entry.pattern.split("::")[0]
        assert fnmatch.filter(files, name), f"{entry.pattern}: no such test file"
        assert len(entry.reason) > 20, entry


def test_a_missing_prerequisite_skips_with_its_line_or_fails_where_required(tmp_path: Path) -> None:
    """Before the test's fixtures start anything: skipped with the line naming what to install,
    or, with its area's switch on (as .ci/run sets PMD_REQUIRE_DEPLOY), failed with it."""
    (tmp_path / "test_deploy.py").write_text(NEEDS)
    started = tmp_path / "server-started"
    line = "frobnicator not found: install Debian's frobnicator (apt-get install frobnicator)"
    plugin = "tests.prerequisites"
    done = pytest_run(tmp_path, None, strict=False, plugin=plugin, args=("-rs",))
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout
    assert line in done.stdout
    started.unlink()  # by the test that has everything: the other's fixture never ran
    required = pytest_run(
        tmp_path, None, strict=False, plugin=plugin, env={"PMD_REQUIRE_DEPLOY": "1"}
    )
    assert required.returncode == pytest.ExitCode.TESTS_FAILED, required.stdout
    assert f"PMD_REQUIRE_DEPLOY=1, but {line}" in required.stdout
    assert "1 passed, 1 error" in required.stdout
    started.unlink()
    # Another area's switch changes nothing here.
    other = pytest_run(
        tmp_path, None, strict=False, plugin=plugin, env={"PMD_REQUIRE_BROWSER": "1"}
    )
    assert other.returncode == pytest.ExitCode.OK, other.stdout + other.stderr


@pytest.mark.parametrize("required", [False, True], ids=["a developer's run", "CI's run"])
def test_the_deploy_tests_follow_their_switch_not_ci(tmp_path: Path, required: bool) -> None:
    """The deploy tests themselves, with no program on PATH: skipped with the line naming
    promtool's package, or failed with it under PMD_REQUIRE_DEPLOY=1, which .ci/run sets (they
    once refused to skip only when CI was set, which .ci/run never did)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "HOME": str(tmp_path), "CI": "true"}
    if required:
        env["PMD_REQUIRE_DEPLOY"] = "1"
    promtool = ("-k", "promtool", "tests/deploy/test_deploy_observability.py")
    done = run_python(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", *promtool, env=env, timeout=120
    )
    line = "promtool not found: install Debian's prometheus (apt-get install prometheus)"
    assert line in done.stdout, done.stdout + done.stderr
    if required:
        assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
        assert "2 errors" in done.stdout
    else:
        assert done.returncode == pytest.ExitCode.OK, done.stdout
        assert "2 skipped" in done.stdout
