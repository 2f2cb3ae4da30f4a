"""The cluster run's checks of its own processes: none ends unless the run ended it (a fault, a
deploy, the end), and no server or worker host logs an ERROR or a traceback. The supervisor
starts a service host's process again, as compose's `restart: unless-stopped` would."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runs.chaos.checks import Report
from runs.cluster.netns import Host

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z]+) (\S+) \[[^\]]*\]: (.*)$")
TRACEBACK = "Traceback (most recent call last):"
SERVICE_HOSTS = ("srv", "wrk")
# A record: level ("OUTPUT" before any record), logger, message, the lines after the first.
Record = tuple[str, str, str, list[str]]


def records(text: str) -> Iterator[Record]:
    """The log records of a process's output; a line that starts none belongs to the last."""
    record: Record | None = None
    for line in text.splitlines():
        if (match := RECORD.match(line)) is not None:
            if record is not None:
                yield record
            record = (match[1], match[2], match[3], [])
        elif record is None:
            record = ("OUTPUT", "-", line, [])
        else:
            record[3].append(line)
    if record is not None:
        yield record


def log_findings(name: str, text: str) -> list[str]:
    """Each ERROR or CRITICAL record, and each carrying a traceback, of log `name` as a line."""
    out = []
    for level, logger, message, more in records(text):
        exception = None
        if TRACEBACK in (message, *more):
            tail = [line for line in more if line.strip() and not line.startswith(" ")]
            exception = tail[-1] if tail else TRACEBACK
        if level not in ("ERROR", "CRITICAL") and exception is None:
            continue
        line = f"{name}: {level} {logger}: {message[:200]}"
        out.append(line + (f" (traceback: {exception[:160]})" if exception else ""))
    return out


def service_logs(logs: Path, hosts: Iterable[str]) -> list[str]:
    """`log_findings` of every server and worker host's log."""
    found = []
    for name in sorted(h for h in hosts if h.startswith(SERVICE_HOSTS)):
        if (path := logs / f"{name}.log").exists():
            found += log_findings(path.name, path.read_text(errors="replace"))
    return found


@dataclass
class Supervisor:
    """Finds the processes that exited unasked (`Host.reap`), says so, and has a service
    host's started again (`restart`)."""

    hosts: dict[str, Host]
    restart: Callable[[str], Awaitable[None]]
    say: Callable[[str], None] = print

    async def watch(self, every: float = 0.5) -> None:
        while True:
            for exited in [e for host in self.hosts.values() for e in host.reap()]:
                restart = exited.host.startswith(SERVICE_HOSTS)
                self.say(f"{exited.describe()}{'; started again' if restart else ''}")
                if restart and not self.hosts[exited.host].procs:
                    await self.restart(exited.host)
            await asyncio.sleep(every)


def check_processes(report: Report, hosts: Collection[Host], logged: list[str]) -> None:
    """The two count lines of the report: process starts (every exit nobody asked for, the
    ones a lost host's kill reaped too), and the service hosts' logs."""
    for host in hosts:
        host.reap()
    ended = [e.describe() for host in hosts for e in host.unexpected]
    starts = sum(host.started for host in hosts)
    report.count("process starts that ended only when the run stopped them (a fault, a "
                 "deploy; a service host's is started again, as its supervisor would)",
                 starts - len(ended), starts, ended)  # fmt: skip
    report.count("server and worker logs without an ERROR or a traceback",
                 1 - bool(logged), 1, logged)  # fmt: skip
