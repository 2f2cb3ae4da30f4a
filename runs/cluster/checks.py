"""The cluster run's checks of its own processes (runs/cluster/run.py).

No process the run started may end unless the run ended it: a planned fault (a host lost, a
deploy's SIGTERM) or the end of the run. The supervisor finds those that did, every half
second, and starts a service host's process again, as its supervisor in production would
(compose's `restart: unless-stopped`), so the rest of the run still has every host; each one
found is a violation, whatever happened next. Nor may a service process (server and worker
hosts) log an ERROR, or a traceback, for a condition it handles: a host cut off or lost is
such a condition.
"""

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


@dataclass(frozen=True)
class Known:
    """A finding of these checks in the service that is not fixed yet: each run reports how
    often it was seen, without counting it as a violation. Remove it with the fix."""

    level: str
    logger: str
    message: re.Pattern[str]
    frame: str  # a text its traceback must contain
    what: str

    def covers(self, record: Record) -> bool:
        return (
            (record.level, record.logger) == (self.level, self.logger)
            and self.message.search(record.message) is not None
            and any(self.frame in line for line in record.more)
        )


# None today. (The first: a transient database error in a job's claim ended the job as failed,
# with a traceback; jobs/attempts.claimed now makes it a Retry.)
KNOWN: tuple[Known, ...] = ()


@dataclass(frozen=True)
class Record:
    level: str  # "OUTPUT" for lines written before any log record
    logger: str
    message: str
    more: tuple[str, ...]  # the lines after the first: a traceback, a multi-line message

    @property
    def traceback(self) -> str | None:
        """The exception a traceback in this record ends with, if it has one."""
        if TRACEBACK not in (self.message, *self.more):
            return None
        tail = [line for line in self.more if line.strip() and not line.startswith(" ")]
        return tail[-1] if tail else TRACEBACK


def records(text: str) -> Iterator[Record]:
    """The log records of a process's output in the service's text format; a line that starts
    no record belongs to the one before it."""
    head: tuple[str, str, str] | None = None
    more: list[str] = []
    for line in text.splitlines():
        match = RECORD.match(line)
        if match is None:
            if head is None:
                head = ("OUTPUT", "-", line)
            else:
                more.append(line)
            continue
        if head is not None:
            yield Record(*head, tuple(more))
        head, more = (match[1], match[2], match[3]), []
    if head is not None:
        yield Record(*head, tuple(more))


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)  # Known.what: times seen


def log_findings(
    name: str, text: str, known: Iterable[Known] = KNOWN, into: Findings | None = None
) -> Findings:
    """Each ERROR or CRITICAL record, and each record carrying a traceback, of one process log
    (`name`), as a line; one of the `known` findings is counted instead."""
    out = into if into is not None else Findings()
    exempt = list(known)
    for r in records(text):
        exception = r.traceback
        if r.level not in ("ERROR", "CRITICAL") and exception is None:
            continue
        if seen := [k for k in exempt if k.covers(r)]:
            out.known[seen[0].what] += 1
            continue
        line = f"{name}: {r.level} {r.logger}: {r.message[:200]}"
        out.violations.append(line + (f" (traceback: {exception[:160]})" if exception else ""))
    return out


def service_logs(logs: Path, hosts: Iterable[str]) -> Findings:
    """`log_findings` of every server and worker host's log."""
    found = Findings()
    for name in sorted(h for h in hosts if h.startswith(SERVICE_HOSTS)):
        path = logs / f"{name}.log"
        if path.exists():
            log_findings(path.name, path.read_text(errors="replace"), into=found)
    return found


@dataclass
class Supervisor:
    """Finds the processes that exited without the run stopping them (`Host.reap`), says so,
    and has a service host's started again (`restart`)."""

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

    def starts(self) -> int:
        return sum(host.started for host in self.hosts.values())

    def describe(self) -> list[str]:
        self.scan()
        return [e.describe() for e in self.found]


def check_processes(report: Report, supervisor: Supervisor, logged: Findings) -> None:
    """The two count lines of the report: process starts, and the service hosts' logs."""
    ended = supervisor.describe()
    starts = supervisor.starts()
    report.count("process starts that ended only when the run stopped them (a fault, a "
                 "deploy; a service host's is started again, as its supervisor would)",
                 starts - len(ended), starts, ended)  # fmt: skip
    report.count("server and worker logs without an ERROR or a traceback",
                 1 - bool(logged.violations), 1, logged.violations)  # fmt: skip
    for what, n in logged.known.items():
        report.info(f"KNOWN, not fixed in the service yet ({n}x): {what}")
