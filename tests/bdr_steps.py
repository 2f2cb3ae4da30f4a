"""The first steps of many download-request (BDR) tests: a new user with one artwork, requests
of it made through the API, and the worker run over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pmd_service.core.settings import Settings
from support.seeding import Factory, PostRow, UserRow
from tests.helpers import Client, request_bdr, run_worker


async def requested(
    client: Client, factory: Factory, count: int = 1
) -> tuple[UserRow, PostRow, list[dict[str, Any]]]:
    """A new user, one artwork of theirs and `count` requests of it, still pending."""
    owner = await factory.user()
    post = await factory.post(owner)
    items = [await request_bdr(client, owner, [post.id]) for _ in range(count)]
    return owner, post, items


async def built(
    client: Client, factory: Factory, settings: Settings, count: int = 1
) -> tuple[UserRow, PostRow, list[dict[str, Any]]]:
    """As `requested`, then the worker run over them: each is ready, its ZIP published."""
    owner, post, items = await requested(client, factory, count)
    await run_worker(settings)
    return owner, post, items


def zip_path(settings: Settings, owner: UserRow, bdr_id: str) -> Path:
    """Where a ready request's ZIP is published."""
    return settings.bdr_path / owner.sqid / f"pmd-{bdr_id}.zip"
