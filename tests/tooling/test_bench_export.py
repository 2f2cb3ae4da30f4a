"""bench.export's report: each target judged on its own figure."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench import report
from bench.runner import FIGURES

COMMITTED = json.loads((FIGURES / "export.json").read_text())


def _store(name: str, ratio: float, growth: float, slowdown: float) -> Any:
    """The committed figures of one store, with the figures each target is judged on set."""
    store: dict[str, Any] = copy.deepcopy(COMMITTED["figures"]["stores"][name])
    idle = store["idle_to_ready_s"]
    store |= {
        "throughput_ratio": ratio,
        "bdr_slowdown": slowdown,
        "busy_to_ready_s": idle * slowdown,
    }
    store["rss"]["growth_mb"] = growth
    return store


def _section(where: Path, **stores: Any) -> str:
    """The export section of docs/benchmarks.md as the page renders it from these figures."""
    where.mkdir()
    figures = COMMITTED["figures"] | {"stores": stores, "servers": ["PostgreSQL 16", "Redis 7"]}
    (where / "export.json").write_text(json.dumps(COMMITTED | {"figures": figures}))
    page = report.benchmarks(where)
    start = page.index("## Full export in parts")
    return page[start : page.find("\n## ", start + 1)]


def test_each_target_passes_or_fails_on_its_own_figure(tmp_path: Path) -> None:
    table = _section(
        tmp_path / "page",
        folder=_store("folder", 0.95, 10.0, 1.1),
        seaweedfs=_store("seaweedfs", 0.8, 45.0, 1.6),
    )
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    throughput = next(v for k, v in rows.items() if "throughput" in k)
    memory = next(v for k, v in rows.items() if "RSS" in k)
    first = next(v for k, v in rows.items() if "time to ready" in k)
    assert "**0.95×**: PASS" in throughput and "**0.80×**: FAIL" in throughput
    assert "**+10.0 MB**: PASS" in memory and "**+45.0 MB**: FAIL" in memory
    assert "**1.10×**: PASS" in first and "**1.60×**: FAIL" in first
    assert "PostgreSQL 16, Redis 7" in table
