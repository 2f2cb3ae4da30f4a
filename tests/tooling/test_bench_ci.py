"""A benchmark that guards a claim the code can break runs at its `--ci` size here, so CI runs it
(issue 77, item 6; the cleanup policies' first). At that size its times are no figures to go by:
what is held is the behaviour its claim rests on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import run_python


def test_the_policies_benchmark_runs_every_due_policy_once(tmp_path: Path) -> None:
    out = tmp_path / "policies.json"
    # Its own embedded servers, as `python -m bench.policies --ci` runs on a fresh clone.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    done = run_python("-m", "bench.policies", "--ci", "--json", str(out), env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    f = json.loads(out.read_text())
    ran = (f["ran_once"], f["ran_more"], f["never_ran"], f["still_due"])
    assert ran == (f["owners"], 0, 0, 0), f
    assert f["hidden"] == f["owners"] * f["matching"] and f["statuses"] == {"ok": f["owners"]}
