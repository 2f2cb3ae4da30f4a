"""The report's text for bench.export (a full export in parts): the values of the `${export_*}`
placeholders in bench/benchmarks.md.in, from the benchmark's saved figures. Kept apart from
the other sections' modules so that the export's part of the report moves as one piece."""

from __future__ import annotations

from typing import Any

from bench import fmt
from bench.export import TARGET_BDR_SLOWDOWN, TARGET_GROWTH_MB, TARGET_THROUGHPUT

STORES = (("folder", "folder (`BDR_PATH`)"), ("seaweedfs", "SeaweedFS (`BDR_STORE=s3://…`)"))
SHORT = {"folder": "folder", "seaweedfs": "SeaweedFS"}


def _runs(n: int) -> str:
    return "1 run" if n == 1 else f"{n} runs"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _throughput(f: dict[str, Any]) -> str:
    ratio = f["throughput_ratio"]
    rounds = ", ".join(f"{r:.2f}" for r in f["throughput_ratio_by_round"])
    return (
        f"**{ratio:.2f}×**: {_verdict(ratio >= TARGET_THROUGHPUT)} (export "
        f"{f['export_throughput_mb_s']:.0f} MB/s over {_runs(len(f['exports']))}, BDRs "
        f"{f['bdr_throughput_mb_s']:.0f} MB/s over {len(f['idle_bdrs'])}; by round {rounds})"
    )


def _memory(f: dict[str, Any]) -> str:
    rss = f["rss"]
    growth = rss["growth_mb"]
    return (
        f"**{growth:+.1f} MB**: {_verdict(growth <= TARGET_GROWTH_MB)} ({rss['baseline_mb']:.1f} "
        f"→ {rss['peak_mb']:.1f} MB, {rss['samples']:,} readings; a BDR alone: "
        f"{rss['bdr_growth_mb']:+.1f} MB)"
    )


def _priority(f: dict[str, Any]) -> str:
    slow = f["bdr_slowdown"]
    return (
        f"**{slow:.2f}×**: {_verdict(slow <= TARGET_BDR_SLOWDOWN)} "
        f"({f['busy_to_ready_s'] * 1000:.0f} ms against {f['idle_to_ready_s'] * 1000:.0f} ms, "
        f"medians of {f['busy_inside']} and {len(f['idle_bdrs'])})"
    )


def _notes(name: str, f: dict[str, Any]) -> list[str]:
    label = SHORT[name]
    notes = []
    cpu = f["export_cpu_s_per_gb"] / f["bdr_cpu_s_per_gb"]
    notes.append(
        f"{label}: the worker's CPU time per GB, export ÷ BDR, {cpu:.2f}× "
        f"({f['export_cpu_s_per_gb']:.2f} s against {f['bdr_cpu_s_per_gb']:.2f} s); the BDRs' "
        f"median throughput was {f['bdr_median_mb_s']:.0f} MB/s against their "
        f"{f['bdr_throughput_mb_s']:.0f} MB/s over all their bytes."
    )
    first = f["exports"][0]
    if "rss_trace" in first:
        rss = f["rss"]
        trace = [mb for _, mb in first["rss_trace"]]
        later = ", ".join(f"{mb:.1f}" for mb in rss.get("later_peaks_mb", []))
        notes.append(
            f"{label}: the first export on its own grew the worker by {rss['growth_mb']:.1f} MB, "
            f"a BDR alone by {rss['bdr_growth_mb']:.1f} MB; over the export's {first['parts']} "
            f"parts the RSS stayed between {min(trace):.1f} and {max(trace):.1f} MB (the "
            f"highest of each half second). With BDRs beside an export it peaked at "
            f"{rss['peak_with_bdrs_mb']:.1f} MB"
            + (f", and the later exports on their own peaked at {later} MB." if later else ".")
        )
    if "floors" in f:
        fl = f["floors"]
        what = "objects" if name == "seaweedfs" else "files, each fsynced"
        notes.append(
            f"{label}, the store's floor (the same artworks written plainly as {what}): "
            f"{fl['export_mb_s']:.0f} MB/s for the export's bytes in 256 MiB, "
            f"{fl['bdr_mb_s']:.0f} MB/s for a BDR's 128 artworks in one: **{fl['ratio']:.2f}×** "
            f"by the store alone. The export ran at {fl['export_share']:.2f} of its floor, the "
            f"BDRs at {fl['bdr_share']:.2f} of theirs: per byte against each one's floor the "
            f"export is **{fl['normalized']:.2f}×** a BDR."
        )
    if "control" in f:
        c = f["control"]
        caveat = (
            " Within the target too: in this run the two cores had room enough for both "
            "builds at once, so this run's figure alone does not show the BDRs going first."
            if c["slowdown"] <= TARGET_BDR_SLOWDOWN
            else " So the figure above is the BDRs going first, not a machine with room to spare."
        )
        notes.append(
            f"{label}, the control: the same BDRs while a second worker process built the same "
            f"export (nothing between them): **{c['slowdown']:.2f}×** idle "
            f"({c['to_ready_s'] * 1000:.0f} ms, median of {c['inside']}), against "
            f"{f['bdr_slowdown']:.2f}× with the export in the same worker.{caveat}"
        )
    return notes


def export_section(figures: dict[str, Any]) -> dict[str, str]:
    stores = [(name, label) for name, label in STORES if name in figures["stores"]]
    header = ["target", *(label for _, label in stores)]
    rows = [
        [f"export throughput per byte ≥ {TARGET_THROUGHPUT}× a 128-artwork BDR's"]
        + [_throughput(figures["stores"][name]) for name, _ in stores],
        [f"worker RSS growth during the export ≤ +{TARGET_GROWTH_MB:.0f} MB"]
        + [_memory(figures["stores"][name]) for name, _ in stores],
        [f"a BDR's time to ready while the export builds ≤ {TARGET_BDR_SLOWDOWN}× idle"]
        + [_priority(figures["stores"][name]) for name, _ in stores],
    ]
    table = fmt.table(header, rows)
    size = (
        f"{figures['artworks']:,} artworks, {figures['artwork_bytes'] / 1e9:.2f} GB, exported "
        f"in {figures['stores'][stores[0][0]]['exports'][0]['parts']} parts of at most "
        f"{figures['part_bytes'] >> 20} MiB; rounds: "
        + ", ".join(f"{figures['stores'][name]['rounds']} ({SHORT[name]})" for name, _ in stores)
        + "."
    )
    if "servers" in figures:
        size += f" Servers: {', '.join(figures['servers'])}."
    if figures.get("quick"):
        size += " *The quick form (`--quick`): a smoke test, not figures to go by.*"
    notes = [note for name, _ in stores for note in _notes(name, figures["stores"][name])]
    return {
        "export_table": size + "\n\n" + table,
        "export_notes": "\n".join(f"- {note}" for note in notes),
    }
