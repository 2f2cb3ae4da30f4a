"""The figures of the ZIP-building benchmarks (bench.zip, bench.bdr_e2e, bench.job,
bench.worker_memory, bench.store, bench.proxy_memory) as their blocks of
bench/templates/benchmarks.md.j2 read them: each function gives the saved figures plus the
ratios the text names. The sentences are in the template."""

from __future__ import annotations

import statistics
from typing import Any


def zip_section(z: dict[str, Any]) -> dict[str, Any]:
    large = z["large"]
    return z | {
        "vs_seed": large["seed_s"] / large["worker_s"],
        "vs_floor": large["worker_s"] / large["floor_s"],
        "seed_over_floor": large["seed_s"] / large["floor_s"],
    }


def e2e_section(e: dict[str, Any]) -> dict[str, Any]:
    return e


def job_section(j: dict[str, Any]) -> dict[str, Any]:
    large = j["large"]
    return j | {
        "ratio": large["job_s"] / large["floor_s"],
        "faster": large["original_s"] / large["job_s"],
        "original": large["original_s"] / large["floor_s"],
        "small_ms": j["small"]["job_s"] * 1000,
    }


def worker_memory_section(f: dict[str, Any]) -> dict[str, Any]:
    return f


def store_section(s: dict[str, Any]) -> dict[str, Any]:
    d = s["downloads"]
    redirect = d["cpu_s_per_302"] / (d["zip_bytes"] / 1e9)
    return s | {
        "redirect_s_per_gb": redirect,
        "small_redirect": d["cpu_s_per_302"] <= 0.005
        and redirect * 100 <= d["proxy"]["cpu_s_per_gb"],
    }


def proxy_memory_section(f: dict[str, Any]) -> dict[str, Any]:
    frozen = f["frozen"]
    answers = [
        {
            "label": label,
            # The median, as bench.proxy_memory prints it.
            "well_s": statistics.median(a["seconds"] for a in frozen[f"well_{what}"]),
            "slowest_s": max(a["seconds"] for a in frozen[f"frozen_{what}"]),
            "statuses": ", ".join(sorted({str(a["status"]) for a in frozen[f"frozen_{what}"]})),
        }
        for what, label in (
            ("get_redirect", "download, redirect mode"),
            ("get_proxy", "download, proxy mode"),
            ("delete", "removal"),
        )
    ]
    return f | {"answers": answers}
