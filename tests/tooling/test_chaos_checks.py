"""The chaos run's report: a check with nothing to check, or a workload that made too little,
fails the run instead of passing it (no stack needed)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from runs.chaos.checks import Report, Workload, check_downloads, check_emails, check_sse
from runs.chaos.procs import covered
from runs.chaos.workload import Ledger


@pytest.mark.parametrize(
    ("name", "ok", "total", "violation"),
    [
        (
            "ready ZIPs byte-exact",
            0,
            0,
            "ready ZIPs byte-exact: only 0 to check, at least 1 wanted",
        ),
        ("SSE views equal", 2, 3, "SSE views equal: 2/3"),  # even without details
    ],
    ids=["nothing to check", "a failed check"],
)
def test_nothing_to_check_or_a_failed_check_is_a_violation(
    name: str, ok: int, total: int, violation: str
) -> None:
    report = Report()
    report.count(name, ok, total)
    assert report.violations == [violation]


def test_none_may_be_allowed_where_none_is_the_goal() -> None:
    report = Report()
    report.count("5xx answers that are allowed", 0, 0, at_least=0)
    report.count("emails exactly once", 3, 3)
    assert report.violations == []
    assert report.lines == ["  5xx answers that are allowed: 0/0", "  emails exactly once: 3/3"]


def test_a_workload_short_of_its_minimum_is_a_violation() -> None:
    report = Report()
    report.minimum("downloads checked", 3, 30)
    report.minimum("emails received", 6, 6)
    assert report.violations == ["downloads checked: 3, fewer than the 30 this workload owes"]


def test_the_minimums_scale_with_the_workload() -> None:
    ci, full = Workload(6, 75).minimums(), Workload(8, 180).minimums()
    assert ci["downloads checked"] == 30 and full["downloads checked"] == 96
    assert ci["BDRs created (202)"] == 24 and full["BDRs created (202)"] == 32
    assert all(full[k] >= ci[k] for k in ci)
    assert all(v >= 1 for v in Workload(1, 1).minimums().values())
    assert Workload(2, 25).minimums()["downloads checked"] == math.ceil(4 * 2 * 25 / 60)


def test_every_failed_download_is_a_violation() -> None:
    ledger = Ledger(t0=0.0)
    ledger.counts["downloads checked: whole ZIP, byte-exact"] += 4
    ledger.counts["downloads checked: HEAD"] += 1
    ledger.download_failed("GET 1234: 200, 10 bytes, not the recorded ZIP")
    report = Report()
    check_downloads(report, ledger)
    assert report.lines[0].endswith(": 4/5")
    assert len(report.violations) == 1 and "not the recorded ZIP" in report.violations[0]


def test_downloads_never_checked_are_a_violation() -> None:
    report = Report()
    check_downloads(report, Ledger(t0=0.0))
    assert report.violations and "at least 1 wanted" in report.violations[0]


_P = {"done": 1, "total": 1}


def _client(view: dict[str, dict[str, object]]) -> Any:
    return SimpleNamespace(
        name="sse-0",
        user=SimpleNamespace(id=1),
        view=view,
        ends=Counter(),
        connects=1,
        events=1,
        resets=0,
    )


@pytest.mark.parametrize(
    ("seen", "upgraded", "agrees"),
    [
        ({"status": "ready", "progress": _P}, True, True),  # the previous release's frame
        ({"status": "ready", "progress": _P}, False, False),  # one release sends every field
        ({"status": "failed", "progress": _P}, True, False),
        ({"status": "ready", "progress": _P, "error_code": None, "gone": 1}, True, False),
    ],
)
def test_an_upgrade_forgives_only_the_fields_a_release_added(
    seen: dict[str, object], upgraded: bool, agrees: bool
) -> None:
    report = Report()
    item = {"b1": {"status": "ready", "progress": _P, "error_code": None}}
    check_sse(report, [_client({"b1": seen})], {1: item}, upgraded)
    assert (report.violations == []) is agrees, report.violations


_FAILED = {
    "status": "failed",
    "progress": _P,
    "error_code": "internal",
    "error_reason": "unexpected",
}


@pytest.mark.parametrize(
    ("seen", "upgraded", "agrees"),
    [
        ({**_FAILED, "error_message": "Its own words."}, True, True),  # the previous release's
        ({**_FAILED, "error_message": "Its own words."}, False, False),
        ({**_FAILED, "error_message": None}, True, False),  # a failure must say why
        ({**_FAILED, "status": "ready", "error_message": "Its own words."}, True, False),
    ],
)
def test_an_upgrade_forgives_a_failures_words_only(
    seen: dict[str, object], upgraded: bool, agrees: bool
) -> None:
    report = Report()
    item = {"b1": {**_FAILED, "error_message": "The fixed sentence."}}
    check_sse(report, [_client({"b1": seen})], {1: item}, upgraded)
    assert (report.violations == []) is agrees, report.violations


def test_downloads_are_owed_only_while_they_could_be_answered() -> None:
    spans = [(10.0, 30.0), (20.0, 40.0), (70.0, 90.0)]  # overlapping, one past the end
    assert covered(spans, 0.0, 75.0) == 35.0
    assert covered([], 0.0, 75.0) == 0.0
    whole = Workload(6, 75).minimums()
    assert Workload(6, 75, 0.0) == Workload(6, 75)
    half = Workload(6, 75, 37.5).minimums()
    assert half["downloads checked"] == math.ceil(4 * 6 * 37.5 / 60) < whole["downloads checked"]
    assert {k: v for k, v in half.items() if k != "downloads checked"} == {
        k: v for k, v in whole.items() if k != "downloads checked"
    }
    assert Workload(6, 75, 75.0).minimums()["downloads checked"] == 1


_TAKEN = datetime(2026, 11, 27, 17, 31, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kill", "agrees"),
    [
        (_TAKEN + timedelta(seconds=2), True),  # mid-send: sent at most once, so lost
        (None, False),
        (_TAKEN - timedelta(seconds=2), False),  # before the take: the sweep sends it again
        (_TAKEN + timedelta(minutes=5), False),  # long after any send ended
    ],
)
def test_an_email_a_worker_kill_cut_off_mid_send_is_the_only_one_forgiven(
    kill: datetime | None, agrees: bool
) -> None:
    row = {
        "id": "b1",
        "send_email": True,
        "status": "ready",
        "email_sent_at": _TAKEN,
        "email_lease_until": None,
    }
    report = Report()
    check_emails(report, [row], [], [kill] if kill else [])
    assert (report.violations == []) is agrees, report.violations
