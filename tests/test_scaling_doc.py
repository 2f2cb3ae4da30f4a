"""docs/scaling.md's streams part: the table of `bench.sse --box` when its figures are committed,
and "not measured yet" with the command to run when they are not."""

from __future__ import annotations

import json
from pathlib import Path

from bench import scaling_doc

LEVEL = {"streams": 50000, "processes": 4, "held": 49000, "kb_per_stream_rss": 11.5,
         "kb_per_stream_slab": 4.5, "event_p99_ms": 31.0, "burst_all_s": 1.25,
         "storm_s": 12.5, "storm_5xx": 0}  # fmt: skip
RUN = {"date": "2026-01-02 03:04 UTC", "command": "python -m bench.sse --box"}


def test_streams_not_measured_says_how(tmp_path: Path) -> None:
    assert scaling_doc.sse_part(tmp_path) == (
        "Streams against processes: not measured yet (`python -m bench.sse --box`)."
    )
    assert scaling_doc.streams_per_process(tmp_path) is None


def test_streams_measured_are_tabled_and_feed_the_model(tmp_path: Path) -> None:
    (tmp_path / "sse_box.json").write_text(
        json.dumps({"run": RUN, "figures": {"box": {"levels": [LEVEL]}}})
    )
    part = scaling_doc.sse_part(tmp_path)
    assert "| 50,000 | 4 | 49,000 | 11.5 | 4.5 | 31.0 | 1.25 | 12.5 | 0 |" in part
    assert scaling_doc.streams_per_process(tmp_path) == 12250.0


def test_a_storm_not_absorbed_has_no_time(tmp_path: Path) -> None:
    (tmp_path / "sse_box.json").write_text(
        json.dumps({"run": RUN, "figures": {"box": {"levels": [LEVEL | {"storm_s": None}]}}})
    )
    assert "| 12.5 |" not in scaling_doc.sse_part(tmp_path)
    assert scaling_doc.streams_per_process(tmp_path) == 12250.0


def test_cluster_outcome_missing_is_said(tmp_path: Path) -> None:
    assert "no figures in `bench/figures/cluster.json`" in scaling_doc.cluster_part(tmp_path)


def test_a_page_without_capacity_figures_says_so_in_each_part(tmp_path: Path) -> None:
    page = scaling_doc.render(tmp_path)
    assert page.count("no figures in `bench/figures/capacity.json`") == 5
    assert "## A model for 10× and 100× the host\n\n*Not measured yet" in page
