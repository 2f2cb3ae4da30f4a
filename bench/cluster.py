"""The cluster's full form, for the report: `python -m bench.cluster` (root).

`python -m runs.cluster` (the faults) and `--rolling` (a rolling deploy under 1,000 streams)
without `--ci`, each bounded in time: what each one's checks said (docs/scaling.md shows it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

from bench import cli
from bench.runner import bounded

RUNS = {"faults": (), "rolling": ("--rolling",)}
LIMIT_S = 900
PATTERNS = {
    "streams": r"^(\d+) streams open",
    "sse_connections": r"SSE: (\d+) connections",
    "events": r"SSE: \d+ connections, (\d+) bdr_update events",
    "violations": r"^cluster: \w+: (\d+) violations",
    "every_event": r"streams that received every event .*: (\d+/\d+)",
    "views": r"SSE clients whose final view equals the database .*?: (\d+/\d+)",
}


def one(args: tuple[str, ...]) -> dict[str, Any]:
    """One run's exit status, seconds, figures (PATTERNS) and first VIOLATION lines."""
    cmd = [sys.executable, "-m", "runs.cluster", *args]
    print(f"=== {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    code, out = bounded(cmd, LIMIT_S, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = out or ""
    print(out[-4000:], flush=True)
    found: dict[str, Any] = {"command": " ".join(["python", *cmd[1:]]), "exit": code,
                             "seconds": round(time.monotonic() - started)}  # fmt: skip
    for key, pattern in PATTERNS.items():
        if m := re.search(pattern, out, re.MULTILINE):
            found[key] = int(m.group(1)) if m.group(1).isdigit() else m.group(1)
    found["violation_lines"] = [ln.strip() for ln in out.splitlines() if "VIOLATION" in ln][:10]
    return found


def main() -> None:
    args = cli.parser("cluster", __doc__).parse_args()
    cli.save(args.json, {name: one(argv) for name, argv in RUNS.items()})


if __name__ == "__main__":
    main()
