"""Configuration from the environment (12-factor), frozen once built."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqids.constants import DEFAULT_ALPHABET

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The host's PMD drops these cached feeds after a hide or delete (its api/app/routers/pmd.py).
DEFAULT_HOST_CACHE_PATTERNS = ("feed:recent:*", "feed:promoted:*", "hashtags:*")
_IDENTIFIER_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


class ConfigError(Exception):
    """A setting is missing or malformed; start-up must stop with this message."""


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _optional_port(env: Mapping[str, str], name: str) -> int | None:
    """Unset: None; 0 picks a free port."""
    return _int(env, name, 0, 0, 65535) if env.get(name) else None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _identifier(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    if not _IDENTIFIER_RE.fullmatch(value):
        raise ConfigError(
            f"{name} must be a lower-case PostgreSQL identifier (letters, digits, _), got {value!r}"
        )
    return value


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default=None, repr=False)  # may embed a password
    redis_url: str | None = field(default=None, repr=False)
    data_dir: Path = PROJECT_ROOT / ".data"
    vault_path: Path = PROJECT_ROOT / ".data" / "vault"
    # The service's own folder: the host's worker writes its ZIPs to {VAULT_PATH}/bdr.
    bdr_path: Path = PROJECT_ROOT / ".data" / "bdr"
    # Everything the service creates lives in this PostgreSQL schema; host tables in the other.
    pmd_schema: str = "pmd"
    host_schema: str = "public"
    artwork_base_url: str | None = field(default=None, repr=False)  # may carry credentials
    jwt_secret_key: str = field(default="", repr=False)
    jwt_leeway_seconds: int = 30  # clock skew tolerated on exp/iat/nbf
    jwt_audience: str | None = None  # when set, a token's `aud` must name it
    jwt_issuer: str | None = None  # when set, a token's `iss` must equal it
    sqids_alphabet: str = DEFAULT_ALPHABET
    base_url: str = "http://127.0.0.1:8080"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    smtp_timeout: float = 10.0  # seconds per SMTP step; no resend once DATA is under way
    mail_from: str = "pmd@localhost"
    bdr_daily_limit: int = 8
    bdr_max_bytes: int = 2 * 2**30  # one ZIP's artworks, declared at request, checked in build
    bdr_daily_bytes: int = 8 * 2**30  # what one requester may ask for in a UTC day
    bdr_min_free_bytes: int = 2**30  # below this free in BDR_PATH, new requests get 503
    bdr_expiry_days: int = 7
    host: str = "127.0.0.1"
    port: int = 8080
    dev_mode: bool = False
    auto_migrate: bool = True
    bdr_retry_base_seconds: float = 5.0
    bdr_stale_seconds: int = 60
    bdr_pending_grace_seconds: int = 30
    artwork_fetch_concurrency: int = 8
    sse_max_per_user: int = 10
    sse_ping_seconds: float = 15.0
    sse_queue_size: int = 256  # events queued for one stream before it counts as too slow
    sse_liveness_seconds: float = 5.0  # idle listener connection checked this often
    # Open streams' accounts re-checked this often (bans, deactivations, lost roles).
    sse_access_check_seconds: float = 30.0
    max_body_bytes: int = 256 * 1024
    log_format: str = "text"
    metrics_port: int = 9108  # the worker's /metrics (the server's is on its own port); 0: off
    server_metrics_port: int | None = None  # the server's /metrics there, not on `port`
    cors_origins: tuple[str, ...] = ()  # origins of a page served elsewhere; empty: CORS off
    host_cache_redis_url: str | None = field(default=None, repr=False)  # None: caches left alone
    host_cache_patterns: tuple[str, ...] = DEFAULT_HOST_CACHE_PATTERNS

    @property
    def search_path(self) -> str:
        """Own schema first (its tables shadow any same-named host table), then the host's."""
        return f'"{self.pmd_schema}", "{self.host_schema}"'

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.redis_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("PMD_DATA_DIR") or PROJECT_ROOT / ".data").resolve()
        vault = Path(env.get("VAULT_PATH") or data_dir / "vault").resolve()
        bdr = Path(env.get("BDR_PATH") or data_dir / "bdr").resolve()
        if bdr.is_relative_to(vault):
            raise ConfigError(
                f"BDR_PATH ({bdr}) must not be inside VAULT_PATH ({vault}): the host site "
                "serves the vault and its own worker writes {VAULT_PATH}/bdr. Give the service "
                "a folder of its own."
            )
        pmd_schema = _identifier(env, "PMD_SCHEMA", "pmd")
        host_schema = _identifier(env, "HOST_SCHEMA", "public")
        if pmd_schema == host_schema:
            raise ConfigError("PMD_SCHEMA must differ from HOST_SCHEMA (the host's tables).")
        database_url = env.get("DATABASE_URL") or None
        redis_url = env.get("REDIS_URL") or None
        dev_mode = _bool(env, "PMD_DEV", database_url is None or redis_url is None)

        secret = env.get("JWT_SECRET_KEY", "")
        if not secret:
            if not dev_mode:
                raise ConfigError(
                    "JWT_SECRET_KEY is required outside dev mode: set it to a random string "
                    "of at least 32 characters (e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'`)."
                )
            secret = dev_secret(data_dir)
        if len(secret) < 32:
            raise ConfigError("JWT_SECRET_KEY must be at least 32 characters long.")

        alphabet = env.get("SQIDS_ALPHABET") or DEFAULT_ALPHABET
        if len(set(alphabet)) != len(alphabet) or len(alphabet) < 3:
            raise ConfigError("SQIDS_ALPHABET must hold at least 3 distinct characters.")

        artwork_base = env.get("ARTWORK_BASE_URL") or None
        if artwork_base is not None and not artwork_base.startswith(("http://", "https://")):
            raise ConfigError("ARTWORK_BASE_URL must start with http:// or https://")

        cors_origins = _list(env, "CORS_ORIGINS", ())
        for origin in cors_origins:
            if not _ORIGIN_RE.fullmatch(origin):
                raise ConfigError(
                    f"CORS_ORIGINS: {origin!r} is not an origin; list them as "
                    "scheme://host[:port], comma-separated (e.g. https://makapix.club)"
                )
        cache_url = env.get("HOST_CACHE_REDIS_URL") or None
        if cache_url is not None and not cache_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("HOST_CACHE_REDIS_URL must start with redis://, rediss:// or unix://")

        log_format = env.get("LOG_FORMAT", "text")
        if log_format not in {"text", "json"}:
            raise ConfigError("LOG_FORMAT must be text or json")

        return cls(
            database_url=database_url,
            redis_url=redis_url,
            data_dir=data_dir,
            vault_path=vault,
            bdr_path=bdr,
            pmd_schema=pmd_schema,
            host_schema=host_schema,
            artwork_base_url=artwork_base.rstrip("/") if artwork_base else None,
            jwt_secret_key=secret,
            jwt_leeway_seconds=_int(env, "JWT_LEEWAY_SECONDS", 30, 0, 600),
            jwt_audience=env.get("JWT_AUDIENCE") or None,
            jwt_issuer=env.get("JWT_ISSUER") or None,
            sqids_alphabet=alphabet,
            base_url=(env.get("BASE_URL") or "http://127.0.0.1:8080").rstrip("/"),
            smtp_host=env.get("SMTP_HOST") or None,
            smtp_port=_int(env, "SMTP_PORT", 25, 1, 65535),
            smtp_username=env.get("SMTP_USERNAME") or None,
            smtp_password=env.get("SMTP_PASSWORD") or None,
            smtp_starttls=_bool(env, "SMTP_STARTTLS", False),
            smtp_timeout=_int(env, "SMTP_TIMEOUT", 10, 1, 600),
            mail_from=env.get("MAIL_FROM") or "pmd@localhost",
            bdr_daily_limit=_int(env, "BDR_DAILY_LIMIT", 8, 1, 10_000),
            bdr_max_bytes=_int(env, "BDR_MAX_BYTES", 2 * 2**30, 1, 2**50),
            bdr_daily_bytes=_int(env, "BDR_DAILY_BYTES", 8 * 2**30, 1, 2**50),
            bdr_min_free_bytes=_int(env, "BDR_MIN_FREE_BYTES", 2**30, 0, 2**50),
            bdr_expiry_days=_int(env, "BDR_EXPIRY_DAYS", 7, 1, 365),
            host=env.get("HOST") or "127.0.0.1",
            port=_int(env, "PORT", 8080, 0, 65535),
            dev_mode=dev_mode,
            auto_migrate=_bool(env, "AUTO_MIGRATE", True),
            bdr_retry_base_seconds=_int(env, "BDR_RETRY_BASE_SECONDS", 5, 0, 600),
            # At least three missed heartbeats (every 5 s) before a run counts as dead.
            bdr_stale_seconds=_int(env, "BDR_STALE_SECONDS", 60, 15, 3600),
            bdr_pending_grace_seconds=_int(env, "BDR_PENDING_GRACE_SECONDS", 30, 0, 3600),
            artwork_fetch_concurrency=_int(env, "ARTWORK_FETCH_CONCURRENCY", 8, 1, 64),
            sse_max_per_user=_int(env, "SSE_MAX_PER_USER", 10, 1, 1000),
            sse_queue_size=_int(env, "SSE_QUEUE_SIZE", 256, 1, 100_000),
            sse_access_check_seconds=_int(env, "SSE_ACCESS_CHECK_SECONDS", 30, 1, 3600),
            log_format=log_format,
            server_metrics_port=_optional_port(env, "SERVER_METRICS_PORT"),
            metrics_port=_int(env, "METRICS_PORT", 9108, 0, 65535),
            cors_origins=cors_origins,
            host_cache_redis_url=cache_url,
            host_cache_patterns=_list(env, "HOST_CACHE_PATTERNS", DEFAULT_HOST_CACHE_PATTERNS),
        )


def dev_secret(data_dir: Path) -> str:
    """A per-checkout secret so dev tokens survive restarts; never used outside dev mode."""
    path = data_dir / "dev-jwt-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a secret: owner only
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        try:
            os.link(tmp, path)  # atomic create-if-absent: concurrent starters agree on one
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_text().strip()
