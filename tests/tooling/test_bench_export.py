"""bench.export's report: each target judged on its own figure, the control read the right way
round, and the second worker's queue on the same Redis."""

from __future__ import annotations

from typing import Any

from bench.export import other_queue
from bench.sections_export import export_section


def _store(ratio: float, growth: float, slowdown: float, control: float | None) -> dict[str, Any]:
    bdr = {"bytes": 128e6, "build_s": 0.3, "cpu_s": 0.3, "to_ready_s": 0.3}
    store: dict[str, Any] = {
        "rounds": 1,
        "idle_bdrs": [bdr, bdr],
        "exports": [{"parts": 12, "rss_trace": [[0.5, 70.0], [1.0, 71.0]]}],
        "export_throughput_mb_s": 400 * ratio,
        "bdr_throughput_mb_s": 400.0,
        "bdr_median_mb_s": 420.0,
        "throughput_ratio": ratio,
        "throughput_ratio_by_round": [ratio],
        "export_cpu_s_per_gb": 2.2,
        "bdr_cpu_s_per_gb": 2.0,
        "idle_to_ready_s": 0.3,
        "busy_to_ready_s": 0.3 * slowdown,
        "busy_inside": 5,
        "bdr_slowdown": slowdown,
        "rss": {
            "baseline_mb": 60.0,
            "peak_mb": 60 + growth,
            "growth_mb": growth,
            "samples": 2000,
            "bdr_growth_mb": 8.0,
            "peak_with_bdrs_mb": 80.0,
            "later_peaks_mb": [75.0],
        },
    }
    if control is not None:
        store["control"] = {"slowdown": control, "to_ready_s": 0.3 * control, "inside": 5}
    return store


def _figures(**stores: dict[str, Any]) -> dict[str, Any]:
    return {"artworks": 3000, "artwork_bytes": 3e9, "part_bytes": 256 << 20, "stores": stores,
            "servers": ["PostgreSQL 16", "Redis 7"]}  # fmt: skip


def test_each_target_passes_or_fails_on_its_own_figure() -> None:
    figures = _figures(folder=_store(0.95, 10.0, 1.1, 2.5), seaweedfs=_store(0.8, 45.0, 1.6, None))
    table = export_section(figures)["export_table"]
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    throughput = next(v for k, v in rows.items() if "throughput" in k)
    memory = next(v for k, v in rows.items() if "RSS" in k)
    first = next(v for k, v in rows.items() if "time to ready" in k)
    assert "**0.95×**: PASS" in throughput and "**0.80×**: FAIL" in throughput
    assert "**+10.0 MB**: PASS" in memory and "**+45.0 MB**: FAIL" in memory
    assert "**1.10×**: PASS" in first and "**1.60×**: FAIL" in first
    assert "Servers: PostgreSQL 16, Redis 7." in table


def test_a_control_within_the_target_says_the_figure_proves_nothing_alone() -> None:
    notes = export_section(_figures(folder=_store(1.0, 10.0, 1.0, 1.3)))["export_notes"]
    assert "**1.30×** idle" in notes and "does not show the BDRs going first" in notes
    notes = export_section(_figures(folder=_store(1.0, 10.0, 1.0, 2.5)))["export_notes"]
    assert "**2.50×** idle" in notes and "is the BDRs going first" in notes


def test_the_control_worker_reads_another_database_of_the_same_redis() -> None:
    assert other_queue("unix:///run/r.sock") == "unix:///run/r.sock?db=1"
    assert other_queue("unix:///run/r.sock?db=3") == "unix:///run/r.sock?db=4"
    assert other_queue("redis://:pw@host:6379/15") == "redis://:pw@host:6379/0"
    assert other_queue("redis://host:6379") == "redis://host:6379/1"
