"""`python -m pmd_service demo` (its `main`), against the test database: the demo data of
`make run` loaded once, into a database with no user, its artworks' files in VAULT_PATH; one
line and nothing written where it cannot (users already there, no Pillow). docker-compose.yml's
`demo` service runs it (tests/deploy/test_compose_up.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from pmd_service.__main__ import main
from pmd_service.core.settings import Settings
from tests.cli_env import admin_value, keep_process_logging
from tests.helpers import SECRET, TABLES


@pytest.fixture
def env(
    settings: Settings, admin_database_url: str, monkeypatch: pytest.MonkeyPatch, redis_clean: None
) -> Settings:
    # The demo writes the host's tables: as the database's admin, not the service's own role
    # (least privilege: it may not), and straight to it, no pooler.
    monkeypatch.setenv("DATABASE_URL", admin_database_url)
    for name in ("DATABASE_DIRECT_URL", "DATABASE_POOLER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)
    monkeypatch.setenv("AUTO_MIGRATE", "false")
    monkeypatch.setenv("VAULT_PATH", str(settings.vault_path))
    monkeypatch.setenv("BASE_URL", "http://localhost:8123")
    admin_value(admin_database_url, f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    keep_process_logging(monkeypatch)
    return settings


def test_loads_once_and_says_who_and_where(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    first = json.loads(capsys.readouterr().out)
    sqid = first["user_sqid"]
    assert first["loaded"] is True
    assert first["handle"] == "demo"
    assert first["page"] == f"http://localhost:8123/u/{sqid}/posts"
    assert first["token"] == f"python -m pmd_service token {sqid}"
    query = "SELECT count(*) FROM posts WHERE kind = 'artwork'"
    artworks = admin_value(admin_database_url, query)
    assert artworks == 40
    assert len([p for p in env.vault_path.rglob("*") if p.is_file()]) == artworks
    # Again: nothing more, the same user.
    assert main(["demo"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again == first | {"loaded": False}
    assert admin_value(admin_database_url, query) == artworks


def test_never_into_a_database_with_users(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_value(
        admin_database_url,
        "INSERT INTO users (handle, email) VALUES ('someone', 's@x') RETURNING id",
    )
    assert main(["demo"]) == 2
    assert "already has users" in capsys.readouterr().err
    assert admin_value(admin_database_url, "SELECT count(*) FROM posts") == 0


def test_without_pillow_one_line_and_nothing_written(
    env: Settings, admin_database_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "PIL" else real(name, *a)
    )
    assert main(["demo"]) == 2
    assert "needs Pillow" in capsys.readouterr().err
    assert admin_value(admin_database_url, "SELECT count(*) FROM users") == 0
