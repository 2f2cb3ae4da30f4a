"""The machine's programs (support/tools.py): a missing one is one line naming its Debian package."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from runs.chaos import run as chaos
from runs.chaos.procs import Tmpfs
from runs.cluster import run as cluster
from support import tools
from tests.helpers import CHECKOUT, run_python


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH an empty folder and no sbin folder searched: every program is missing."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(tools, "SBIN", ())
    return empty


def test_a_missing_program_is_one_line_naming_its_debian_package(nothing_installed: Path) -> None:
    assert tools.find("pgbouncer") is None
    assert tools.missing(["pgbouncer"]) == (
        "pgbouncer not found: install Debian's pgbouncer (apt-get install pgbouncer)"
    )
    # Several at once: still one line, each package once.
    assert tools.missing(["nsenter", "ip", "unshare"]) == (
        "nsenter, ip, unshare not found: install Debian's util-linux, iproute2 "
        "(apt-get install util-linux iproute2)"
    )
    assert tools.packages(["nsenter", "ip", "unshare"]) == ["util-linux", "iproute2"]


def test_a_program_on_path_or_in_an_sbin_folder_is_found(
    nothing_installed: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stub = nothing_installed / "caddy"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    assert tools.find("caddy") == str(stub)
    assert tools.missing(["caddy"]) is None
    # Debian's /usr/sbin, which a normal user's PATH lacks: pgbouncer, haproxy, nginx.
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "pgbouncer").write_text("#!/bin/sh\n")
    (sbin / "pgbouncer").chmod(0o755)
    monkeypatch.setattr(tools, "SBIN", (str(sbin),))
    assert tools.find("pgbouncer") == str(sbin / "pgbouncer")


def test_a_program_outside_the_table_is_refused() -> None:
    """A check of a program the table lacks would have no package to name: it fails at once."""
    with pytest.raises(KeyError, match="PACKAGES"):
        tools.find("frobnicate")


def test_the_cluster_and_the_chaos_run_stop_with_the_line_before_starting_anything(
    nothing_installed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Were the check missing, these would be next: let them fail loudly rather than start.
    monkeypatch.setattr(cluster, "possible", lambda: pytest.fail("the cluster went on"))
    monkeypatch.setattr(Tmpfs, "possible", lambda: pytest.fail("the chaos run went on"))
    assert cluster.main(["--ci"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"cluster: {tools.missing(tools.CLUSTER)}\n"
    assert "haproxy" in err and "apt-get install iproute2 util-linux haproxy pgbouncer" in err

    assert chaos.main(["--ci", "--pooler", "pgbouncer"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "chaos: pgbouncer not found: install Debian's pgbouncer (apt-get install pgbouncer)\n"
    )


def test_python_m_runs_cluster_with_an_empty_path_prints_one_line(tmp_path: Path) -> None:
    """Whatever the sbin folders hold, nsenter, unshare and redis-server live in /usr/bin."""
    empty = tmp_path / "bin"
    empty.mkdir()
    done = run_python("-m", "runs.cluster", "--ci", env={"PATH": str(empty)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    match = re.fullmatch(
        r"cluster: (.+) not found: install Debian's (.+) \(apt-get install (.+)\)", line
    )
    assert match is not None, line
    absent = match[1].split(", ")
    assert {"nsenter", "unshare", "redis-server"} <= set(absent) <= set(tools.CLUSTER)
    assert match[3].split() == list(dict.fromkeys(tools.PACKAGES[t] for t in absent))


def test_ci_installs_every_program_of_the_table_from_it(tmp_path: Path) -> None:
    """`.ci/run` asks it before the virtualenv exists: the standard library only, hence `-S`."""
    script = (CHECKOUT / ".ci" / "run").read_text()
    match = re.search(r"^PROGRAMS=\((.+?)\)", script, re.MULTILINE | re.DOTALL)
    assert match is not None
    assert sorted(shlex.split(match[1])) == sorted(tools.PACKAGES)
    assert 'python3 -m support.tools --packages "${PROGRAMS[@]}"' in script
    empty = tmp_path / "bin"
    empty.mkdir()
    programs = ("nsenter", "promtool", "unshare")
    done = run_python(
        "-S", "-m", "support.tools", "--packages", *programs, env={"PATH": str(empty)}, check=True
    )
    assert done.stdout == "util-linux prometheus\n"


def test_the_clusters_help_names_everything_it_needs() -> None:
    """Its help names every program of its table with its Debian package, root and the time."""
    done = run_python("-m", "runs.cluster", "--help", check=True)
    text = " ".join(done.stdout.split())  # argparse wraps the epilog
    assert text.startswith("usage: python -m runs.cluster")
    needs = text[text.index("Needs:") :]
    assert "root" in needs and "minutes" in needs
    for tool in tools.CLUSTER:
        assert f"{tool} ({tools.PACKAGES[tool]})" in needs, tool
