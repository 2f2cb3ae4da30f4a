"""The cluster's full form, for the report: `python -m bench.cluster` (root).

Runs `python -m runs.cluster` (the faults) and `python -m runs.cluster --rolling` (a
rolling deploy under 1,000 streams) without `--ci`, each as its own process bounded in time,
and saves what each one's checks said: its violations, the streams it held, the events they
received. docs/scaling.md shows the outcome (bench/scaling_doc.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support.stack import CHECKOUT

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
    cmd = [sys.executable, "-m", "runs.cluster", *args]
    print(f"=== {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=LIMIT_S)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    print(out[-4000:], flush=True)
    found: dict[str, Any] = {"command": " ".join(["python", *cmd[1:]]), "exit": code,
                             "seconds": round(time.monotonic() - started)}  # fmt: skip
    for key, pattern in PATTERNS.items():
        if m := re.search(pattern, out, re.MULTILINE):
            found[key] = int(m.group(1)) if m.group(1).isdigit() else m.group(1)
    found["violation_lines"] = [ln.strip() for ln in out.splitlines() if "VIOLATION" in ln][:10]
    return found


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, help="write the outcomes here")
    args = p.parse_args()
    outcomes = {name: one(argv) for name, argv in RUNS.items()}
    if args.json:
        args.json.write_text(json.dumps(outcomes, indent=2))


if __name__ == "__main__":
    main()
