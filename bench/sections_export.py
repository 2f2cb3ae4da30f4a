"""The figures of bench.export (a full export in parts) as its block of
bench/templates/benchmarks.md.j2 reads them: the stores measured, in the report's order, with
the targets the benchmark holds them to. The sentences are in the template."""

from __future__ import annotations

from typing import Any

from bench.export import TARGET_BDR_SLOWDOWN, TARGET_GROWTH_MB, TARGET_THROUGHPUT

STORES = (("folder", "folder (`BDR_PATH`)", "folder"),
          ("seaweedfs", "SeaweedFS (`BDR_STORE=s3://…`)", "SeaweedFS"))  # fmt: skip


def export_section(figures: dict[str, Any]) -> dict[str, Any]:
    stores = [
        {"name": name, "label": label, "short": short} | figures["stores"][name]
        for name, label, short in STORES
        if name in figures["stores"]
    ]
    return figures | {
        "measured": stores,
        "target": {"throughput": TARGET_THROUGHPUT, "growth_mb": TARGET_GROWTH_MB,
                   "slowdown": TARGET_BDR_SLOWDOWN},
    }  # fmt: skip
