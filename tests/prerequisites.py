"""A test lacking what it needs is skipped, or failed where `PMD_REQUIRE_<AREA>=1`."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

AREAS = ("browser", "deploy", "image", "compose", "pgbouncer")


def switch(area: str) -> str:
    if area not in AREAS:
        raise ValueError(f"{area}: not one of {', '.join(AREAS)} (tests/prerequisites.py)")
    return f"PMD_REQUIRE_{area.upper()}"


def unmet(area: str, why: str, *, module: bool = False) -> NoReturn:
    """Skip the test (`module`: the whole module) with `why`, or fail it if the area is required."""
    if os.environ.get(switch(area)) == "1":
        pytest.fail(f"{switch(area)}=1, but {why}", pytrace=False)
    pytest.skip(why, allow_module_level=module)


def needs(area: str, why: str | None) -> pytest.MarkDecorator:
    """A mark for a test or module: `why` is what it lacks here (None: nothing)."""
    switch(area)
    return pytest.mark.needs(area, why)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(area, why): what the test lacks on this machine")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        area, why = mark.args
        if why is not None:
            unmet(area, why)
