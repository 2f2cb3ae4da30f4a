"""docs/scaling.md from bench/scaling.md.in and the committed figures of `bench.capacity`,
`bench.cluster` and `bench.sse --box` (bench/figures/), with the model for 1×, 10× and 100×
the host computed here from those figures; bench/run_all.py renders it beside
docs/benchmarks.md. Like that page it is a render of its template and the figures alone: a
part whose figures are missing says so, nothing of the page as it was is carried over.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from string import Template
from typing import Any

import msgspec

from bench.capacity import LIST_CONCURRENCY, LIST_SECONDS, NOTIFIES
from bench.fmt import table
from bench.report import measured, not_measured
from bench.runner import FIGURES, Saved, saved
from pmd_service.core.settings import Settings
from support.stack import CHECKOUT

TEMPLATE = CHECKOUT / "bench" / "scaling.md.in"
REPORT = CHECKOUT / "docs" / "scaling.md"
BOX_BUSY = 0.9  # the machine's cores this busy: the box, not the service, sets the figure
SSE_BOX = "python -m bench.sse --box"

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
    mark = " (box)" if c["box_busy"] >= BOX_BUSY else ""
    return f"{c['box_busy']:.0%}{mark}"


def lists_table(f: dict[str, Any]) -> str:
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
    return table(
        ["server hosts", "processes", "pool via", "lists/s", "per process", "p50 / p99 ms",
         "CPU s: servers", "HAProxy", "database", "clients", "box busy", "answers"],
        rows,
    )  # fmt: skip


def bdrs_table(f: dict[str, Any]) -> str:
    rows = []
    for r in f["bdrs"]:
        c, n = r["cpu"], r["worker_hosts"]
        rows.append([
            str(n), str(r["bdrs"]), f"{r['seconds']:.1f}", f"{r['per_s']:.1f}",
            _cpu(c, [f"wrk{i}" for i in range(1, n + 1)]), _cpu(c, ["db"]), _cpu(c, ["redis"]),
            _cpu(c, ["store"]), _cpu(c, ["srv1", "srv2", "srv3"]), f"{c['others']:.1f}",
            _busy(c),
        ])  # fmt: skip
    return table(
        ["worker hosts", "BDRs", "seconds", "BDRs/s", "CPU s: workers", "database", "Redis",
         "bucket", "servers", "others", "box busy"],
        rows,
    )  # fmt: skip


def ratio_line(rows: list[dict[str, Any]], key: str, what: str, cores: int) -> str:
    one, last = rows[0], rows[-1]
    grew = last["per_s"] / one["per_s"]
    boxed = [r[key] for r in rows if r["cpu"]["box_busy"] >= BOX_BUSY]
    c = one["cpu"]
    parties = {k: v for k, v in c.items() if k not in ("machine", "wall", "box_busy")}
    top = max(parties, key=lambda k: parties[k])
    why = (
        f"the machine's {cores} cores were at least {BOX_BUSY:.0%} busy with "
        f"{', '.join(map(str, boxed))} {what}, so there the box, not the service, is the limit: "
        "the hosts share its cores, and a host added takes CPU from the others"
        if boxed
        else f"the machine had cores to spare in every run ({BOX_BUSY:.0%} busy or less)"
    )
    return (
        f"{last[key]} {what} gave {grew:.2f}× the rate of one; {why}. With one, the busiest "
        f"party was {'other work on the machine' if top == 'others' else top}: {parties[top]:.1f} CPU s in {c['wall']:.1f} s "
        f"({parties[top] / c['wall']:.0%} of a core)."
    )


def sse_box(folder: Path = FIGURES) -> dict[str, Any] | None:
    """The box's stream figures: the `box` of `bench.sse --box` (run_all's `sse_box`)."""
    figures = saved("sse_box", folder).figures
    box = figures.get("box") if isinstance(figures, dict) else None
    return box if box and box.get("levels") else None


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def sse_part(folder: Path = FIGURES) -> str:
    box = sse_box(folder)
    if box is None:
        return f"Streams against processes: not measured yet (`{SSE_BOX}`)."
    rows = [[_num(lv.get("streams"), ","), _num(lv.get("processes"), "d"),
             _num(lv.get("held"), ","), _num(lv.get("kb_per_stream_rss"), ".1f"),
             _num(lv.get("kb_per_stream_slab"), ".1f"), _num(lv.get("event_p99_ms"), ".1f"),
             _num(lv.get("burst_all_s"), ".2f"), _num(lv.get("storm_s"), ".1f"),
             _num(lv.get("storm_5xx"), "d")] for lv in box["levels"]]  # fmt: skip
    return (
        f"{measured(saved('sse_box', folder))}\n\n"
        # The kernel's share of an idle stream is in the slab (its TCP buffers are empty), for
        # both ends of a loopback stream: a server with remote clients keeps about half.
        + table(["streams", "processes", "held", "KB/stream (processes)",
                 "KB/stream (kernel slab, both ends)",
                 "one event p99 ms", "burst to all s", "reconnect storm s", "storm 5xx"], rows)
    )  # fmt: skip


def streams_per_process(folder: Path = FIGURES) -> float | None:
    box = sse_box(folder)
    if box is None:
        return None
    levels = [lv for lv in box["levels"] if lv.get("held") and lv.get("processes")]
    return float(max(lv["held"] / lv["processes"] for lv in levels)) if levels else None


def connections_part(f: dict[str, Any]) -> str:
    d = defaults()
    allowed = HOST["max_connections"] - HOST["reserved"]
    direct, pooled = f["lists_direct"][-1]["connections"], f["lists"][-1]["connections"]
    per_host = f["server_processes_per_host"]
    srv_direct = max(v for k, v in direct.items() if k.startswith("srv")) / per_host
    srv_pooled = max(v for k, v in pooled.items() if k.startswith("srv")) / per_host
    fits_direct = allowed // int(srv_direct)
    bouncer = pooled.get("db", 0)
    fits_pooled = (allowed - bouncer) // max(1, int(srv_pooled))
    checks = "\n".join(
        f"- `SERVER_PROCESSES={c['processes']}` {'through PgBouncer' if c.get('pooler') else 'direct'}: "
        + (("started (it fits)" + (f"; it warned: `{c['last_line'].split(' [-]: ')[-1]}`"
                                   if " WARNING " in c["last_line"] else ""))
           if c["exit"] is None else f"exit status {c['exit']}: `{c['last_line'].split(' [-]: ')[-1]}`")
        for c in f["start_checks"]
    )  # fmt: skip
    full = f["full_database"]
    answers = ", ".join(f"{k}: {v}" for k, v in full["statuses"].items())
    return f"""Measured with the list load on {len(f["lists"])} server hosts ({
        len(f["lists"]) * per_host
    } processes):
the most connections the service's role held at once, by where they came from.

{
        table(
            ["pools", "per server process", "PgBouncer → PostgreSQL", "total"],
            [
                ["direct", f"{srv_direct:.0f}", "–", str(direct["total"])],
                ["through PgBouncer", f"{srv_pooled:.0f}", str(bouncer), str(pooled["total"])],
            ],
        )
    }

With the defaults (`DB_POOL_MAX={d["db_pool_max"]}`, `WORKER_DB_POOL_MAX={d["worker_db_pool_max"]}`)
a server process holds up to {srv_direct:.0f} connections direct (its pool and its LISTEN
connection) and {srv_pooled:.0f} through PgBouncer (the LISTEN connection only; PgBouncer's own
{bouncer} serve every process). A default PostgreSQL (`max_connections` {HOST["max_connections"]},
{HOST["reserved"]} reserved) leaves {allowed}: **{fits_direct} server processes direct**
(`{allowed} // {srv_direct:.0f}`), before any worker (each takes up to
{d["worker_db_pool_max"]}), against **{fits_pooled} through PgBouncer**
(`({allowed} − {bouncer}) // {srv_pooled:.0f}`, the LISTEN connections then being the limit).

What is seen past that, measured with the service role's `CONNECTION LIMIT` at {allowed} (the
{allowed} a default server leaves):

{checks}

And with the servers running direct while their pools could not grow (the role's limit set to
{full["connection_limit"]}, {full["held_before"]} held), {
        LIST_CONCURRENCY
    } clients calling the list for
{LIST_SECONDS:.0f} s saw: {answers}."""


def notify_part(f: dict[str, Any]) -> tuple[str, float, float]:
    rows = f["notify"]
    xs = [r["listeners"] for r in rows]
    ys = [r["db_cpu_ms_per_notify"] for r in rows]
    slope, base = _fit(xs, ys)
    body = table(
        ["listeners", "first received p50 ms", "all received p50 ms", "all received p99 ms",
         "database CPU ms a NOTIFY", "client CPU ms a NOTIFY"],
        [[str(r["listeners"]), f"{r['first_p50_ms']:.2f}", f"{r['all_p50_ms']:.2f}",
          f"{r['all_p99_ms']:.2f}", f"{r['db_cpu_ms_per_notify']:.2f}",
          f"{r['client_cpu_ms_per_notify']:.2f}"] for r in rows],
    )  # fmt: skip
    line = (
        f"A least-squares line through the database's CPU: **{base:.3f} ms + {slope * 1000:.2f} µs "
        "per listener, a NOTIFY** (each listening backend is woken and sends it on). The "
        "latency to the last listener grows with the count too; part of it is the one client "
        "process that holds every listener here."
    )
    return body + "\n\n" + line, slope, base


def _fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return max(slope, 0.0), max(my - slope * mx, 0.0)


def redis_part(f: dict[str, Any]) -> tuple[str, dict[str, float]]:
    last = f["bdrs"][-1]
    per_bdr = sum(r["redis_per_bdr"] for r in f["bdrs"]) / len(f["bdrs"])
    unit = {
        "per_bdr": per_bdr,
        "per_open": f["streams_redis"]["per_open"],
        "idle_per_worker_s": last.get("idle_per_worker_s", 0.0),
        "capacity": min(f["redis_benchmark"].values()),
    }
    bench = ", ".join(f"{k} {v:,.0f}/s" for k, v in f["redis_benchmark"].items())
    top = sorted(last["redis_commands"]["drain"].items(), key=lambda kv: -kv[1])[:6]
    text = (
        f"- per BDR (its POST and its build, the mean of the drains): **{per_bdr:.1f} commands** "
        f"(the drain's most frequent: {', '.join(f'{k} {v}' for k, v in top)});\n"
        f"- per stream opened with a ticket (mint, then redeem): **{unit['per_open']:.1f}**;\n"
        f"- per idle worker a second (its queue polls): **{unit['idle_per_worker_s']:.1f}**;\n"
        f"- what this Redis sustains (`redis-benchmark -c 50 -n 100000` from the client host): "
        f"{bench}; the model takes the lowest, **{unit['capacity']:,.0f} commands/s**."
    )
    return text, unit


def bucket_part(f: dict[str, Any]) -> str:
    b = f["bucket"]
    return (
        f"{b['objects']} objects of {b['object_mb']:.1f} MB, {b['at_once']} at once, from the "
        f"client host: **PUT {b['put_mb_s']:.0f} MB/s** ({b['put_objects_s']:.1f} objects/s), "
        f"**GET {b['get_mb_s']:.0f} MB/s** ({b['get_objects_s']:.1f} objects/s)."
    )


def model(
    f: dict[str, Any], slope: float, base: float, redis: dict[str, float], spp: float | None
) -> str:
    d = defaults()
    allowed = HOST["max_connections"] - HOST["reserved"]
    per_host = f["server_processes_per_host"]
    lists_pp = max(r["per_s"] / (r["server_hosts"] * per_host)
                   for r in f["lists"] + f["lists_direct"])  # fmt: skip
    bdrs_pw = f["bdrs"][0]["per_s"] / f["bdrs"][0]["worker_hosts"]
    direct = f["lists_direct"][-1]["connections"]
    srv_direct = max(v for k, v in direct.items() if k.startswith("srv")) / per_host
    bouncer = f["lists"][-1]["connections"].get("db", 0)
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
        pg_direct = servers * srv_direct + workers * d["worker_db_pool_max"]
        pg_pooled = servers + bouncer
        notify_core = bdr_s * BASE["notifies_per_bdr"] * (base + slope * servers) / 1000
        ops = (bdr_s * redis["per_bdr"] + streams / BASE["reopen_s"] * redis["per_open"]
               + workers * redis["idle_per_worker_s"])  # fmt: skip
        mb_s = bdr_s * BASE["zip_mb"]
        db_cores = (lists * db_list_ms + bdr_s * db_bdr_ms) / 1000 + notify_core
        shares = {
            "database CPU": db_cores / HOST["db_cores"],
            # Whichever deployment needs fewer: direct while it fits, then PgBouncer.
            "PostgreSQL connections": min(pg_direct, pg_pooled) / allowed,
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

    rows = [at(s)[0] for s in SCALES]
    # Where each part reaches its limit: the smallest scale (in steps of 5 %) that fills it.
    grid = [1.05**k for k in range(0, 260)]
    limits = []
    for part in at(1)[1]:
        hit = next((g for g in grid if at(g)[1][part] >= 1), None)
        if hit is None:
            limits.append([part, f"beyond {grid[-1]:,.0f}×", "", "", ""])
        else:
            c = at(hit)[0]
            limits.append([part, f"{hit:,.0f}×", c[1], c[2], c[4]])
    streams_note = (
        f"`ceil(streams / {spp:,.0f})` (streams a process held, `{SSE_BOX}`)"
        if spp
        else f"streams not counted: streams against processes are not measured yet (`{SSE_BOX}`)"
    )
    formulas = f"""Per-unit figures from the run above (the box-limited ones are lower bounds):
{lists_pp:.0f} list calls a second per server process (the best of the list runs),
{bdrs_pw:.1f} small BDRs a second per worker process (one worker host),
{srv_direct:.0f} connections per server process direct, {bouncer} from PgBouncer,
{redis["per_bdr"]:.1f} Redis commands per BDR, {redis["per_open"]:.1f} per stream open,
{redis["idle_per_worker_s"]:.1f} per idle worker a second, {put:.0f} MB/s PUT to the bucket.

- BDRs/s at the peak = `scale × {BASE["bdrs_per_day"]} / 86400 × {BASE["peak"]}`;
  streams = `scale × {BASE["streams"]}`; list calls/s = `scale × {BASE["lists_per_s"]}`
- server processes = `max(ceil(lists / {lists_pp:.0f}), streams term)`; streams term:
  {streams_note}
- worker processes = `ceil(BDRs/s / {bdrs_pw:.1f})`
- PostgreSQL connections direct = `servers × {srv_direct:.0f} + workers × {d["worker_db_pool_max"]}`;
  through PgBouncer = `servers × 1 (LISTEN) + {bouncer}`; the limit `{allowed}`
- NOTIFY listeners = server processes; NOTIFY's share of one database core =
  `BDRs/s × {BASE["notifies_per_bdr"]} × ({base:.3f} + {slope * 1000:.2f}e-3 × listeners) ms / 1000`
- Redis commands/s = `BDRs/s × {redis["per_bdr"]:.1f} + streams / {BASE["reopen_s"]} × {redis["per_open"]:.1f} + workers × {redis["idle_per_worker_s"]:.1f}`
  (streams reopening within {BASE["reopen_s"]} s: a reconnect storm), against `{redis["capacity"]:,.0f}`
- database CPU (cores) = `(lists/s × {db_list_ms:.2f} + BDRs/s × {db_bdr_ms:.2f}) ms / 1000 + NOTIFY's`
  (PostgreSQL's CPU per list call with the servers direct, and per BDR in the one-worker
  drain), against `{HOST["db_cores"]}` cores
- bucket MB/s = `BDRs/s × {BASE["zip_mb"]} MB`, against `{put:.0f}`
- gives out first: the largest of these shares of its limit (PostgreSQL connections: the
  fewer of direct and through PgBouncer, against the limit)"""
    gives_out = table(
        ["part", "reaches its limit at", "streams", "BDRs/s (peak)", "server processes"], limits
    )
    return formulas + "\n\n" + table(
        ["scale", "streams", "BDRs/s (peak)", "lists/s", "server processes",
         "worker processes", "PG connections direct / PgBouncer", "NOTIFY listeners",
         "NOTIFY: database core", "database CPU (cores)", "Redis commands/s (of capacity)", "bucket MB/s (of PUT)",
         "gives out first"],
        rows,
    ) + "\n\nAnd the load at which each part reaches its limit, by the same formulas:\n\n" + gives_out  # fmt: skip


def cluster_part(folder: Path = FIGURES) -> str:
    s = saved("cluster", folder)
    if s.figures is None:
        return not_measured(s)
    out: dict[str, Any] = s.figures
    rows = []
    for name, r in out.items():
        rows.append([
            name, f"`{r['command']}`",
            "passed" if r["exit"] == 0 else f"failed (exit {r['exit']})",
            str(r.get("violations", "?")), str(r.get("streams", "?")),
            str(r.get("sse_connections", "?")), str(r.get("events", "?")),
            str(r.get("views", "?")), str(r.get("every_event", "–")), f"{r['seconds']} s",
        ])  # fmt: skip
    lines = [measured(s), "", table(
        ["run", "command", "outcome", "violations", "streams", "stream connections",
         "bdr_update events received", "views equal to the database",
         "streams with every event, once, in order", "took"], rows)]  # fmt: skip
    for name, r in out.items():
        lines += [f"- {name}: {v}" for v in r.get("violation_lines", [])]
    return "\n".join(lines)


def _blocks(text: str) -> list[str]:
    """A page's parts: what stands before its first `## ` heading, then each `## ` section
    (its `### ` ones with it)."""
    return re.split(r"(?m)^(?=## )", text)


def _placeholders(text: str) -> set[str]:
    return {m["named"] or m["braced"] for m in Template.pattern.finditer(text)} - {None}


def fill(template: str, values: dict[str, str], missing: str) -> str:
    """The page from `template`: each part with every figure it names filled in, and a part
    naming a figure that is not measured as its heading line and `missing`."""
    out = []
    for block in _blocks(template):
        if _placeholders(block) <= values.keys():
            out.append(Template(block).substitute(values))
        else:
            first = block.split("\n", 1)[0]
            out.append(f"{first}\n\n{missing}\n\n" if first.startswith("#") else f"{missing}\n\n")
    return "".join(out)


def render(folder: Path = FIGURES) -> str:
    """The page, from the template and the figures in `folder` alone."""
    capacity = saved("capacity", folder)
    values = {"sse_part": sse_part(folder), "cluster_part": cluster_part(folder)}
    if capacity.figures is not None:
        values |= _capacity_values(capacity, streams_per_process(folder))
    return fill(TEMPLATE.read_text(), values, not_measured(capacity))


def write(folder: Path = FIGURES) -> None:
    REPORT.write_text(render(folder))
    print(f"wrote {REPORT.relative_to(CHECKOUT)}")


def _capacity_values(s: Saved, spp: float | None) -> dict[str, str]:
    f: dict[str, Any] = s.figures
    notify, slope, base = notify_part(f)
    redis_text, redis = redis_part(f)
    return {
        "capacity_measured": measured(s),
        "cores": str(f["cores"]),
        "list_clients": str(f.get("list_clients", LIST_CONCURRENCY)),
        "list_seconds": f"{f.get('list_seconds', LIST_SECONDS):.0f}",
        "notifies": str(f.get("notifies", NOTIFIES)),
        "lists_table": lists_table(f),
        "lists_line": ratio_line(f["lists"], "server_hosts", "server hosts", f["cores"]),
        "bdrs_table": bdrs_table(f),
        "bdrs_line": ratio_line(f["bdrs"], "worker_hosts", "worker hosts", f["cores"]),
        "connections_part": connections_part(f),
        "notify_part": notify,
        "redis_part": redis_text,
        "bucket_part": bucket_part(f),
        "host": "\n".join(f"| `{k}` | {v:g} | {why} |" for k, (v, why) in HOST_INPUTS.items()),
        "base": "\n".join(f"| `{k}` | {v:g} | {why} |" for k, (v, why) in BASE_INPUTS.items()),
        "model": model(f, slope, base, redis, spp),
    }  # fmt: skip


if __name__ == "__main__":
    write()
