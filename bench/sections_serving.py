"""The figures of the serving benchmarks (bench.processes, bench.posts, bench.page,
bench.host_migrate, bench.sse, bench.scaling and bench.sse --box) as their blocks of
bench/templates/benchmarks.md.j2 read them: each function gives the saved figures plus what the
text computes from them. The sentences are in bench/templates/sections_serving.md.j2, one group
of macros per function here."""

from __future__ import annotations

from typing import Any


def processes_section(f: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    # Figures saved before the SIGTERM measurement are the bare list of rows.
    rows = f["by_processes"] if isinstance(f, dict) else f
    return {
        "rows": rows,
        "ratio": rows[1]["list_rps"] / rows[0]["list_rps"],
        "sigterm": f["sigterm"] if isinstance(f, dict) else None,
    }


def posts_section(p: dict[str, Any]) -> dict[str, Any]:
    first, last = p["first"]["p50_ms"], p["last"]["p50_ms"]
    scale = p.get("scale", {})
    target = p.get("scale_target", 1.2)
    return p | {
        "r_first": first / p["first_sql"]["p50_ms"],
        "r_last": last / p["last_sql"]["p50_ms"],
        "scale_met": bool(scale) and max(scale.values()) <= target,
        "scale_target": target,
        "scale_1": scale.get("1", float("nan")),
        "scale_19": scale.get("19", float("nan")),
        "big": p.get("big_posts", 0),
        "cases": p.get("cases", []),
    }


def page_section(f: dict[str, Any]) -> dict[str, Any]:
    return f | {"click": max(f["sort_title_ms"], f["select_all_ms"], f["last_page_ms"])}


def host_migrate_section(f: dict[str, Any]) -> dict[str, Any]:
    return f


def sse_section(levels: list[dict[str, Any]]) -> dict[str, Any]:
    top = max(lv["subscribers"] for lv in levels)
    return {
        "levels": levels,
        "top": top,
        "kb": max(lv["kb_per_subscriber"] for lv in levels),
        "p99": max(lv["single"]["p99_ms"] for lv in levels),
        "worst": max(lv["burst"]["max_ms"] for lv in levels),
        "gc_max": max(lv.get("gc_pause_max_ms", float("inf")) for lv in levels),
        "gc_cpu": max(lv.get("gc_pause_max_cpu_ms", float("inf")) for lv in levels),
        "delivered": all(
            lv["burst_delivered"] == f"{lv['subscribers']}/{lv['subscribers']}"
            and lv["errors"] == 0
            for lv in levels
        ),
        "one": all(lv["listeners"] == 1 for lv in levels),
        "fd_bound": top < 20_000 and any(lv.get("asked", 0) > lv["subscribers"] for lv in levels),
    }


def scaling_section(f: dict[str, Any]) -> dict[str, Any]:
    rows = f["backlog"]["by_workers"]
    first, top = rows[0], rows[-1]
    busy = top["cpu"]["machine_busy_s"] - top["cpu"]["others_s"]
    return f | {
        "rows": rows,
        "worker_busy": first["cpu"]["per_worker_s"][0] / first["cpu"]["wall_s"],
        "ours": busy / top["cpu"]["wall_s"],
        "per_bdr": busy / top["bdrs"],
    }


def sse_box_section(f: dict[str, Any]) -> dict[str, Any]:
    box: dict[str, Any] = f["box"]
    levels = box["levels"]
    top = max(levels, key=lambda lv: lv["streams"])
    out: dict[str, Any] = box | {
        "top": top,
        "worst_kb": max(lv["kb_per_stream_rss"] for lv in levels),
        "best_kb": min(lv["kb_per_stream_rss"] for lv in levels),
    }
    if "base" in top:
        cores = top.get("cores", 2)
        taken = top["base"]["storm_cpu_ms"]["machine"]
        out |= {
            "cores": cores,
            "budget": box["targets"]["storm_s"] * cores * 1000 / top["streams"],
            "taken": taken,
            "service": top["storm_cpu_ms"]["machine"] - taken,
        }
    return out
