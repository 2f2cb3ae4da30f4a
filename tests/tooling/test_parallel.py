"""`make test`'s workers (tests/parallel.py): the tests of a group, and of a module sharing a
module-scoped fixture, run on one worker, so that fixture is made once. A real pytest run with
two xdist workers, in a subprocess, of small generated test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tooling.test_ci_guards import pytest_run

SHARED = """
import os
import pytest

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    (tmp_path_factory.getbasetemp().parent.parent / f"built-{os.getpid()}").touch()

@pytest.mark.parametrize("n", range(12))
def test_uses_the_build(n, built):
    pass
"""
GROUPED = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("store")

@pytest.mark.parametrize("n", range(6))
def test_in_the_group(n):
    open(os.path.join(os.path.dirname(__file__), f"store-{os.getpid()}"), "a").close()
"""


def test_a_group_and_a_module_fixture_each_stay_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_shared.py").write_text(SHARED)
    (tmp_path / "test_one.py").write_text(GROUPED)
    (tmp_path / "test_two.py").write_text(GROUPED)
    args = ("-p", "xdist", "-n", "2", "--dist", "loadgroup", "--basetemp", str(tmp_path / "t"))
    done = pytest_run(tmp_path, None, strict=False, plugin="tests.parallel", args=args)
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "24 passed" in done.stdout, done.stdout
    assert len(list(tmp_path.glob("built-*"))) == 1  # the module's fixture, made by one worker
    assert len(list(tmp_path.glob("store-*"))) == 1  # both files of the group, on one worker
