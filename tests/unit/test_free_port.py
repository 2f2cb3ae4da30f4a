"""The suite's port drawer (support/stack.py) never hands out a port Chromium refuses
(net::ERR_UNSAFE_PORT): a browser test sent there would fail with nothing broken."""

from __future__ import annotations

import random

import pytest

from support import stack
from support.stack import BROWSER_REFUSED_PORTS, free_port


def _draws(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """The drawer's random picks made `ports`, in order, each of them free."""
    picks = iter(ports)
    monkeypatch.setattr(random, "randrange", lambda *_: next(picks))
    monkeypatch.setattr(stack, "_bindable", lambda port: True)


@pytest.mark.parametrize("refused", sorted(BROWSER_REFUSED_PORTS))
def test_a_refused_port_drawn_is_passed_over(monkeypatch: pytest.MonkeyPatch, refused: int) -> None:
    _draws(monkeypatch, [refused, 12345])
    assert free_port() == 12345


def test_a_port_whose_partner_is_refused_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    # 10010 is fine, but the port 70 above it (its partner, as weed's gRPC ports are) is not.
    _draws(monkeypatch, [10010, 12345])
    assert free_port(gap=70) == 12345


def test_real_draws_are_never_refused() -> None:
    drawn = {free_port() for _ in range(200)} | {free_port(gap=10000) for _ in range(50)}
    assert drawn.isdisjoint(BROWSER_REFUSED_PORTS)


def test_each_xdist_worker_draws_from_its_own_share(monkeypatch: pytest.MonkeyPatch) -> None:
    shares = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
        drawn = [free_port() for _ in range(100)]
        shares.append((min(drawn), max(drawn)))
    assert shares[0][1] < shares[1][0] and shares[1][1] < shares[2][0], shares
