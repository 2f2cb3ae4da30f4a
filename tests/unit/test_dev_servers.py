"""Dev mode runs the server and worker only on servers a dev stack marked as its own, and the
checkout's secret never signs for a database whose URL is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmd_service.core.settings import ConfigError, Settings, mark_dev_servers

SERVERS = {
    "DATABASE_URL": "postgresql://pmd@db.example.org/pmd",
    "DATABASE_DIRECT_URL": "postgresql://pmd@db-direct.example.org/pmd",
    "REDIS_URL": "redis://queue.example.org:6379/0",
}
SECRET = "s" * 32


def dev_env(data_dir: Path, **changes: str) -> dict[str, str]:
    return (
        SERVERS
        | {"PMD_DEV": "1", "PMD_DATA_DIR": str(data_dir), "JWT_SECRET_KEY": SECRET}
        | changes
    )


def test_serving_in_dev_mode_refuses_each_server_no_dev_stack_marked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for marked in ([], ["DATABASE_URL"], ["DATABASE_URL", "REDIS_URL"]):
        mark_dev_servers(data, *(SERVERS[name] for name in marked))
        with pytest.raises(ConfigError) as refused:
            Settings.from_env(dev_env(data), serving=True)
        named = {name for name in SERVERS if name in str(refused.value).replace(",", " ").split()}
        assert named == set(SERVERS) - set(marked), refused.value
    # The marks are of the exact URLs: another database on a marked server is not one of them.
    other = {"DATABASE_DIRECT_URL": SERVERS["DATABASE_URL"] + "_other"}
    with pytest.raises(ConfigError, match="DATABASE_DIRECT_URL"):
        Settings.from_env(dev_env(data, **other), serving=True)


def test_serving_in_dev_mode_runs_on_the_servers_its_dev_stack_marked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    mark_dev_servers(data, *SERVERS.values())
    settings = Settings.from_env(dev_env(data), serving=True)
    assert settings.dev_mode and settings.database_url == SERVERS["DATABASE_URL"]
    # Marking again adds nothing, and the file says nothing of the URLs themselves.
    before = (data / "dev-servers").read_text()
    mark_dev_servers(data, *SERVERS.values())
    assert (data / "dev-servers").read_text() == before
    assert not any(host in before for host in ("example.org", "pmd@", "redis://"))


def test_outside_dev_mode_or_for_other_commands_any_server_is_used(tmp_path: Path) -> None:
    data = tmp_path / "data"
    production = {k: v for k, v in dev_env(data).items() if k != "PMD_DEV"}
    assert not Settings.from_env(production, serving=True).dev_mode
    assert Settings.from_env(dev_env(data)).dev_mode  # a CLI command: not serving
    assert not data.exists()


@pytest.mark.parametrize("serving", [False, True])
def test_the_checkouts_secret_never_signs_for_a_database_whose_url_is_set(
    tmp_path: Path, serving: bool
) -> None:
    data = tmp_path / "data"
    mark_dev_servers(data, *SERVERS.values())
    env = {k: v for k, v in dev_env(data).items() if k != "JWT_SECRET_KEY"}
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY is required"):
        Settings.from_env(env, serving=serving)
    assert not (data / "dev-jwt-secret").exists()
    # A process that needs no secret still starts, with none.
    assert Settings.from_env(env, needs_secret=False, serving=serving).jwt_secret_key == ""


def test_the_checkouts_secret_still_signs_for_the_embedded_database(tmp_path: Path) -> None:
    def embedded(data_dir: Path, db: str | None, redis: str | None) -> tuple[str, str]:
        return db or SERVERS["DATABASE_URL"], redis or SERVERS["REDIS_URL"]

    env = {"PMD_DEV": "1", "PMD_DATA_DIR": str(tmp_path)}
    settings = Settings.from_env(env, embedded=embedded, serving=True)
    assert settings.jwt_secret_key == (tmp_path / "dev-jwt-secret").read_text().strip()
