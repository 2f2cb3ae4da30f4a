"""docs/scaling.md: the figures of `bench.capacity`, `bench.cluster` and `bench.sse --box`
(bench/figures/), and the model for 1×, 10× and 100× the host computed here from them, for
bench/templates/scaling.md.j2 to put into words. Like every generated page it is a render of its
template and the figures alone: a part whose figures are missing says so.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec

from bench.capacity import LIST_CONCURRENCY, LIST_SECONDS, NOTIFIES
from bench.runner import FIGURES, saved
from pmd_service.core.settings import Settings
from support import render as pages
from support.stack import CHECKOUT

TEMPLATE = "scaling.md.j2"
REPORT = CHECKOUT / "docs" / "scaling.md"
BOX_BUSY = 0.9  # the machine's cores this busy: the box, not the service, sets the figure

# --- the model's inputs -------------------------------------------------------------------------
# The host's deployment, as its repository has it (Makapix Club), each with where it comes from:
HOST_INPUTS: dict[str, tuple[int, str]] = {
    "api_processes": (1, "`deploy/stack/docker-compose.yml`: `uvicorn app.main:app`, no `--workers`"),
    "celery_concurrency": (2, "`worker/worker.py`: `worker --beat --concurrency=2`"),
    "max_connections": (100, "`deploy/stack/docker-compose.yml`: `postgres:17-alpine`, no "
                             "`max_connections` set: PostgreSQL's default"),
    "reserved": (3, "PostgreSQL's default `superuser_reserved_connections`"),
    "db_cores": (2, "ASSUMED: the VPS's size is not in the repository; this machine's cores"),
}  # fmt: skip
# The base load (1×): ASSUMED, not measured; the host's repository states no traffic. Change
# these and rerun `python -m bench.run_all --report-only`.
BASE_INPUTS: dict[str, tuple[float, str]] = {
    "streams": (200, "ASSUMED: dashboard streams open at once (a user with the page open)"),
    "bdrs_per_day": (2000, "ASSUMED: batch downloads requested a day"),
    "peak": (10, "ASSUMED: the busiest minutes' rate against the day's average"),
    "lists_per_s": (5, "ASSUMED: the page's list calls a second at the peak"),
    "zip_mb": (5, "ASSUMED: a ZIP's mean size"),
    "notifies_per_bdr": (3, "pending, processing, ready: one doorbell each (progress adds more)"),
    "reopen_s": (30, "a reconnect storm: every stream opens again within this many seconds "
                     "(issue #24's target for the storm)"),
}  # fmt: skip
HOST = {k: v for k, (v, _) in HOST_INPUTS.items()}
BASE = {k: v for k, (v, _) in BASE_INPUTS.items()}
SCALES = (1, 10, 100)


def defaults() -> dict[str, Any]:
    return {f.name: f.default for f in msgspec.structs.fields(Settings)}


def _cpu(c: dict[str, float], hosts: list[str]) -> str:
    return f"{sum(c.get(h, 0.0) for h in hosts):.1f}"


def _busy(c: dict[str, float]) -> str:
    return f"{c['box_busy']:.0%}" + (" (box)" if c["box_busy"] >= BOX_BUSY else "")


def lists_rows(f: dict[str, Any]) -> list[list[str]]:
    per_host = f["server_processes_per_host"]
    rows = []
    for label, runs_ in (("PgBouncer", f["lists"]), ("direct", f["lists_direct"])):
        for r in runs_:
            c, n = r["cpu"], r["server_hosts"]
            servers = [f"srv{i}" for i in range(1, n + 1)]
            rows.append([
                str(n), str(n * per_host), label, f"{r['per_s']:.0f}",
                f"{r['per_s'] / (n * per_host):.0f}", f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}",
                _cpu(c, servers), _cpu(c, ["lb"]), _cpu(c, ["db"]), _cpu(c, ["client"]),
                _busy(c), ", ".join(f"{k} {v}" for k, v in r["statuses"].items()),
            ])  # fmt: skip
    return rows


def bdrs_rows(f: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in f["bdrs"]:
        c, n = r["cpu"], r["worker_hosts"]
        rows.append([
            str(n), str(r["bdrs"]), f"{r['seconds']:.1f}", f"{r['per_s']:.1f}",
            _cpu(c, [f"wrk{i}" for i in range(1, n + 1)]), _cpu(c, ["db"]), _cpu(c, ["redis"]),
            _cpu(c, ["store"]), _cpu(c, ["srv1", "srv2", "srv3"]), f"{c['others']:.1f}",
            _busy(c),
        ])  # fmt: skip
    return rows


def growth(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """How the rate grew from one host to the most, where the box was busy, and the busiest
    party with one host."""
    one, last = rows[0], rows[-1]
    c = one["cpu"]
    parties = {k: v for k, v in c.items() if k not in ("machine", "wall", "box_busy")}
    top = max(parties, key=lambda k: parties[k])
    return {
        "most": last[key], "grew": last["per_s"] / one["per_s"],
        "boxed": [r[key] for r in rows if r["cpu"]["box_busy"] >= BOX_BUSY],
        "top": top, "top_cpu": parties[top], "wall": c["wall"],
    }  # fmt: skip


def sse_box(folder: Path = FIGURES) -> dict[str, Any] | None:
    """The box's stream figures: the `box` of `bench.sse --box` (run_all's `sse_box`)."""
    figures = saved("sse_box", folder).figures
    box = figures.get("box") if isinstance(figures, dict) else None
    return box if box and box.get("levels") else None


# The columns of the streams table: each level's figure and its format ("–": none).
SSE_COLUMNS = (("streams", ","), ("processes", "d"), ("held", ","), ("kb_per_stream_rss", ".1f"),
               ("kb_per_stream_slab", ".1f"), ("event_p99_ms", ".1f"), ("burst_all_s", ".2f"),
               ("storm_s", ".1f"), ("storm_5xx", "d"))  # fmt: skip


def sse_rows(box: dict[str, Any]) -> list[list[str]]:
    return [
        ["–" if lv.get(k) is None else format(lv[k], fmt) for k, fmt in SSE_COLUMNS]
        for lv in box["levels"]
    ]


def streams_per_process(folder: Path = FIGURES) -> float | None:
    box = sse_box(folder)
    if box is None:
        return None
    levels = [lv for lv in box["levels"] if lv.get("held") and lv.get("processes")]
    return float(max(lv["held"] / lv["processes"] for lv in levels)) if levels else None


def connections(f: dict[str, Any]) -> dict[str, Any]:
    allowed = HOST["max_connections"] - HOST["reserved"]
    direct, pooled = f["lists_direct"][-1]["connections"], f["lists"][-1]["connections"]
    per_host = f["server_processes_per_host"]
    srv_direct = max(v for k, v in direct.items() if k.startswith("srv")) / per_host
    srv_pooled = max(v for k, v in pooled.items() if k.startswith("srv")) / per_host
    bouncer = pooled.get("db", 0)
    checks = [
        c | {"said": c["last_line"].split(" [-]: ")[-1], "warned": " WARNING " in c["last_line"]}
        for c in f["start_checks"]
    ]
    return {
        "allowed": allowed, "direct": direct, "pooled": pooled, "srv_direct": srv_direct,
        "srv_pooled": srv_pooled, "bouncer": bouncer, "fits_direct": allowed // int(srv_direct),
        "fits_pooled": (allowed - bouncer) // max(1, int(srv_pooled)), "checks": checks,
    }  # fmt: skip


def _fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
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
    d = defaults()
    per_host = f["server_processes_per_host"]
    lists_pp = max(r["per_s"] / (r["server_hosts"] * per_host)
                   for r in f["lists"] + f["lists_direct"])  # fmt: skip
    bdrs_pw = f["bdrs"][0]["per_s"] / f["bdrs"][0]["worker_hosts"]
    put = f["bucket"]["put_mb_s"]
    # PostgreSQL's own CPU per call (the direct run: no PgBouncer on the database host) and
    # per BDR (one worker host's drain, its POSTs not included).
    ld = f["lists_direct"][-1]
    db_list_ms = ld["cpu"]["db"] * 1000 / (ld["per_s"] * ld["cpu"]["wall"])
    b1 = f["bdrs"][0]
    db_bdr_ms = b1["cpu"]["db"] * 1000 / b1["bdrs"]

    def at(s: float) -> tuple[list[str], dict[str, float]]:
        streams = s * BASE["streams"]
        bdr_s = s * BASE["bdrs_per_day"] / 86400 * BASE["peak"]
        lists = s * BASE["lists_per_s"]
        servers = max(1, math.ceil(lists / lists_pp),
                      math.ceil(streams / spp) if spp else 1)  # fmt: skip
        workers = max(1, math.ceil(bdr_s / bdrs_pw))
        pg_direct = servers * c["srv_direct"] + workers * d["worker_db_pool_max"]
        pg_pooled = servers + c["bouncer"]
        notify_core = bdr_s * BASE["notifies_per_bdr"] * (base + slope * servers) / 1000
        ops = (bdr_s * redis["per_bdr"] + streams / BASE["reopen_s"] * redis["per_open"]
               + workers * redis["idle_per_worker_s"])  # fmt: skip
        mb_s = bdr_s * BASE["zip_mb"]
        db_cores = (lists * db_list_ms + bdr_s * db_bdr_ms) / 1000 + notify_core
        shares = {
            "database CPU": db_cores / HOST["db_cores"],
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
        if hit is None:
            limits.append([part, f"beyond {grid[-1]:,.0f}×", "", "", ""])
        else:
            cells = at(hit)[0]
            limits.append([part, f"{hit:,.0f}×", cells[1], cells[2], cells[4]])
    return {
        "lists_pp": lists_pp, "bdrs_pw": bdrs_pw, "put": put, "db_list_ms": db_list_ms,
        "db_bdr_ms": db_bdr_ms, "spp": spp, "slope": slope, "base": base,
        "worker_db_pool_max": d["worker_db_pool_max"],
        "rows": [at(s)[0] for s in SCALES], "limits": limits,
    }  # fmt: skip


def capacity(f: dict[str, Any], spp: float | None) -> dict[str, Any]:
    """Everything the template says about `bench.capacity`'s figures."""
    notify = [r["db_cpu_ms_per_notify"] for r in f["notify"]]
    fit = _fit([r["listeners"] for r in f["notify"]], notify)
    redis = redis_units(f)
    c = connections(f)
    return f | {
        "list_clients": f.get("list_clients", LIST_CONCURRENCY),
        "list_seconds": f.get("list_seconds", LIST_SECONDS),
        "notifies": f.get("notifies", NOTIFIES),
        "notify_rows": [[str(r["listeners"]), *(f"{r[k]:.2f}" for k in NOTIFY_COLUMNS)]
                        for r in f["notify"]],
        "lists_rows": lists_rows(f), "lists_growth": growth(f["lists"], "server_hosts"),
        "bdrs_rows": bdrs_rows(f), "bdrs_growth": growth(f["bdrs"], "worker_hosts"),
        "conn": c, "defaults": defaults(), "slope": fit[0], "base": fit[1], "redis": redis,
        "model": model(f, c, fit, redis, spp),
    }  # fmt: skip


NOTIFY_COLUMNS = ("first_p50_ms", "all_p50_ms", "all_p99_ms", "db_cpu_ms_per_notify",
                  "client_cpu_ms_per_notify")  # fmt: skip


def render(folder: Path = FIGURES) -> str:
    """The page, from the template and the figures in `folder` alone."""
    cap = saved("capacity", folder)
    if cap.figures is not None:
        cap = replace(cap, figures=capacity(cap.figures, streams_per_process(folder)))
    box = saved("sse_box", folder)
    rows = sse_rows(b) if (b := sse_box(folder)) else None
    return pages.render(
        TEMPLATE, capacity=cap, sse_box=replace(box, figures=rows), cluster=saved("cluster", folder),
        host=HOST_INPUTS, base=BASE_INPUTS, scale=BASE, host_value=HOST, box_busy=BOX_BUSY,
    )  # fmt: skip
