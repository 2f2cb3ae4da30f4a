"""What some tests need from the machine beyond the project's Python packages, and what happens
without it. Such a test is skipped with one line saying what is missing and how to install it,
unless its area is required: `PMD_REQUIRE_<AREA>=1`. CI sets those switches (`.ci/run`), and
there the same line fails the test instead. One mechanism for every area:

    area       switch                   tests
    browser    PMD_REQUIRE_BROWSER      test_page_browser, test_host_page_browser,
                                        test_api_reference_browser (Chromium)
    deploy     PMD_REQUIRE_DEPLOY       test_deploy_* (Caddy, nginx, promtool, docker-compose)
    image      PMD_REQUIRE_IMAGE        test_image (PMD_IMAGE_TESTS=1, podman, and servers its
                                        containers reach)
    compose    PMD_REQUIRE_COMPOSE      test_compose_up (PMD_IMAGE_TESTS=1, podman,
                                        docker-compose, root)
    pgbouncer  PMD_REQUIRE_PGBOUNCER    test_pgbouncer

The machine's programs and their Debian packages are support/tools.py's table. Beyond these
switches, CI fails on any skip that tests/skips_allowed.txt does not allow (tests/skip_guard.py).

A pytest plugin: tests/conftest.py loads it; elsewhere `python -m pytest -p tests.prerequisites`.
"""

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
    """Skip the test (`module`: the whole module, at import) with `why`, or fail it with `why`
    when the area is required."""
    if os.environ.get(switch(area)) == "1":
        pytest.fail(f"{switch(area)}=1, but {why}", pytrace=False)
    pytest.skip(why, allow_module_level=module)


def needs(area: str, why: str | None) -> pytest.MarkDecorator:
    """A mark for a test, or a module's `pytestmark`: `why` is what it lacks here (None: nothing).
    tests/conftest.py acts on it before the test's fixtures start anything."""
    switch(area)
    return pytest.mark.needs(area, why)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(area, why): what the test lacks on this machine")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test's `needs` marks, before any of its fixtures starts a server."""
    for mark in item.iter_markers("needs"):
        area, why = mark.args
        if why is not None:
            unmet(area, why)
