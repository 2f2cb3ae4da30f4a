"""The service beside the host's tables at their newest or as at commit 4350ab8."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import create_pool
from pmd_service.core.migrate import migrate
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import HostSite
from support.stack import connected
from tests.helpers import Client, direct

AT_4350AB8 = Path(__file__).with_name("host_at_4350ab8.sql")


@dataclass(frozen=True)
class BesideHost:
    settings: Settings  # the service, as its `grants` role
    pool: asyncpg.Pool  # the host's side: an admin's
    site: HostSite
    client: Client


def beside_host_at(*, older: bool) -> Any:
    """A fixture: the service beside the host's tables, as at 4350ab8 if `older`, else newest."""

    @pytest.fixture
    async def beside(
        host_url: str,
        host_role_url: str,
        settings: Settings,
        aiohttp_client: AiohttpClient,
        redis_clean: None,
    ) -> AsyncIterator[BesideHost]:
        if older:
            async with connected(host_url) as conn:
                await conn.execute(AT_4350AB8.read_text("utf-8"))
        service = direct(settings, host_role_url)
        pool = await create_pool(host_url, "pmd-test-host", search_path=service.search_path)
        try:
            search_path = {"search_path": service.search_path}
            async with connected(host_role_url, server_settings=search_path) as role:
                await migrate(role, service)
            client: Client = await aiohttp_client(create_app(service))
            yield BesideHost(service, pool, HostSite(pool, service), client)
        finally:
            await pool.close()

    return beside
