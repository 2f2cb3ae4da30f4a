from __future__ import annotations

from pathlib import Path

import pytest

from pmd_service.settings import ConfigError, Settings


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
    assert not settings.dev_mode and not settings.embedded


def test_dev_mode_generates_a_stable_secret(tmp_path: Path) -> None:
    first = Settings.from_env({"PMD_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"PMD_DATA_DIR": str(tmp_path)})
    assert first.dev_mode and first.embedded
    assert first.jwt_secret_key == second.jwt_secret_key and len(first.jwt_secret_key) >= 32


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
        Settings.from_env({"PMD_DATA_DIR": str(tmp_path), name: value})
