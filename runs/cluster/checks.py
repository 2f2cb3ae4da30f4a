"""The cluster run's checks of its own processes: none ends unless the run ended it (a fault, a
deploy, the end), and no server or worker host logs an ERROR or a traceback. The supervisor
starts a service host's process again, as compose's `restart: unless-stopped` would."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runs.chaos.checks import Report
from runs.cluster.netns import Exited, Host

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z]+) (\S+) \[[^\]]*\]: (.*)$")
TRACEBACK = "Traceback (most recent call last):"
SERVICE_HOSTS = ("srv", "wrk")
# A record: level ("OUTPUT" before any record), logger, message, the lines after the first.
Record = tuple[str, str, str, list[str]]


@dataclass(frozen=True)
class Known:
    """A finding not fixed in the service yet: counted, not a violation. Remove with the fix."""

    level: str
    logger: str
    message: re.Pattern[str]
    frame: str  # a text its traceback must contain
    what: str

    def covers(self, record: Record) -> bool:
        level, logger, message, more = record
        return ((level, logger) == (self.level, self.logger)
                and self.message.search(message) is not None
                and any(self.frame in line for line in more))  # fmt: skip


# None today. (The first: a transient database error in a job's claim ended the job as failed,
# with a traceback; jobs/attempts.claimed now makes it a Retry.)
KNOWN: tuple[Known, ...] = ()


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


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)  # Known.what: times seen


def log_findings(
    name: str, text: str, known: Iterable[Known] = KNOWN, into: Findings | None = None
) -> Findings:
    """Each ERROR or CRITICAL record, and each carrying a traceback, of log `name` as a line;
    one of the `known` findings is counted instead."""
    out, exempt = into if into is not None else Findings(), list(known)
    for record in records(text):
        level, logger, message, more = record
        exception = None
        if TRACEBACK in (message, *more):
            tail = [line for line in more if line.strip() and not line.startswith(" ")]
            exception = tail[-1] if tail else TRACEBACK
        if level not in ("ERROR", "CRITICAL") and exception is None:
            continue
        if seen := [k for k in exempt if k.covers(record)]:
            out.known[seen[0].what] += 1
            continue
        line = f"{name}: {level} {logger}: {message[:200]}"
        out.violations.append(line + (f" (traceback: {exception[:160]})" if exception else ""))
    return out


def service_logs(logs: Path, hosts: Iterable[str]) -> Findings:
    """`log_findings` of every server and worker host's log."""
    found = Findings()
    for name in sorted(h for h in hosts if h.startswith(SERVICE_HOSTS)):
        if (path := logs / f"{name}.log").exists():
            log_findings(path.name, path.read_text(errors="replace"), into=found)
    return found


@dataclass
class Supervisor:
    """Finds the processes that exited unasked (`Host.reap`), says so, and has a service
    host's started again (`restart`)."""

    hosts: dict[str, Host]
    restart: Callable[[str], Awaitable[None]]
    say: Callable[[str], None] = print
    found: list[Exited] = field(default_factory=list)

    def scan(self) -> list[Exited]:
        new = [e for host in self.hosts.values() for e in host.reap()]
        self.found += new
        return new

    async def watch(self, every: float = 0.5) -> None:
        while True:
            for exited in self.scan():
                restart = exited.host.startswith(SERVICE_HOSTS)
                self.say(f"{exited.describe()}{'; started again' if restart else ''}")
                if restart and not self.hosts[exited.host].procs:
                    await self.restart(exited.host)
            await asyncio.sleep(every)


def check_processes(report: Report, supervisor: Supervisor, logged: Findings) -> None:
    """The two count lines of the report: process starts, and the service hosts' logs."""
    supervisor.scan()
    ended = [e.describe() for e in supervisor.found]
    starts = sum(host.started for host in supervisor.hosts.values())
    report.count("process starts that ended only when the run stopped them (a fault, a "
                 "deploy; a service host's is started again, as its supervisor would)",
                 starts - len(ended), starts, ended)  # fmt: skip
    report.count("server and worker logs without an ERROR or a traceback",
                 1 - bool(logged.violations), 1, logged.violations)  # fmt: skip
    for what, n in logged.known.items():
        report.info(f"KNOWN, not fixed in the service yet ({n}x): {what}")
