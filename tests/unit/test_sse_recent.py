"""The hub's memory of the newest events (pmd_service/sse/recent.py): what it vouches for."""

from __future__ import annotations

import time

import pytest

from pmd_service.sse.recent import RecentEvents


def filled(keep: int, events: list[tuple[int, int]], newest_at_start: int = 10) -> RecentEvents:
    run = RecentEvents(keep)
    run.start(newest_at_start)
    for event_id, user in events:
        run.add(event_id, user, "bdr", "watchers", f'{{"e": {event_id}}}')
    return run


def test_nothing_is_vouched_for_before_the_listener_starts() -> None:
    run = RecentEvents()
    run.add(5, 1, "bdr", "watchers", "{}")
    assert run.missed(1, 4) is None
    assert run.newest == -1


def test_the_users_events_after_a_held_id_or_the_floor_with_gaps_in_the_ids() -> None:
    run = filled(100, [(11, 1), (12, 2), (15, 1), (16, 2), (20, 1)])  # 13, 14: rolled back
    assert run.missed(1, 10) == [
        (11, "bdr", "watchers", '{"e": 11}'),
        (15, "bdr", "watchers", '{"e": 15}'),
        (20, "bdr", "watchers", '{"e": 20}'),
    ]
    assert run.missed(1, 12) == [
        (15, "bdr", "watchers", '{"e": 15}'),
        (20, "bdr", "watchers", '{"e": 20}'),
    ]  # another user's id
    assert run.missed(2, 16) == []
    assert run.missed(1, 20) == []
    assert run.missed(3, 11) == []  # a user with no events
    # Not ids of the run: a gap, newer than read, older than the floor, never an id.
    for after in (13, 14, 21, 9, 0, -1):
        assert run.missed(1, after) is None, after


def test_the_floor_moves_up_as_old_events_go() -> None:
    run = filled(3, [(11, 1), (12, 1), (13, 2), (14, 1), (15, 2)])
    assert run.floor == 12
    assert run.missed(1, 11) is None  # gone: only the table can say what followed it
    assert run.missed(1, 12) == [(14, "bdr", "watchers", '{"e": 14}')]
    assert run.missed(2, 13) == [(15, "bdr", "watchers", '{"e": 15}')]


def test_an_event_read_again_is_kept_once() -> None:
    run = filled(10, [(11, 1), (12, 1)])
    run.add(12, 1, "bdr", "watchers", "again")
    run.add(11, 1, "bdr", "watchers", "again")
    assert run.missed(1, 10) == [
        (11, "bdr", "watchers", '{"e": 11}'),
        (12, "bdr", "watchers", '{"e": 12}'),
    ]


def test_ids_held_longer_than_the_age_limit_go_to_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    run = RecentEvents(100, max_age_s=60)
    run.start(10)
    run.add(11, 1, "bdr", "watchers", "a")
    now[0] += 50
    run.add(12, 1, "bdr", "watchers", "b")
    now[0] += 20  # the floor (read at start) and 11 are 70 s old, 12 is 20 s old
    assert run.missed(1, 10) is None
    assert run.missed(1, 11) is None
    assert run.missed(1, 12) == []


def test_the_run_is_bounded_in_bytes_as_well_as_in_count() -> None:
    """Every process reads every event, watched or not: large events must not grow it past
    its byte budget (a count alone let one account's events grow servers by a GB)."""
    run = RecentEvents(keep=1000, keep_bytes=10_000)
    run.start(10)
    big = "x" * 3000
    for event_id in range(11, 21):
        run.add(event_id, 1, "bdr", "watchers", big)
        assert run.bytes <= 10_000
    assert run.bytes == 9000  # the three newest
    assert run.floor == 17
    assert [e[0] for e in run.missed(1, 17) or []] == [18, 19, 20]
    assert run.missed(1, 16) is None  # evicted: the table answers
    # One event larger than the budget is not held; the run still vouches from it on.
    run.add(21, 2, "bdr", "watchers", "y" * 20_000)
    assert run.bytes == 0 and run.floor == 21 and run.newest == 21
    assert run.missed(2, 21) == []
    run.add(22, 2, "bdr", "watchers", "{}")
    assert run.missed(2, 21) == [(22, "bdr", "watchers", "{}")]
