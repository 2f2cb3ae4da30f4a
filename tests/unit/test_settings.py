from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pmd_service.core.settings import FORMER_NAMES, ConfigError, Settings, unknown_settings
from tests.bad_settings import BAD, FILE
from tests.helpers import CHECKOUT

PRODUCTION = {
    "DATABASE_URL": "postgresql://db/x",
    "REDIS_URL": "redis://r",
    "JWT_SECRET_KEY": "s" * 32,
}


def without_secret(data_dir: Path) -> dict[str, str]:
    """PRODUCTION's environment but for its JWT secret."""
    env = {name: value for name, value in PRODUCTION.items() if name != "JWT_SECRET_KEY"}
    return env | {"PMD_DATA_DIR": str(data_dir)}


def test_production_requires_a_jwt_secret(tmp_path: Path) -> None:
    env = without_secret(tmp_path)
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
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:dbpass@db/x",
            "REDIS_URL": "redis://:redispass@r",
            "JWT_SECRET_KEY": "jwtsecret" * 4,
            "SMTP_PASSWORD": "smtppass",
            "PMD_DATA_DIR": str(tmp_path),
        }
    )
    text = repr(settings)
    for secret in ("dbpass", "redispass", "jwtsecret", "smtppass"):
        assert secret not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("BDR_DAILY_LIMIT", "0"),
        ("SMTP_STARTTLS", "maybe"),
        ("ARTWORK_BASE_URL", "ftp://x"),
        ("SQIDS_ALPHABET", "aab"),
    ],
)
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


def test_every_setting_refuses_its_bad_value_naming_it(tmp_path: Path) -> None:
    """In-process, the same bad values tests/processes/test_config_errors.py gives the entry points: each
    one is refused by `from_env` (what the server, worker and CLI read) and by `check_env` (what
    `grants` reads), naming its variable."""
    (tmp_path / "a-file").write_text("")
    for name, value in BAD.items():
        bad = {name: str(tmp_path / "a-file") if value == FILE else value}
        env = {**PRODUCTION, "PMD_DATA_DIR": str(tmp_path / "data"), **bad}
        with pytest.raises(ConfigError, match=name):
            Settings.from_env(env)
        with pytest.raises(ConfigError, match=name):
            Settings.check_env({"PMD_DATA_DIR": str(tmp_path / "data"), **bad})


# Malformed URLs carrying a password (hunter22), by the setting they are given to.
BAD_URLS = {
    "DATABASE_URL": [
        "pmd:hunter22@db:5432/pmd",
        "postgresql://pmd:hunter22@db:port/pmd",
        "postgresql://pmd:hunter22@[::1/pmd",
    ],
    "REDIS_URL": ["hunter22@cache:6379"],
    "SENTRY_DSN": ["hunter22@sentry.example.org/1"],
}
GOOD_URLS = {
    "DATABASE_URL": [
        "postgres://u:p@db/x",
        "postgresql://u@h1:5432,h2:5433/x?sslmode=verify-full",
        "postgresql:///x?host=/run/postgresql",
        "postgresql://[::1]:5432/x",
    ],
    "REDIS_URL": ["rediss://:p@r:6380/1", "unix:///run/redis.sock?db=2"],
    "SENTRY_DSN": ["https://key@o1.ingest.sentry.io/42"],
    "HOST": ["0.0.0.0", "::", "localhost"],  # noqa: S104 - values checked, nothing bound
}


def test_url_messages_never_repeat_the_url(tmp_path: Path) -> None:
    """A URL may carry a password: a malformed one is described, not shown."""
    for name, urls in BAD_URLS.items():
        for url in urls:
            with pytest.raises(ConfigError, match=name) as raised:
                Settings.from_env({**PRODUCTION, "PMD_DATA_DIR": str(tmp_path), name: url})
            assert "hunter22" not in str(raised.value)


def test_good_urls_of_every_shape_pass(tmp_path: Path) -> None:
    for name, urls in GOOD_URLS.items():
        for url in urls:
            Settings.from_env({**PRODUCTION, "PMD_DATA_DIR": str(tmp_path), name: url})


def test_a_half_configured_production_names_what_is_missing(tmp_path: Path) -> None:
    """DATABASE_URL set and REDIS_URL forgotten used to start dev mode quietly (an embedded
    Redis, a generated secret). Only an explicit PMD_DEV=1 asks for that (core/startup.py)."""
    env = {"DATABASE_URL": "postgresql://db/x", "PMD_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"^REDIS_URL is required and not set \(.*PMD_DEV=1"):
        Settings.from_env(env)
    assert not (tmp_path / "dev-jwt-secret").exists()
    from pmd_service.core.settings import dev_requested

    assert not dev_requested(env)
    assert dev_requested(env | {"PMD_DEV": "1"}) and dev_requested({"PMD_DEV": "yes"})
    assert not dev_requested({"PMD_DEV": ""}) and not dev_requested({"PMD_DEV": "false"})
    with pytest.raises(ConfigError, match="PMD_DEV"):
        dev_requested({"PMD_DEV": "maybe"})


def test_the_jwt_secret_is_required_only_where_it_is_used(tmp_path: Path) -> None:
    env = without_secret(tmp_path)
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY is required"):
        Settings.from_env(env)
    assert Settings.from_env(env, needs_secret=False).jwt_secret_key == ""
    with pytest.raises(ConfigError, match="at least 32"):  # set, it is checked all the same
        Settings.from_env(env | {"JWT_SECRET_KEY": "short"}, needs_secret=False)
    # Without a secret nothing is signed, and no token checks out.
    from pmd_service.core.problems import ProblemError
    from pmd_service.host.tokens import TokenRules, decode_token, mint_token

    with pytest.raises(ValueError, match="JWT_SECRET_KEY"):
        mint_token("", "Op1")
    with pytest.raises(ProblemError):
        decode_token(mint_token("s" * 32, "Op1"), TokenRules(""))


def test_schema_names_are_whole_identifiers(tmp_path: Path) -> None:
    """msgspec's `pattern` searches: unanchored, "public schema" and "Bad-Name" passed."""
    for value in ("public schema", "Bad-Name", "pmd;drop", "a" * 64):
        with pytest.raises(ConfigError, match="PMD_SCHEMA"):
            Settings.from_env({**PRODUCTION, "PMD_DATA_DIR": str(tmp_path), "PMD_SCHEMA": value})
    assert Settings.from_env({**PRODUCTION, "PMD_DATA_DIR": str(tmp_path), "PMD_SCHEMA": "pmd_2"})


# A good value of each shared setting, given under its current or its former name.
GOOD = {
    "ZIP_PATH": ("/srv/pmd-zips", "zip_path", Path("/srv/pmd-zips")),
    "ZIP_STORE": ("s3://zips/pmd", "zip_store", "s3://zips/pmd"),
    "ZIP_DOWNLOAD_MODE": ("proxy", "zip_download_mode", "proxy"),
    "ZIP_SIGNED_URL_SECONDS": ("600", "zip_signed_url_seconds", 600),
    "ZIP_PROXY_MAX_DOWNLOADS": ("7", "zip_proxy_max_downloads", 7),
    "ZIP_PROXY_MAX_PER_USER": ("3", "zip_proxy_max_per_user", 3),
    "ZIP_PROXY_IDLE_SECONDS": ("12.5", "zip_proxy_idle_seconds", 12.5),
    "ZIP_MIN_FREE_BYTES": ("0", "zip_min_free_bytes", 0),
    "JOB_RETRY_BASE_SECONDS": ("2", "job_retry_base_seconds", 2.0),
    "JOB_STALE_SECONDS": ("90", "job_stale_seconds", 90),
    "JOB_PENDING_GRACE_SECONDS": ("11", "job_pending_grace_seconds", 11),
}


def test_each_shared_setting_is_read_by_its_name_or_its_former_one(tmp_path: Path) -> None:
    base = {**PRODUCTION, "PMD_DATA_DIR": str(tmp_path)}
    assert set(GOOD) == set(FORMER_NAMES.values())
    for former, name in FORMER_NAMES.items():
        value, field, expected = GOOD[name]
        for env in ({name: value}, {former: value}, {name: value, former: value}):
            settings = Settings.from_env(base | env)
            assert getattr(settings, field) == expected, (env, field)
        # Unset (or empty), the default: neither name is read as the other's value.
        default = getattr(Settings.from_env(base | {former: ""}), field)
        assert default != expected
        Settings.check_env(base | {former: value})
    # No former name is reported as a stray variable.
    assert unknown_settings({**base, **dict.fromkeys(FORMER_NAMES, "1")}) == []
    assert unknown_settings({**base, "BDR_PAHT": "/x"}) == ["BDR_PAHT (did you mean BDR_PATH?)"]


def test_a_setting_given_two_different_values_by_its_two_names_stops(tmp_path: Path) -> None:
    base = {**PRODUCTION, "PMD_DATA_DIR": str(tmp_path)}
    for former, name in FORMER_NAMES.items():
        env = base | {name: GOOD[name][0], former: "something else"}
        for read in (Settings.from_env, Settings.check_env):
            with pytest.raises(ConfigError) as caught:
                read(env)
            assert name in str(caught.value) and former in str(caught.value)


def test_a_bad_value_is_named_as_the_environment_spells_it(tmp_path: Path) -> None:
    """Under the former name, the error names the former name (what the operator wrote)."""
    (tmp_path / "a-file").write_text("")
    base = {**PRODUCTION, "PMD_DATA_DIR": str(tmp_path / "data")}
    for former, name in FORMER_NAMES.items():
        value = str(tmp_path / "a-file") if BAD[name] == FILE else BAD[name]
        for read in (Settings.from_env, Settings.check_env):
            with pytest.raises(ConfigError, match=former) as caught:
                read(base | {former: value})
            assert name not in str(caught.value)
            with pytest.raises(ConfigError, match=name):
                read(base | {name: value})
    # A rule across settings, too: ZIP_PATH inside the vault, set by its former name.
    inside = base | {"VAULT_PATH": str(tmp_path / "v"), "BDR_PATH": str(tmp_path / "v" / "z")}
    with pytest.raises(ConfigError, match=r"^BDR_PATH \(.*\) must not be inside VAULT_PATH"):
        Settings.from_env(inside)


def test_an_export_expires_by_its_own_setting_or_the_bdr_one(tmp_path: Path) -> None:
    base = {**PRODUCTION, "PMD_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).export_expiry_days == 7
    assert Settings.from_env(base | {"BDR_EXPIRY_DAYS": "3"}).export_expiry_days == 3
    both = Settings.from_env(base | {"BDR_EXPIRY_DAYS": "3", "EXPORT_EXPIRY_DAYS": "30"})
    assert (both.bdr_expiry_days, both.export_expiry_days) == (3, 30)
    built = Settings(database_url="postgresql://", redis_url="redis://", bdr_expiry_days=2)
    assert built.export_expiry_days == 2
