"""What the deploy tests share: the service's server and worker, run as processes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import pytest

from pmd_service.core.settings import Settings
from support.stack import free_port
from tests.page_stack import Stack, running_stack

StackOn = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture
def stack_on(settings: Settings, pool: asyncpg.Pool, redis_clean: None, tmp_path: Path) -> StackOn:
    """The server and the worker on the test's settings and the environment the test adds."""
    return lambda **env: running_stack(settings, tmp_path, free_port(), **env)
