"""The report's PNG plots (docs/plots/), drawn with matplotlib from the saved figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 10, "axes.grid": True,
                         "grid.alpha": 0.3, "legend.fontsize": 9})  # fmt: skip
    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _log2_x(ax: Any, xs: list[float], labels: list[str]) -> None:
    """An x axis of doubling sizes, each tick at a measured one."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, labels)
    ax.minorticks_off()


def _below(ax: Any, ncols: int = 2) -> None:
    """Legend under the axes, where it can never hide a line."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=ncols, frameon=False)


def _plain_log_ticks(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _target(ax: Any, value: float, label: str, highest: float) -> None:
    """A target line, unless it would squash the data (then said in the legend only)."""
    if value <= highest * 2.5:
        ax.axhline(value, color="red", linestyle=":", label=label)
        ax.set_ylim(0, max(value, highest) * 1.1)
    else:
        ax.plot([], [], " ", label=f"{label} (far above this scale)")
        ax.set_ylim(0, highest * 1.15)


def plot_zip(figures: dict[str, Any], path: Path) -> None:
    by_size = figures.get("by_size")
    if not by_size:  # figures of a run without `--sizes`
        return
    plt = _pyplot()
    mb = [row["bytes"] / 1e6 for row in by_size]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.6))
    for key, label, style in (
        ("seed_s", "seed algorithm (copy to temp dir + zipfile DEFLATED)", "o-"),
        ("worker_s", "worker build (with fsync)", "s-"),
        ("durable_floor_s", "plain copy + fsync", "^--"),
        ("floor_s", "plain copy (floor)", "v--"),
    ):
        left.plot(mb, [row[key] * 1000 for row in by_size], style, label=label)
    left.set_yscale("log")
    _plain_log_ticks(left.yaxis)
    left.set_xlabel("ZIP size (artworks of ~1 MB each)")
    left.set(ylabel="build time (ms, log scale), median", title="ZIP build time by ZIP size")
    _below(left, ncols=1)
    right.plot(mb, [r["seed_s"] / r["worker_s"] for r in by_size], "o-",
               label="seed ÷ worker (times faster)")  # fmt: skip
    right.plot(mb, [r["worker_s"] / r["floor_s"] for r in by_size], "s-",
               label="worker ÷ plain copy (overhead)")  # fmt: skip
    right.axhline(25, color="C0", linestyle=":", label="target: ≥ 25× faster than seed")
    right.axhline(2, color="C1", linestyle=":", label="target: ≤ 2.0× the copy")
    right.set_yscale("log")
    right.set_yticks([1, 2, 5, 10, 25, 50], ["1×", "2×", "5×", "10×", "25×", "50×"])
    right.set_xlabel("ZIP size (artworks of ~1 MB each)")
    right.set_title("Ratios (blue: higher is better; orange: lower is better)")
    _below(right, ncols=1)
    labels = [f"{r['files']} files\n{x:.0f} MB" for r, x in zip(by_size, mb, strict=True)]
    for ax in (left, right):
        _log2_x(ax, mb, labels)
    _save(plt, fig, path)


def plot_sse(levels: list[dict[str, Any]], path: Path) -> None:
    """The curve from 1,000 to 20,000 subscribers: latency of (a) and (b), then memory and the
    longest GC pause."""
    plt = _pyplot()
    subs = [lv["subscribers"] for lv in levels]
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5))
    (single, burst), (memory, pause) = axes
    for ax, key, title, target, target_label in (
        (single, "single", "(a) one user's event, all others connected", 10,
         "target: p99 ≤ 10 ms"),
        (burst, "burst", "(b) every user's BDR changes in one UPDATE", 500,
         "target: every client within 0.5 s"),
    ):  # fmt: skip
        for q, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-"), ("max", "x--")):
            ax.plot(subs, [lv[key][f"{q}_ms"] for lv in levels], style, label=q)
        if key == "burst":
            ax.plot(subs, [lv["burst_update_ms"] for lv in levels], "d:", color="gray",
                    label="of which the UPDATE")  # fmt: skip
        _target(ax, target, target_label, max(lv[key]["max_ms"] for lv in levels))
        ax.set(ylabel="commit → client receipt (ms)", title=title)
    memory.plot(subs, [lv["kb_per_subscriber"] for lv in levels], "o-", label="RSS per subscriber")
    _target(memory, 15, "target: ≤ 15 KB", max(lv["kb_per_subscriber"] for lv in levels))
    memory.set(ylabel="KB per idle subscriber", title="Server memory per subscriber")
    pause.plot(subs, [lv.get("gc_pause_max_ms", 0.0) for lv in levels], "o-",
               label="longest GC pause, wall clock (start-up to end of level)")  # fmt: skip
    pause.plot(subs, [lv.get("gc_pause_max_cpu_ms", 0.0) for lv in levels], "s--",
               label="its CPU time (the rest: waiting for a core)")  # fmt: skip
    _target(pause, 50, "target: ≤ 50 ms", max(lv.get("gc_pause_max_ms", 0.0) for lv in levels))
    pause.set(ylabel="ms", title="Longest garbage-collector pause")
    for ax in (single, burst, memory, pause):
        ax.set_xlabel("concurrent SSE subscribers on one server process")
        ax.set_xticks(subs, [f"{n:,}" for n in subs])
        _below(ax, ncols=1 if ax is pause else 3)
    _save(plt, fig, path)


def plot_posts(posts: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = posts["depths"]
    pages = [r["page"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(pages, [r["http"]["p50_ms"] for r in rows], "o-", color="C0", label="GET p50")
    ax.plot(pages, [r["http"]["p99_ms"] for r in rows], "o--", color="C0", label="GET p99")
    ax.plot(pages, [r["sql"]["p50_ms"] for r in rows], "s-", color="C2", label="its SQL alone p50")
    ax.plot(pages, [r["sql"]["p99_ms"] for r in rows], "s--", color="C2", label="its SQL alone p99")
    highest = max(max(r["http"]["p99_ms"], r["sql"]["p99_ms"]) for r in rows)
    _target(ax, 25, "target: p50 ≤ 25 ms", highest)
    ax.set_xticks(pages)
    ax.set_xlabel(f"page number ({posts['page_size']} posts per page, of {posts['pages']})")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"GET /api/pmd/posts?limit={posts['page_size']} by page depth "
                 f"({posts['posts']:,} posts)")  # fmt: skip
    _below(ax, ncols=3)
    _save(plt, fig, path)


def plot_scaling(f: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = f["backlog"]["by_workers"]
    runs = f["backlog"]["runs"]
    counts = [r["workers"] for r in rows]
    ceiling = f["config"]["poll_ceiling_per_worker"]
    fig, ((rate, cores), (burst, replay)) = plt.subplots(2, 2, figsize=(11, 9.5))

    rate.plot([r["workers"] for r in runs], [r["per_s"] for r in runs], "o", color="C0",
              alpha=0.4, label="each drain")  # fmt: skip
    rate.plot(counts, [r["per_s"] for r in rows], "o-", color="C0", label="median")
    rate.plot(counts, [ceiling * n for n in counts], ":", color="red",
              label=f"arq's poll ceiling ({f['config']['max_jobs']} jobs a "
                    f"{f['config']['poll_delay_s']:g} s poll a worker)")  # fmt: skip
    rate.set_ylim(0, max(ceiling * counts[-1], max(r["per_s"] for r in runs)) * 1.1)
    rate.set_xlabel("worker processes")
    rate.set_ylabel("BDRs completed per second")
    rate.set_title(f"(a) draining {rows[0]['bdrs']} small BDRs")
    _below(rate, ncols=1)

    parties = (
        ("workers_s", "worker processes", "C0"),
        ("postgres_s", "PostgreSQL (this database's backends)", "C2"),
        ("rest_s", "server, Redis, PostgreSQL's shared processes, this bench", "C7"),
        ("others_s", "other work on the machine", "C3"),
    )
    bottom = [0.0] * len(rows)
    for key, label, color in parties:
        values = []
        for r in rows:
            c = r["cpu"]
            spent = (c["server_s"] + c["redis_s"] + c["pg_shared_s"] + c["bench_s"]
                     if key == "rest_s" else c[key])  # fmt: skip
            values.append(spent / c["wall_s"])
        cores.bar([str(n) for n in counts], values, bottom=bottom, color=color, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    cores.axhline(f["config"]["cpus"], color="black", linestyle=":", label="cores on the machine")
    cores.set_xlabel("worker processes (the fastest drain of each)")
    cores.set(ylabel="cores busy during the drain", title="(b) where the CPU went")
    _below(cores, ncols=1)

    b = f["burst"]
    bc = [x["workers"] for x in b]
    for key, style in (("p50_ms", "o-"), ("p99_ms", "^-"), ("reply_p50_ms", "s--")):
        label = {"p50_ms": "POST → ready p50", "p99_ms": "POST → ready p99",
                 "reply_p50_ms": "POST → 202 reply p50"}[key]  # fmt: skip
        burst.plot(bc, [x[key] for x in b], style, label=label)
    burst.set_ylim(0, max(x["max_ms"] for x in b) * 1.1)
    burst.set_xlabel("worker processes")
    burst.set_ylabel("ms")
    burst.set_title(f"(c) {b[0]['users']} users POSTing at once (ready seen over SSE)")
    _below(burst, ncols=3)

    for ax in (rate, burst):
        ax.set_xticks(counts)

    e = f["events"]
    plain = [x for x in e["replays"] if not x["reset"]]
    missed = [x["missed"] for x in plain]
    replay.plot(
        missed, [x["p50_ms"] for x in plain], "o-", label="stream opening to `connected`, p50"
    )
    replay.plot(missed, [x["sql_p50_ms"] for x in plain], "s--", label="its SQL alone, p50")
    replay.axhline(e["snapshot_ms"], color="C7", linestyle=":",
                   label="opening without Last-Event-ID (snapshot)")  # fmt: skip
    replay.set_xscale("log")
    replay.set_yscale("log")
    _plain_log_ticks(replay.xaxis)
    _plain_log_ticks(replay.yaxis)
    replay.set_xlabel("events missed (replayed from an old Last-Event-ID)")
    replay.set(ylabel="ms", title=f"(d) replay with bdr_events at {e['rows']:,} rows")
    _below(replay, ncols=1)
    _save(plt, fig, path)


def plot_sse_box(figures: dict[str, Any], path: Path) -> None:
    """The whole box against the stream count (each level with its server processes): streams
    held, memory per stream, one event's latency, and the burst and the reconnect storm."""
    plt = _pyplot()
    box = figures["box"]
    levels, targets = box["levels"], box["targets"]
    asked = [lv["streams"] for lv in levels]
    fig, axes = plt.subplots(2, 2, figsize=(11, 9.5))
    (held, memory), (event, whole) = axes
    held.plot(asked, [lv["held"] for lv in levels], "o-", label="streams held")
    held.plot(asked, asked, ":", color="gray", label="asked")
    held.set(ylabel="streams", title="Streams held (the server processes under each count)")
    memory.plot(asked, [lv["kb_per_stream_rss"] for lv in levels], "o-",
                label="server processes' RSS")  # fmt: skip
    memory.plot(asked, [lv["kb_per_stream_slab"] for lv in levels], "s--",
                label="kernel slab, both ends")  # fmt: skip
    memory.plot(asked, [lv["kb_per_stream_kernel"] for lv in levels], "^--",
                label="kernel TCP buffers (sockstat), both ends")  # fmt: skip
    top = max(max(lv["kb_per_stream_rss"], lv["kb_per_stream_slab"]) for lv in levels)
    _target(memory, targets["kb_per_stream_rss"], "target: RSS ≤ 12 KB", top)
    memory.set(ylabel="KB per idle stream", title="Memory per stream")
    for q, style in (("p50", "o-"), ("p99", "^-"), ("max", "x--")):
        event.plot(asked, [lv["event"][f"{q}_ms"] for lv in levels], style, label=q)
    _target(event, targets["event_p99_ms"], "target: p99 ≤ 50 ms",
            max(lv["event"]["max_ms"] for lv in levels))  # fmt: skip
    event.set_ylabel("commit → each of the user's streams (ms)")
    event.set_title("One user's event, all other streams open")
    whole.plot(asked, [lv["burst"]["p50_ms"] / 1000 for lv in levels], "o-", label="burst p50")
    whole.plot(asked, [lv["burst_all_s"] for lv in levels], "^-", label="burst: every stream")
    whole.plot(asked, [lv["storm_s"] for lv in levels], "s-", label="storm: every stream back")
    if all("base" in lv for lv in levels):
        whole.plot(asked, [lv["base"]["storm_s"] for lv in levels], "s:", color="C2",
                   label="storm: a bare aiohttp app")  # fmt: skip
        whole.plot(asked, [lv["flood_s"] for lv in levels], "D-", label="flood: every stream held")
    whole.axhline(targets["burst_all_s"], color="C1", linestyle=":", label="target: burst ≤ 2 s")
    whole.axhline(targets["storm_s"], color="C2", linestyle=":", label="target: storm ≤ 30 s")
    whole.set_yscale("log")
    _plain_log_ticks(whole.yaxis)
    whole.set_ylabel("seconds (log scale)")
    whole.set_title("An event for every user; all streams dropped and reopened; the flood")
    for ax in (held, memory, event, whole):
        _log2_x(ax, asked, [f"{lv['streams']:,}\n{lv['processes']} proc." for lv in levels])
        ax.set_xlabel("streams (server processes)")
        _below(ax, ncols=2 if ax in (memory, whole) else 3)
    _save(plt, fig, path)
