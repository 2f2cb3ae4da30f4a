from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pmd_service.core.settings import ConfigError, Settings
from tests.helpers import CHECKOUT

PRODUCTION = {
    "DATABASE_URL": "postgresql://db/x",
    "REDIS_URL": "redis://r",
    "JWT_SECRET_KEY": "s" * 32,
}


def test_production_requires_a_jwt_secret(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://db/x",
        "REDIS_URL": "redis://r",
        "PMD_DATA_DIR": str(tmp_path),
    }
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY is required"):
        Settings.from_env(env)
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_env({**env, "JWT_SECRET_KEY": "short"})
    settings = Settings.from_env({**env, "JWT_SECRET_KEY": "s" * 32})
    assert not settings.dev_mode
    assert (settings.database_url, settings.redis_url) == ("postgresql://db/x", "redis://r")


def test_unset_urls_come_from_the_embedded_servers_in_dev_mode(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    asked: list[tuple[Path, str | None, str | None]] = []

    def embedded(data_dir: Path, db: str | None, redis: str | None) -> tuple[str, str]:
        asked.append((data_dir, db, redis))
        return db or database_url, redis or redis_url

    env = {"PMD_DATA_DIR": str(tmp_path)}
    first = Settings.from_env(env, embedded=embedded)
    second = Settings.from_env(env | {"REDIS_URL": "redis://given"}, embedded=embedded)
    assert first.dev_mode and (first.database_url, first.redis_url) == (database_url, redis_url)
    assert second.redis_url == "redis://given"
    assert asked == [(tmp_path, None, None), (tmp_path, None, "redis://given")]
    # A per-checkout secret, the same on every start.
    assert first.jwt_secret_key == second.jwt_secret_key and len(first.jwt_secret_key) >= 32
    # Without embedded servers (production installs, the worker), the URLs are required.
    with pytest.raises(ConfigError, match="DATABASE_URL and REDIS_URL"):
        Settings.from_env(env)
    # A bad variable is named before any embedded server is asked for.
    with pytest.raises(ConfigError, match="PORT"):
        Settings.from_env(env | {"PORT": "eighty"}, embedded=embedded)
    assert len(asked) == 2


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    settings = Settings.from_env({
        "DATABASE_URL": "postgresql://u:dbpass@db/x",
        "REDIS_URL": "redis://:redispass@r",
        "JWT_SECRET_KEY": "jwtsecret" * 4,
        "SMTP_PASSWORD": "smtppass",
        "PMD_DATA_DIR": str(tmp_path),
    })  # fmt: skip
    text = repr(settings)
    for secret in ("dbpass", "redispass", "jwtsecret", "smtppass"):
        assert secret not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "eighty"), ("BDR_DAILY_LIMIT", "0"), ("SMTP_STARTTLS", "maybe"),
     ("ARTWORK_BASE_URL", "ftp://x"), ("SQIDS_ALPHABET", "aab")],
)  # fmt: skip
def test_bad_values_are_named(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**PRODUCTION, "PMD_DATA_DIR": str(tmp_path), name: value})


def test_every_variable_is_documented() -> None:
    """Each field of Settings is an environment variable: docs/configuration.md names them all."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    documented = (CHECKOUT / "docs" / "configuration.md").read_text()
    missing = [f.encode_name for f in info.fields if f"`{f.encode_name}`" not in documented]
    assert missing == []


def test_periods_and_sizes_are_bounded(tmp_path: Path) -> None:
    for name, value in (("SSE_PING_SECONDS", "0"), ("MAX_BODY_BYTES", "-1"), ("PORT", "70000")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**PRODUCTION, "PMD_DATA_DIR": str(tmp_path), name: value})
