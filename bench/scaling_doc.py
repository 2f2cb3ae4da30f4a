"""docs/scaling.md: bench/templates/scaling.md.j2 rendered from the figures of `bench.capacity`,
`bench.cluster` and `bench.sse --box` alone, with the model for 1×, 10× and 100× the host
computed here from them. A part whose figures are missing says so."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec

from bench.runner import FIGURES, saved
from pmd_service.core.settings import Settings
from support import render as pages
from support.stack import CHECKOUT

REPORT = CHECKOUT / "docs" / "scaling.md"
BOX_BUSY = 0.9  # the machine's cores this busy: the box, not the service, sets the figure

# The host's deployment, as its repository has it (Makapix Club), and the base load (1×):
# ASSUMED, not measured. The template says where each comes from. Change them and rerun
# `python -m bench.run_all --report-only`.
HOST_INPUTS = dict(
    api_processes=1, celery_concurrency=2, max_connections=100, reserved=3, db_cores=2
)
BASE_INPUTS = dict(
    streams=200,
    bdrs_per_day=2000,
    peak=10,
    lists_per_s=5,
    zip_mb=5,
    notifies_per_bdr=3,
    reopen_s=30,
)
SCALES = (1, 10, 100)
DEFAULTS = {f.name: f.default for f in msgspec.structs.fields(Settings)}
# The streams table's columns: each level's figure and its format ("–": none).
SSE_COLUMNS = (("streams", ","), ("processes", "d"), ("held", ","), ("kb_per_stream_rss", ".1f"),
               ("kb_per_stream_slab", ".1f"), ("event_p99_ms", ".1f"), ("burst_all_s", ".2f"),
               ("storm_s", ".1f"), ("storm_5xx", "d"))  # fmt: skip
NOTIFY_COLUMNS = ("first_p50_ms", "all_p50_ms", "all_p99_ms", "db_cpu_ms_per_notify",
                  "client_cpu_ms_per_notify")  # fmt: skip


def _cpu(c: dict[str, float], *hosts: str) -> str:
    return f"{sum(c.get(h, 0.0) for h in hosts):.1f}"


def _busy(c: dict[str, float]) -> str:
    return f"{c['box_busy']:.0%}" + (" (box)" if c["box_busy"] >= BOX_BUSY else "")


def _hosts(kind: str, n: int) -> list[str]:
    return [f"{kind}{i}" for i in range(1, n + 1)]


def lists_rows(f: dict[str, Any]) -> list[list[str]]:
    per_host, rows = f["server_processes_per_host"], []
    for label, runs in (("PgBouncer", f["lists"]), ("direct", f["lists_direct"])):
        for r in runs:
            c, procs = r["cpu"], r["server_hosts"] * per_host
            rows.append([
                str(r["server_hosts"]), str(procs), label, f"{r['per_s']:.0f}",
                f"{r['per_s'] / procs:.0f}", f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}",
                _cpu(c, *_hosts("srv", r["server_hosts"])), _cpu(c, "lb"), _cpu(c, "db"),
                _cpu(c, "client"), _busy(c), ", ".join(f"{k} {v}" for k, v in r["statuses"].items()),
            ])  # fmt: skip
    return rows


def bdrs_rows(f: dict[str, Any]) -> list[list[str]]:
    return [[str(r["worker_hosts"]), str(r["bdrs"]), f"{r['seconds']:.1f}", f"{r['per_s']:.1f}",
             _cpu(c := r["cpu"], *_hosts("wrk", r["worker_hosts"])), _cpu(c, "db"),
             _cpu(c, "redis"), _cpu(c, "store"), _cpu(c, "srv1", "srv2", "srv3"),
             f"{c['others']:.1f}", _busy(c)] for r in f["bdrs"]]  # fmt: skip


def growth(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """How the rate grew from one host to the most, where the box was busy, and the busiest
    party with one host."""
    c = rows[0]["cpu"]
    parties = {k: v for k, v in c.items() if k not in ("machine", "wall", "box_busy")}
    top = max(parties, key=lambda k: parties[k])
    return {"most": rows[-1][key], "grew": rows[-1]["per_s"] / rows[0]["per_s"],
            "boxed": [r[key] for r in rows if r["cpu"]["box_busy"] >= BOX_BUSY],
            "top": top, "top_cpu": parties[top], "wall": c["wall"]}  # fmt: skip


def sse_box(folder: Path = FIGURES) -> dict[str, Any] | None:
    """The box's stream figures: the `box` of `bench.sse --box` (run_all's `sse_box`)."""
    figures = saved("sse_box", folder).figures
    box = figures.get("box") if isinstance(figures, dict) else None
    return box if box and box.get("levels") else None


def streams_per_process(folder: Path = FIGURES) -> float | None:
    levels = [lv for lv in (sse_box(folder) or {}).get("levels", [])
              if lv.get("held") and lv.get("processes")]  # fmt: skip
    return float(max(lv["held"] / lv["processes"] for lv in levels)) if levels else None


def connections(f: dict[str, Any]) -> dict[str, Any]:
    allowed = HOST_INPUTS["max_connections"] - HOST_INPUTS["reserved"]
    direct, pooled = f["lists_direct"][-1]["connections"], f["lists"][-1]["connections"]
    per_process = {name: max(v for k, v in conns.items() if k.startswith("srv"))
                   / f["server_processes_per_host"]
                   for name, conns in (("direct", direct), ("pooled", pooled))}  # fmt: skip
    bouncer = pooled.get("db", 0)
    return {"allowed": allowed, "direct": direct, "pooled": pooled,
            "srv_direct": per_process["direct"], "srv_pooled": per_process["pooled"],
            "bouncer": bouncer, "fits_direct": allowed // int(per_process["direct"]),
            "fits_pooled": (allowed - bouncer) // max(1, int(per_process["pooled"]))}  # fmt: skip


def _fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """The least-squares line's slope and intercept, neither below 0."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return max(slope, 0.0), max(my - slope * mx, 0.0)


def redis_units(f: dict[str, Any]) -> dict[str, Any]:
    last = f["bdrs"][-1]
    return {
        "per_bdr": sum(r["redis_per_bdr"] for r in f["bdrs"]) / len(f["bdrs"]),
        "per_open": f["streams_redis"]["per_open"],
        "idle_per_worker_s": last.get("idle_per_worker_s", 0.0),
        "capacity": min(f["redis_benchmark"].values()),
        "top": sorted(last["redis_commands"]["drain"].items(), key=lambda kv: -kv[1])[:6],
    }


def model(f: dict[str, Any], c: dict[str, Any], notify: tuple[float, float],
          redis: dict[str, Any], spp: float | None) -> dict[str, Any]:  # fmt: skip
    """The model's per-unit figures, its rows at SCALES, and where each part reaches its limit."""
    slope, base = notify
    per_host = f["server_processes_per_host"]
    lists_pp = max(r["per_s"] / (r["server_hosts"] * per_host)
                   for r in f["lists"] + f["lists_direct"])  # fmt: skip
    b1, ld = f["bdrs"][0], f["lists_direct"][-1]
    bdrs_pw = b1["per_s"] / b1["worker_hosts"]
    put = f["bucket"]["put_mb_s"]
    # PostgreSQL's own CPU per call (the direct run: no PgBouncer on the database host) and
    # per BDR (one worker host's drain, its POSTs not included).
    db_list_ms = ld["cpu"]["db"] * 1000 / (ld["per_s"] * ld["cpu"]["wall"])
    db_bdr_ms = b1["cpu"]["db"] * 1000 / b1["bdrs"]
    pool_max = DEFAULTS["worker_db_pool_max"]

    def at(s: float) -> tuple[list[str], dict[str, float]]:
        streams = s * BASE_INPUTS["streams"]
        bdr_s = s * BASE_INPUTS["bdrs_per_day"] / 86400 * BASE_INPUTS["peak"]
        lists = s * BASE_INPUTS["lists_per_s"]
        servers = max(1, math.ceil(lists / lists_pp), math.ceil(streams / spp) if spp else 1)
        workers = max(1, math.ceil(bdr_s / bdrs_pw))
        pg_direct = servers * c["srv_direct"] + workers * pool_max
        pg_pooled = servers + c["bouncer"]
        notify_core = bdr_s * BASE_INPUTS["notifies_per_bdr"] * (base + slope * servers) / 1000
        ops = (bdr_s * redis["per_bdr"] + streams / BASE_INPUTS["reopen_s"] * redis["per_open"]
               + workers * redis["idle_per_worker_s"])  # fmt: skip
        mb_s = bdr_s * BASE_INPUTS["zip_mb"]
        db_cores = (lists * db_list_ms + bdr_s * db_bdr_ms) / 1000 + notify_core
        shares = {
            "database CPU": db_cores / HOST_INPUTS["db_cores"],
            # Whichever deployment needs fewer: direct while it fits, then PgBouncer.
            "PostgreSQL connections": min(pg_direct, pg_pooled) / c["allowed"],
            "NOTIFY (one database core)": notify_core,
            "Redis": ops / redis["capacity"],
            "the bucket (PUT)": mb_s / put,
        }
        first, share = max(shares.items(), key=lambda kv: kv[1])
        cells = [
            f"{s:g}×", f"{streams:,.0f}", f"{bdr_s:.2f}", f"{lists:,.0f}", str(servers),
            str(workers), f"{pg_direct:.0f} / {pg_pooled:.0f}", str(servers),
            f"{notify_core:.1%}", f"{db_cores:.2f}", f"{ops:,.0f} ({ops / redis['capacity']:.1%})",
            f"{mb_s:.1f} ({mb_s / put:.1%})", f"{first}: {share:.0%} of its limit",
        ]  # fmt: skip
        return cells, shares

    # Where each part reaches its limit: the smallest scale (in steps of 5 %) that fills it.
    grid = [1.05**k for k in range(0, 260)]
    limits = []
    for part in at(1)[1]:
        hit = next((g for g in grid if at(g)[1][part] >= 1), None)
        cells = at(hit)[0] if hit else ["", "", "", "", ""]
        limits.append([part, f"{hit:,.0f}×" if hit else f"beyond {grid[-1]:,.0f}×",
                       cells[1], cells[2], cells[4]])  # fmt: skip
    return {"lists_pp": lists_pp, "bdrs_pw": bdrs_pw, "put": put, "db_list_ms": db_list_ms,
            "db_bdr_ms": db_bdr_ms, "spp": spp, "slope": slope, "base": base,
            "worker_db_pool_max": pool_max, "rows": [at(s)[0] for s in SCALES],
            "limits": limits}  # fmt: skip


def capacity(f: dict[str, Any], spp: float | None) -> dict[str, Any]:
    """Everything the template says about `bench.capacity`'s figures."""
    fit = _fit(
        [r["listeners"] for r in f["notify"]], [r["db_cpu_ms_per_notify"] for r in f["notify"]]
    )
    redis, conn = redis_units(f), connections(f)
    return f | {
        "notify_rows": [[str(r["listeners"]), *(f"{r[k]:.2f}" for k in NOTIFY_COLUMNS)]
                        for r in f["notify"]],
        "lists_rows": lists_rows(f), "lists_growth": growth(f["lists"], "server_hosts"),
        "bdrs_rows": bdrs_rows(f), "bdrs_growth": growth(f["bdrs"], "worker_hosts"),
        "conn": conn, "defaults": DEFAULTS, "slope": fit[0], "base": fit[1], "redis": redis,
        "model": model(f, conn, fit, redis, spp),
    }  # fmt: skip


def render(folder: Path = FIGURES) -> str:
    """The page, from the template and the figures in `folder` alone."""
    cap, box = saved("capacity", folder), sse_box(folder)
    if cap.figures is not None:
        cap = replace(cap, figures=capacity(cap.figures, streams_per_process(folder)))
    rows = [["–" if lv.get(k) is None else format(lv[k], fmt) for k, fmt in SSE_COLUMNS]
            for lv in box["levels"]] if box else None  # fmt: skip
    return pages.render(
        "scaling.md.j2", capacity=cap, sse_box=replace(saved("sse_box", folder), figures=rows),
        cluster=saved("cluster", folder), host=HOST_INPUTS, scale=BASE_INPUTS, box_busy=BOX_BUSY,
    )  # fmt: skip
