"""The suite's port drawer (support/stack.py) never hands out a port Chromium refuses
(net::ERR_UNSAFE_PORT): a browser test sent there would fail with nothing broken; nor one another
process of the suite drew, as a port found free is bound only later."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from support import stack
from support.stack import BROWSER_REFUSED_PORTS, free_port
from tests.helpers import CHECKOUT


def _draws(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """The drawer's random picks made `ports`, in order, each of them free."""
    picks = iter(ports)
    monkeypatch.setattr(random, "randrange", lambda *_: next(picks))
    monkeypatch.setattr(stack, "_bindable", lambda port: True)
    monkeypatch.setattr(stack, "_claimed", lambda port: True)


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


def _in_another_process(code: str) -> str:
    run = [sys.executable, "-c", "from support import stack; " + code]
    return subprocess.run(run, capture_output=True, text=True, check=True, cwd=CHECKOUT).stdout


def test_a_port_drawn_and_its_partner_are_not_drawn_by_another_process() -> None:
    port = free_port(gap=10000)
    claims = f"print(stack._claimed({port}), stack._claimed({port + 10000}))"
    assert _in_another_process(claims).split() == ["False", "False"]


def test_a_port_is_free_again_once_the_process_that_drew_it_ended() -> None:
    port = int(_in_another_process("print(stack.free_port())"))
    assert stack._claimed(port)
