"""The posts list's cursor: each page counts its own total, so a number written into a cursor
is never shown back, and the cursors this release writes are read by the previous release, so
a walk that crosses servers of both during a rolling upgrade goes on."""

from __future__ import annotations

import base64
import importlib.util
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from pmd_service.features.posts.cursor import Cursor
from support.seeding import Factory
from tests.helpers import posts_page
from tests.unit.test_previous_release_events import git, previous_release_rev

Client = TestClient[Any, Any]


def _raw(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def _token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def test_a_total_written_into_a_cursor_is_never_shown_back(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 6)
    first = await posts_page(client, user, "limit=2")
    assert first["total_count"] == 6
    kind, key, post_id = _raw(first["next_cursor"]).split(":")
    # The previous releases' form, which carried the walk's total: read, the total dropped.
    forged = _token(":".join((kind, key, post_id, "999999")))
    page = await posts_page(client, user, f"limit=2&cursor={forged}")
    assert page["total_count"] == 6 and len(page["items"]) == 2
    assert (
        page["items"]
        == (await posts_page(client, user, f"limit=2&cursor={first['next_cursor']}"))["items"]
    )


@pytest.fixture(scope="module")
def previous_cursor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The previous release's posts/cursor.py, as its servers run it."""
    shown = git("show", f"{previous_release_rev()}:pmd_service/posts/cursor.py")
    assert shown.returncode == 0, shown.stderr
    path = tmp_path_factory.mktemp("previous") / "cursor.py"
    # Its folder is one level deeper here (features/posts/), and so are its shared rooms.
    path.write_text(shown.stdout.replace("from ..", "from ..."))
    name = "pmd_service.features.posts.previous_release_cursor"  # its imports: this package's
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclass looks its module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


@pytest.mark.parametrize(
    ("deleted", "bound"), [(False, None), (False, "0123456789ab"), (True, None)]
)
def test_the_previous_release_reads_this_releases_cursors(
    previous_cursor: ModuleType, deleted: bool, bound: str | None
) -> None:
    at = datetime(2026, 11, 27, 3, 4, 5, 678901, tzinfo=UTC)
    token = Cursor(deleted, at, 2**31 - 1, bound).encode()
    read = previous_cursor.Cursor.decode(token, deleted, bound)
    assert (read.key, read.post_id, read.total, read.bound) == (at, 2**31 - 1, None, bound)
