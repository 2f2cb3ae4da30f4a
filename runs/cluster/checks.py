"""The cluster run's check of its service hosts' logs: no ERROR, no traceback."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z]+) (\S+) \[[^\]]*\]: (.*)$")
TRACEBACK = "Traceback (most recent call last):"
SERVICE_HOSTS = ("srv", "wrk")  # the server and worker hosts: started again when they exit
# A record: level ("OUTPUT" before any record), logger, message, the lines after the first.
Record = tuple[str, str, str, list[str]]


def records(text: str) -> Iterator[Record]:
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
    """Each ERROR or CRITICAL record, or one with a traceback, of log `name` as a line."""
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
    found = []
    for name in sorted(h for h in hosts if h.startswith(SERVICE_HOSTS)):
        if (path := logs / f"{name}.log").exists():
            found += log_findings(path.name, path.read_text(errors="replace"))
    return found
