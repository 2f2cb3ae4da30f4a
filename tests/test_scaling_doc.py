"""docs/scaling.md's streams part: the table of `bench.sse --box` when its figures are saved,
and "not measured yet" with the command to run when they are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import runner, scaling_doc

LEVEL = {"streams": 50000, "processes": 4, "held": 49000, "kb_per_stream_rss": 11.5,
         "kb_per_stream_slab": 4.5, "event_p99_ms": 31.0, "burst_all_s": 1.25,
         "storm_s": 12.5, "storm_5xx": 0}  # fmt: skip


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(scaling_doc, "RESULTS", tmp_path)
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs.json")
    return tmp_path


def test_streams_not_measured_says_how(results: Path) -> None:
    (results / "sse.json").write_text(json.dumps({"rows": []}))  # the per-process run only
    assert scaling_doc.sse_part() == (
        "Streams against processes: not measured yet (`python -m bench.sse --box`)."
    )
    assert scaling_doc.streams_per_process() is None


def test_streams_measured_are_tabled_and_feed_the_model(results: Path) -> None:
    (results / "sse.json").write_text(json.dumps({"box": {"levels": [LEVEL]}}))
    part = scaling_doc.sse_part()
    assert "| 50,000 | 4 | 49,000 | 11.5 | 4.5 | 31.0 | 1.25 | 12.5 | 0 |" in part
    assert scaling_doc.streams_per_process() == 12250.0


def test_the_box_run_of_its_own_is_read_first(results: Path) -> None:
    (results / "sse.json").write_text(json.dumps({"rows": []}))
    (results / "sse_box.json").write_text(
        json.dumps({"box": {"levels": [LEVEL | {"storm_s": None}]}})
    )
    assert "| 12.5 |" not in scaling_doc.sse_part()  # a storm not absorbed: no time
    assert scaling_doc.streams_per_process() == 12250.0


def test_cluster_outcome_missing_is_said(results: Path) -> None:
    assert "`bench.cluster` has no saved figures" in scaling_doc.cluster_part()
