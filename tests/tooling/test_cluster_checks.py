"""The runs' checks of their own processes (runs/chaos/procs.py; the cluster's logs,
runs/cluster/checks.py), on processes of this machine and on recorded logs: no namespaces, no
root, a second or two."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runs.chaos.checks import Report, check_processes
from runs.chaos.procs import Supervisor
from runs.cluster.checks import SERVICE_HOSTS, log_findings
from runs.cluster.netns import Host, pids_of_run
from tests.helpers import CHECKOUT


class LocalHost(Host):
    """A host whose processes run here, outside any namespace."""

    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)


def _host(tmp_path: Path, name: str = "wrk1") -> LocalHost:
    return LocalHost(name, f"test-{name}", "10.0.0.1", tmp_path, "v1", "sw", "pmdtest")


def _sh(host: Host, tmp_path: Path, script: str) -> subprocess.Popen[bytes]:
    return host.spawn(["sh", "-c", script], tmp_path / f"{host.name}.log")


def test_an_exit_nobody_asked_for_is_found_with_its_code_and_last_line(tmp_path: Path) -> None:
    host = _host(tmp_path)
    _sh(host, tmp_path, "echo 'ERROR gave up'; exit 3").wait()
    found = host.reap()
    assert [e.code for e in found] == [3] and host.unexpected == found and host.procs == []
    assert found[0].describe().startswith("wrk1: sh -c ")
    assert "ended unasked: exit code 3; its last line: ERROR gave up" in found[0].describe()


def test_a_process_the_run_stops_is_no_finding(tmp_path: Path) -> None:
    host = _host(tmp_path)
    lost = _sh(host, tmp_path, "exec sleep 30")
    deployed = _sh(host, tmp_path, "exec sleep 30")
    host.stopping.add(deployed.pid)  # a deploy's SIGTERM
    deployed.send_signal(signal.SIGTERM)
    deployed.wait()
    host.kill_all()  # a host lost
    assert lost.returncode == -signal.SIGKILL
    assert host.reap() == [] and host.unexpected == [] and host.procs == []


def test_a_sigkill_the_run_did_not_send_is_found(tmp_path: Path) -> None:
    """What --break-crash-check does to a worker host, on a process of this machine."""
    host = _host(tmp_path)
    proc = _sh(host, tmp_path, "exec sleep 30")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (found,) = host.reap()
    assert "ended unasked: killed by SIGKILL" in found.describe()


def test_a_lost_host_keeps_the_crash_that_came_before_it(tmp_path: Path) -> None:
    """A process that had died by itself is not forgotten when its host is then lost."""
    host = _host(tmp_path)
    _sh(host, tmp_path, "exit 1").wait()
    _sh(host, tmp_path, "exec sleep 30")
    host.kill_all()
    assert [e.code for e in host.unexpected] == [1] and host.procs == []


def test_the_output_of_a_crash_ends_where_its_restart_begins(tmp_path: Path) -> None:
    host = _host(tmp_path)
    _sh(host, tmp_path, "echo first; exit 1").wait()
    (found,) = host.reap()
    _sh(host, tmp_path, "echo second").wait()
    assert found.output() == "first\n"


def test_every_process_of_a_run_carries_its_tag(tmp_path: Path) -> None:
    host = _host(tmp_path)
    proc = _sh(host, tmp_path, "exec sleep 30")
    try:
        # Its environment is readable once the child has exec'd: on a loaded machine that can
        # come a moment after Popen returns (seen once in CI-like load).
        deadline = time.monotonic() + 10
        while proc.pid not in pids_of_run("pmdtest") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.pid in pids_of_run("pmdtest")
        assert proc.pid not in pids_of_run("pmdtes")
    finally:
        host.kill_all()


def test_the_supervisor_restarts_a_service_host_and_reports_every_exit(tmp_path: Path) -> None:
    hosts: dict[str, Host] = {"wrk1": _host(tmp_path, "wrk1"), "db": _host(tmp_path, "db")}
    restarted: list[str] = []

    async def restart(name: str) -> None:
        restarted.append(name)
        _sh(hosts[name], tmp_path, "exec sleep 30")

    said: list[str] = []
    supervisor = Supervisor(hosts, restart, SERVICE_HOSTS, say=said.append)
    for host in hosts.values():
        _sh(host, tmp_path, "exit 2")

    async def watch_a_while() -> None:
        task = asyncio.create_task(supervisor.watch(every=0.05))
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(watch_a_while())
    try:
        assert restarted == ["wrk1"]  # the database host has no supervisor to restart it
        assert sorted(line.split(":")[0] for line in said) == ["db", "wrk1"]
        report = Report()
        check_processes(report, hosts.values(), [])
        assert report.lines[0].endswith(": 1/3")
        assert len(report.violations) == 2
        assert all("ended unasked: exit code 2" in v for v in report.violations)
    finally:
        hosts["wrk1"].kill_all()


LINE = "2026-11-24 21:14:{:02d},000 {} {} [-]: {}"


def _log(*records: tuple[str, str, str], after: Sequence[str] = ()) -> str:
    lines = [LINE.format(i, *r) for i, r in enumerate(records)]
    return "\n".join([*lines, *after]) + "\n"


TRACE = ["Traceback (most recent call last):", '  File "x.py", line 1, in f', "    g()"]


def test_an_error_record_or_a_traceback_is_a_finding() -> None:
    text = _log(
        ("INFO", "arq.worker", "job done"),
        ("WARNING", "pmd_service.startup", "Redis is unreachable (try 1; next in 0.5 s)"),
        ("ERROR", "pmd_service.startup", "pmd-worker: gave up after 10 tries"),
        ("WARNING", "asyncpg.pool", "Failed to restore the pool connection floor; retrying"),
        after=[*TRACE, "ConnectionRefusedError: [Errno 111] Connect call failed"],
    )
    assert log_findings("wrk2.log", text) == [
        "wrk2.log: ERROR pmd_service.startup: pmd-worker: gave up after 10 tries",
        "wrk2.log: WARNING asyncpg.pool: Failed to restore the pool connection floor; retrying "
        "(traceback: ConnectionRefusedError: [Errno 111] Connect call failed)",
    ]


def test_a_crash_before_the_first_record_is_a_finding() -> None:
    found = log_findings("srv1.log", "\n".join([*TRACE, "ImportError: no module"]) + "\n")
    assert found == [
        "srv1.log: OUTPUT -: Traceback (most recent call last): (traceback: ImportError: no module)"
    ]


def test_the_run_and_its_workload_import_each_other_no_more() -> None:
    """runs/cluster/run.py (the entry point) imports the run; the run imports only the hosts."""
    probe = "import sys, runs.cluster.client; print('runs.cluster.run' in sys.modules)"  # the entry point (run.py) imports the client; never the reverse
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=CHECKOUT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
