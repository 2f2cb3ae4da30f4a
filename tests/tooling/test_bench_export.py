"""bench.export's rows of docs/benchmarks.md: each target judged on its own figure."""

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


def _rows(where: Path, **stores: Any) -> tuple[dict[str, str], str]:
    """The export's rows of docs/benchmarks.md's targets, by target, and its details' section,
    as the pages render them from these figures."""
    where.mkdir()
    figures = COMMITTED["figures"] | {"stores": stores, "servers": ["PostgreSQL 16", "Redis 7"]}
    (where / "export.json").write_text(json.dumps(COMMITTED | {"figures": figures}))
    rows = [r for r in report.benchmarks(where).splitlines() if r.endswith("bench.export` |")]
    details = report.details(where)
    start = details.index("## Full export in parts")
    return {r.split(" | ")[0]: r for r in rows}, details[start : details.find("\n## ", start + 1)]


def test_each_target_passes_or_fails_on_its_own_figure(tmp_path: Path) -> None:
    rows, section = _rows(
        tmp_path / "page",
        folder=_store("folder", 0.95, 10.0, 1.1),
        seaweedfs=_store("seaweedfs", 0.8, 45.0, 1.6),
    )

    def verdict(store: str, target: str) -> list[str]:
        (row,) = [v for k, v in rows.items() if k.startswith(f"| {store}:") and target in k]
        return row.split(" | ")[1:3]

    assert verdict("folder", "throughput") == ["0.95×", "met"]
    assert verdict("SeaweedFS", "throughput") == ["0.80×", "missed"]
    assert verdict("folder", "RSS") == ["+10.0 MB", "met"]
    assert verdict("SeaweedFS", "RSS") == ["+45.0 MB", "missed"]
    assert verdict("folder", "time to ready") == ["1.10×", "met"]
    assert verdict("SeaweedFS", "time to ready") == ["1.60×", "missed"]
    assert "PostgreSQL 16, Redis 7" in section
