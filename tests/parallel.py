"""Which tests share an xdist worker; groups go in a file (pytest-dev/pytest-xdist#1386)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

GROUPS = "pmd_xdist_groups"
GROUPS_FILE = pytest.StashKey[Path]()


def group_of(item: pytest.Item) -> str | None:
    """The group `item` shares a worker with; None: any worker."""
    if (mark := item.get_closest_marker("xdist_group")) is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    info = getattr(item, "_fixtureinfo", None)
    scopes = {d.scope for defs in info.name2fixturedefs.values() for d in defs} if info else set()
    return item.nodeid.split("::")[0] if scopes & {"module", "class"} else None


class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no types
    def __init__(self, config: pytest.Config, log: Any, groups: Path) -> None:
        super().__init__(config, log)
        self.groups_file = groups
        self.groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self.groups is None:  # first asked once every worker has collected
            self.groups = json.loads(self.groups_file.read_text() or "{}")
        return self.groups.get(nodeid, nodeid)


def _controller(config: pytest.Config) -> bool:
    return config.getoption("dist", "no") == "loadgroup" and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _controller(config):
        handle, name = tempfile.mkstemp(prefix="pmd-xdist-groups-", suffix=".json")
        os.close(handle)
        config.stash[GROUPS_FILE] = Path(name)


def pytest_unconfigure(config: pytest.Config) -> None:
    if (path := config.stash.get(GROUPS_FILE, None)) is not None:
        path.unlink(missing_ok=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    if (path := node.config.stash.get(GROUPS_FILE, None)) is not None:
        node.workerinput[GROUPS] = str(path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> GroupScheduling | None:
    if _controller(config):
        return GroupScheduling(config, log, config.stash[GROUPS_FILE])
    return None


def spread(items: list[pytest.Item]) -> list[pytest.Item]:
    """The groups first (xdist hands them out first anyway), then the other tests with each
    folder's spread evenly over the run: the browsers' CPU, the processes' waits and the
    database's queries overlap, rather than eight browsers at once and then none."""
    grouped: list[pytest.Item] = []
    folders: dict[str, list[pytest.Item]] = {}
    for item in items:
        if group_of(item) is not None:
            grouped.append(item)
        else:
            folders.setdefault(item.nodeid.split("/")[1], []).append(item)
    placed = [
        ((n + 0.5) / len(folder), item)
        for folder in folders.values()
        for n, item in enumerate(folder)
    ]
    return grouped + [item for _, item in sorted(placed, key=lambda placed: placed[0])]


@pytest.hookimpl(trylast=True)  # after every other plugin has settled the items and their ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    name = getattr(config, "workerinput", {}).get(GROUPS)
    if name is None:
        return
    items[:] = spread(items)
    groups = {item.nodeid: group for item in items if (group := group_of(item)) is not None}
    path = Path(name)
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(groups))
    partial.replace(path)
