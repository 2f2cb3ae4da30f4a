"""Configuration from the environment (12-factor): one frozen msgspec struct, a field a variable.

Checks across fields run in `__post_init__`; every process checks every variable that is set
(`check_env`), so a mistake shows at the first command, and requires only what it uses.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import msgspec
from msgspec import Meta, field
from redis.asyncio import ConnectionPool
from sqids import Sqids
from sqids.constants import DEFAULT_ALPHABET

from .objects import S3Access, StoreUrl

# The host's PMD drops these cached feeds after a hide or delete (its api/app/routers/pmd.py).
DEFAULT_HOST_CACHE_PATTERNS = ("feed:recent:*", "feed:promoted:*", "hashtags:*")
_IDENTIFIER_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_PORT_RE = re.compile(r"[0-9]{1,5}")
# libpq's sslmode values, as asyncpg accepts them.
_SSLMODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

Port = Annotated[int, Meta(ge=0, le=65535)]
Seconds = Annotated[float, Meta(gt=0, le=3600)]  # a period: never 0, which would spin
Bytes = Annotated[int, Meta(ge=1, le=2**50)]
Identifier = Annotated[str, Meta(pattern=rf"\A{_IDENTIFIER_RE.pattern}\Z")]
Secret = Annotated[str, Meta(extra={"secret": True})]  # may carry credentials: never shown
# Given the data dir (and the URLs that are set), the URLs of running embedded servers.
Embedded = Callable[[Path, str | None, str | None], tuple[str, str]]


class ConfigError(Exception):
    """A setting is missing or malformed; start-up must stop with this message."""


# Settings each at most the next one: an action larger than a budget, for one, could never
# pass, whatever the client waited.
_AT_MOST = (
    ("db_pool_min", "db_pool_max"),
    ("export_repeat_min_days", "export_repeat_max_days"),
    ("bulk_max_posts", "bulk_changed_posts_per_minute", "bulk_changed_posts_per_hour"),
    ("bulk_max_posts", "bulk_changed_posts_site_per_minute"),
    ("policy_lock_timeout_seconds", "policy_run_timeout_seconds"),
)


class Settings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    database_url: Secret
    redis_url: Secret
    data_dir: Path = field(default=Path(".data"), name="PMD_DATA_DIR")
    # Empty paths mean "under data_dir": {data_dir}/vault and {data_dir}/bdr.
    vault_path: Path = Path()
    # The service's own folder of ZIPs: the host's worker writes its own to {VAULT_PATH}/bdr.
    zip_path: Path = Path()
    # Everything the service creates lives in this PostgreSQL schema; host tables in the other.
    pmd_schema: Identifier = "pmd"
    host_schema: Identifier = "public"
    artwork_base_url: Secret | None = None
    # `s3://bucket/prefix`, or `file:///folder` (as ZIP_PATH / VAULT_PATH); unset: the folders.
    zip_store: str | None = None
    artwork_store: str | None = None
    aws_endpoint_url: str = ""  # any S3-compatible service; empty: AWS itself
    aws_region: str = "us-east-1"
    aws_access_key_id: str | None = None  # unset: the environment's credentials chain
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    # With ZIP_STORE in a bucket: redirect to a signed URL, or stream through the server.
    zip_download_mode: Literal["redirect", "proxy"] = "redirect"
    zip_signed_url_seconds: Annotated[int, Meta(ge=10, le=7 * 86400)] = 300
    # The server's calls to the bucket: HEAD, DELETE, signing, a GET's answer (then 503).
    store_timeout_seconds: Annotated[float, Meta(ge=0.1, le=120)] = 5.0
    # A body read from the bucket (proxy mode) is cut when the store sends nothing this long.
    store_idle_seconds: Annotated[float, Meta(ge=0.1, le=3600)] = 30.0
    # Proxy mode: downloads streaming at once per server process (503 beyond), per user (429).
    zip_proxy_max_downloads: Annotated[int, Meta(ge=1, le=100_000)] = 64
    zip_proxy_max_per_user: Annotated[int, Meta(ge=1, le=1000)] = 4
    # Proxy mode: a client that takes no chunk (128 KiB) for this long is cut off.
    zip_proxy_idle_seconds: Annotated[float, Meta(ge=0.1, le=3600)] = 60.0
    # Empty: unset, for a process that never signs or checks a token (from_env's `needs_secret`).
    jwt_secret_key: Secret = ""
    jwt_leeway_seconds: Annotated[int, Meta(ge=0, le=600)] = 30  # clock skew on exp/iat/nbf
    jwt_audience: str | None = None  # when set, a token's `aud` must name it
    jwt_issuer: str | None = None  # when set, a token's `iss` must equal it
    sqids_alphabet: str = DEFAULT_ALPHABET
    # Empty (BASE_URL unset): http://HOST:PORT, so that links follow the port (`__post_init__`).
    base_url: str = ""
    smtp_host: str | None = None
    smtp_port: Annotated[int, Meta(ge=1, le=65535)] = 25
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    # None: STARTTLS whenever offered; True: required; False: never (the only way in clear).
    smtp_starttls: bool | None = None
    # A password over a connection left unencrypted is refused unless this is set.
    smtp_allow_plain_auth: bool = False
    # Seconds per SMTP step, three for a whole send (mail/notify.py).
    smtp_timeout: Annotated[float, Meta(ge=1, le=600)] = 10.0
    mail_from: str = "pmd@localhost"
    # A folder of `<locale>.json` email copy read before the project's own (mail/language.py).
    email_copy_dir: Path | None = None
    bdr_daily_limit: Annotated[int, Meta(ge=1, le=10_000)] = 8
    # Posts one bulk action by filter may change (a list of ids stays at 128).
    bulk_max_posts: Annotated[int, Meta(ge=1, le=1_000_000)] = 10_000
    # Cleanup policies (features/posts/policies/service.py): on, and how many an owner may have.
    cleanup_policies: bool = True
    policies_per_user: Annotated[int, Meta(ge=1, le=1000)] = 10
    # A policy's run is cut off past these (below the pool's 30 s), recorded failed, backed off.
    policy_run_timeout_seconds: Annotated[float, Meta(ge=0.1, le=25)] = 20.0
    policy_lock_timeout_seconds: Annotated[float, Meta(ge=0.05, le=25)] = 5.0
    # A run that would change more than this many times the approved count, and more than
    # POLICY_HOLD_MIN_POSTS posts, waits for its owner's approval.
    policy_hold_factor: Annotated[float, Meta(ge=1, le=1000)] = 2.0
    policy_hold_min_posts: Annotated[int, Meta(ge=0, le=1_000_000)] = 100
    # The share of a worker's time its policies' runs may take while people use the service; it
    # rests the rest between batches, so that their requests find the database and CPUs free.
    policy_busy_share: Annotated[float, Meta(gt=0, le=1)] = 0.5
    # Bulk actions and undos one person may send a minute (the page's own batches stay far below).
    bulk_actions_per_minute: Annotated[int, Meta(ge=1, le=100_000)] = 120
    # Posts one owner's or moderator's actions may change in any minute and hour (bounds WAL).
    bulk_changed_posts_per_minute: Annotated[int, Meta(ge=1, le=10_000_000)] = 40_000
    bulk_changed_posts_per_hour: Annotated[int, Meta(ge=1, le=100_000_000)] = 120_000
    # Posts every owner's writes together may change in any minute (moderators' not counted).
    bulk_changed_posts_site_per_minute: Annotated[int, Meta(ge=1, le=100_000_000)] = 160_000
    # The policies' runs' share of it (they are held to both): people keep the rest.
    bulk_changed_posts_site_background_per_minute: Annotated[int, Meta(ge=1, le=100_000_000)] = (
        120_000
    )
    bdr_max_bytes: Bytes = 2 * 2**30  # one ZIP's artworks, declared at request, checked in build
    bdr_daily_bytes: Bytes = 8 * 2**30  # what one requester may ask for in a UTC day
    # Below this free in ZIP_PATH, new requests (BDRs and exports) get 503.
    zip_min_free_bytes: Annotated[int, Meta(ge=0, le=2**50)] = 2**30
    bdr_expiry_days: Annotated[int, Meta(ge=1, le=365)] = 7
    # An export's parts; unset: BDR_EXPIRY_DAYS (`__post_init__` fills it in).
    export_expiry_days: Annotated[int, Meta(ge=1, le=365)] | None = None
    # A full export's parts: the size asked for by default, and the bounds a request must keep.
    export_part_bytes: Bytes = 2 * 2**30
    export_min_part_bytes: Bytes = 256 * 2**20
    export_max_part_bytes: Bytes = 50 * 2**30
    # After an export that counts (features/exports/service.py), the next one waits this long.
    export_cooldown_seconds: Annotated[int, Meta(ge=0, le=365 * 86400)] = 7 * 86400
    # An incremental export (`since`) waits this long after any export that counts.
    export_incremental_cooldown_seconds: Annotated[int, Meta(ge=0, le=365 * 86400)] = 86400
    # A recurring export's bounds: `repeat_every_days` within these, `repeat_times` up to this.
    export_repeat_min_days: Annotated[int, Meta(ge=1, le=365)] = 1
    export_repeat_max_days: Annotated[int, Meta(ge=1, le=3650)] = 365
    export_repeat_max_times: Annotated[int, Meta(ge=1, le=120)] = 12
    # Export parts one worker builds at once (BDRs are never held up by them).
    export_concurrency: Annotated[int, Meta(ge=1, le=16)] = 1
    host: str = "127.0.0.1"
    port: Port = 8080
    # Server processes sharing PORT (SO_REUSEPORT), each with its own pool and LISTEN connection.
    server_processes: Annotated[int, Meta(ge=1, le=256)] = 1
    # Development: unset URLs start embedded servers, and a per-checkout JWT secret is made.
    dev_mode: bool = field(default=False, name="PMD_DEV")
    auto_migrate: bool = True
    # Every claimed job's (BDRs' and exports').
    job_retry_base_seconds: Annotated[float, Meta(ge=0, le=600)] = 5.0
    # At least three missed heartbeats (every 5 s) before a run counts as dead.
    job_stale_seconds: Annotated[int, Meta(ge=15, le=3600)] = 60
    job_pending_grace_seconds: Annotated[int, Meta(ge=0, le=3600)] = 30
    artwork_fetch_concurrency: Annotated[int, Meta(ge=1, le=64)] = 8
    sse_max_per_user: Annotated[int, Meta(ge=1, le=1000)] = 10
    sse_ping_seconds: Seconds = 15.0
    # Events queued for one stream before it counts as too slow.
    sse_queue_size: Annotated[int, Meta(ge=1, le=100_000)] = 256
    sse_liveness_seconds: Seconds = 5.0  # idle listener connection checked this often
    # Open streams' accounts re-checked this often (bans, deactivations, lost roles).
    sse_access_check_seconds: Annotated[float, Meta(ge=0.01, le=3600)] = 5.0
    # A new request's first event waits this long after the reply (features/bdr/announcer.py).
    sse_first_event_hold_ms: Annotated[int, Meta(ge=0, le=5000)] = 500
    max_body_bytes: Annotated[int, Meta(ge=1024, le=64 * 2**20)] = 256 * 1024
    # A request's head must arrive within this (web/connections.py).
    header_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 15.0
    # A request body, once a handler reads it, must arrive whole within this (then 408).
    body_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    # Connections one server process holds at once (then 503); unset: from the descriptor limit.
    max_connections: Annotated[int, Meta(ge=1, le=10_000_000)] | None = None
    log_format: Literal["text", "json"] = "text"
    # How long a starting process waits for PostgreSQL and Redis to answer (0: one try).
    startup_wait_seconds: Annotated[float, Meta(ge=0, le=3600)] = 30.0
    # The worker's /metrics; 0: off. Unset: 9108, or any free port when another worker has it.
    metrics_port: Port | None = None
    server_metrics_port: Port | None = None  # the server's /metrics there, not on `port`
    cors_origins: tuple[str, ...] = ()  # origins of a page served elsewhere; empty: CORS off
    host_cache_redis_url: Secret | None = None  # None: the host's caches are left alone
    host_cache_patterns: tuple[str, ...] = DEFAULT_HOST_CACHE_PATTERNS
    # Errors to Sentry (the `sentry` extra), under the host's own variable names.
    sentry_dsn: Secret | None = None
    sentry_environment: str | None = None
    sentry_traces_sample_rate: Annotated[float, Meta(ge=0, le=1)] = 0.0
    sentry_release: str | None = None
    # Each server process's pool, and each worker's, checked at start against the database's.
    db_pool_min: Annotated[int, Meta(ge=0, le=1000)] = 1
    db_pool_max: Annotated[int, Meta(ge=1, le=1000)] = 10
    worker_db_pool_max: Annotated[int, Meta(ge=1, le=1000)] = 8
    # How long a request waits for a pooled connection before it is answered 503.
    db_acquire_timeout: Annotated[float, Meta(gt=0, le=600)] = 5.0
    # What needs a session of its own connects here when DATABASE_URL is a pooler.
    database_direct_url: Secret | None = None
    # `pgbouncer`: DATABASE_URL is a transaction-mode pooler.
    database_pooler: Literal["none", "pgbouncer"] = "none"
    # How long a stopping server lets requests in flight finish (streams end at once).
    shutdown_grace_seconds: Annotated[float, Meta(gt=0, le=60)] = 1.0

    def __post_init__(self) -> None:
        if not self.base_url:
            host = f"[{self.host}]" if ":" in self.host else self.host
            msgspec.structs.force_setattr(self, "base_url", f"http://{host}:{self.port}")
        # `file://` store URLs are the local folders; `s3://` ones are checked here.
        for store, folder in (("zip_store", "zip_path"), ("artwork_store", "vault_path")):
            url = getattr(self, store)
            if url is None:
                continue
            if url.startswith("file://"):
                path = Path(url.removeprefix("file://"))
                if not path.is_absolute():
                    raise ConfigError(f"{store.upper()}: write file:///absolute/folder")
                msgspec.structs.force_setattr(self, folder, path)
                msgspec.structs.force_setattr(self, store, None)
            elif url.startswith("s3://"):
                try:
                    StoreUrl.parse(url, store.upper())
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
            else:
                raise ConfigError(
                    f"{store.upper()} must be s3://bucket/prefix or file:///folder, got {url!r}"
                )
        if self.artwork_store and self.artwork_base_url:
            raise ConfigError(
                "Set ARTWORK_STORE or ARTWORK_BASE_URL, not both: each says where artworks are read."
            )
        endpoint = self.aws_endpoint_url
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ConfigError("AWS_ENDPOINT_URL must start with http:// or https://")
        data_dir = self.data_dir.resolve()
        vault = (self.vault_path if self.vault_path != Path() else data_dir / "vault").resolve()
        # The folder's default keeps the name every release has used: its files stay found.
        zips = (self.zip_path if self.zip_path != Path() else data_dir / "bdr").resolve()
        for name, variable, path in (
            ("data_dir", "PMD_DATA_DIR", data_dir),
            ("vault_path", "VAULT_PATH", vault),
            ("zip_path", "ZIP_PATH", zips),
        ):
            if path.exists() and not path.is_dir():
                raise ConfigError(f"{variable} ({path}) is not a folder.")
            msgspec.structs.force_setattr(self, name, path)
        if self.export_expiry_days is None:
            msgspec.structs.force_setattr(self, "export_expiry_days", self.bdr_expiry_days)
        if self.email_copy_dir is not None:
            copy_dir = self.email_copy_dir.resolve()
            if not copy_dir.is_dir():
                raise ConfigError(
                    f"EMAIL_COPY_DIR ({copy_dir}) is not a folder: name the folder that holds "
                    "the <locale>.json files of email copy."
                )
            msgspec.structs.force_setattr(self, "email_copy_dir", copy_dir)
        if zips.is_relative_to(vault):
            raise ConfigError(
                f"ZIP_PATH ({zips}) must not be inside VAULT_PATH ({vault}): the host site "
                "serves the vault and its own worker writes {VAULT_PATH}/bdr. Give the service "
                "a folder of its own."
            )
        if not (self.export_min_part_bytes <= self.export_part_bytes <= self.export_max_part_bytes):
            raise ConfigError(
                f"EXPORT_PART_BYTES ({self.export_part_bytes}) must lie within "
                f"EXPORT_MIN_PART_BYTES ({self.export_min_part_bytes}) and EXPORT_MAX_PART_BYTES "
                f"({self.export_max_part_bytes})."
            )
        for names in _AT_MOST:
            values = [getattr(self, name) for name in names]
            if values != sorted(values):
                shown = [
                    f"{name.upper()} ({value if isinstance(value, int) else format(value, 'g')})"
                    for name, value in zip(names, values, strict=True)
                ]
                raise ConfigError(f"{shown[0]} must not exceed {', nor that '.join(shown[1:])}.")
        if self.pmd_schema == self.host_schema:
            raise ConfigError("PMD_SCHEMA must differ from HOST_SCHEMA (the host's tables).")
        if self.jwt_secret_key and len(self.jwt_secret_key) < 32:
            raise ConfigError("JWT_SECRET_KEY must be at least 32 characters long.")
        alphabet = self.sqids_alphabet
        if len(set(alphabet)) != len(alphabet) or len(alphabet) < 3:
            raise ConfigError("SQIDS_ALPHABET must hold at least 3 distinct characters.")
        try:
            Sqids(alphabet=alphabet, min_length=0)
        except ValueError as exc:
            raise ConfigError(f"SQIDS_ALPHABET: {exc}") from None
        for check, variable, url in (
            (_check_http_url, "ARTWORK_BASE_URL", self.artwork_base_url),
            (_check_http_url, "BASE_URL", self.base_url),
            (_check_postgres_url, "DATABASE_URL", self.database_url),
            (_check_postgres_url, "DATABASE_DIRECT_URL", self.database_direct_url),
            (_check_redis_url, "REDIS_URL", self.redis_url),
            (_check_redis_url, "HOST_CACHE_REDIS_URL", self.host_cache_redis_url),
            (_check_sentry_dsn, "SENTRY_DSN", self.sentry_dsn),
        ):
            if url is not None:
                check(variable, url)
        if "@" not in parseaddr(self.mail_from)[1]:
            raise ConfigError(
                f"MAIL_FROM must be an email address (pmd@example.org, or "
                f"PMD <pmd@example.org>), got {self.mail_from!r}"
            )
        for origin in self.cors_origins:
            if not _ORIGIN_RE.fullmatch(origin):
                raise ConfigError(
                    f"CORS_ORIGINS: {origin!r} is not an origin; list them as "
                    "scheme://host[:port], comma-separated (e.g. https://makapix.club)"
                )
        for name in ("artwork_base_url", "base_url"):
            if (value := getattr(self, name)) is not None:
                msgspec.structs.force_setattr(self, name, value.rstrip("/"))

    @property
    def zip_bucket(self) -> StoreUrl | None:
        """Where ZIPs go when they go to object storage (None: the ZIP_PATH folder)."""
        return StoreUrl.parse(self.zip_store, "ZIP_STORE") if self.zip_store else None

    @property
    def artwork_bucket(self) -> StoreUrl | None:
        return StoreUrl.parse(self.artwork_store, "ARTWORK_STORE") if self.artwork_store else None

    @property
    def s3_access(self) -> S3Access:
        return S3Access(
            self.aws_endpoint_url.rstrip("/"),
            self.aws_region,
            self.aws_access_key_id,
            self.aws_secret_access_key,
            self.aws_session_token,
        )

    def __repr__(self) -> str:
        # URLs and passwords may carry credentials: never in a log line or a traceback.
        shown = (
            f"{f}={getattr(self, f)!r}" for f in self.__struct_fields__ if f not in SECRET_FIELDS
        )
        return f"Settings({', '.join(shown)})"

    @property
    def direct_url(self) -> str:
        """Where sessions go that a transaction-mode pooler would break."""
        return self.database_direct_url or self.database_url

    @property
    def search_path(self) -> str:
        """Own schema first (its tables shadow any same-named host table), then the host's."""
        return f'"{self.pmd_schema}", "{self.host_schema}"'

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        embedded: Embedded | None = None,
        needs_secret: bool = True,
        needs_redis: bool = True,
        serving: bool = False,
    ) -> Settings:
        """The settings the environment gives, every set variable checked before anything else.

        `embedded` provides an unset DATABASE_URL or REDIS_URL; JWT_SECRET_KEY is required when
        `needs_secret` outside dev mode or with DATABASE_URL set, and REDIS_URL when
        `needs_redis`. `serving` (the server and the worker) refuses dev mode on a server that
        no dev stack marked as its own (`mark_dev_servers`)."""
        env = os.environ if env is None else env
        with _named_as_set(env):
            raw = _raw_values(_current_names(env))
            _check_values(raw)
            if not needs_redis and raw.get("REDIS_URL") is None and not raw.get("PMD_DEV"):
                raw["REDIS_URL"] = _STAND_INS["REDIS_URL"]
            data_dir = Path(raw.get("PMD_DATA_DIR") or ".data").resolve()
            database_url, redis_url = raw.get("DATABASE_URL"), raw.get("REDIS_URL")
            missing = database_url is None or redis_url is None
            if missing and embedded is None:
                # Before anything is written (the dev secret below): this process cannot start.
                unset = [n for n in ("DATABASE_URL", "REDIS_URL") if raw.get(n) is None]
                verb = "is" if len(unset) == 1 else "are"
                hint = (
                    ""
                    if raw.get("PMD_DEV")
                    else " (development only: PMD_DEV=1 starts embedded servers for unset URLs; "
                    "`make run` sets it)"
                )
                raise ConfigError(f"{' and '.join(unset)} {verb} required and not set{hint}.")
            raw.setdefault("PMD_DEV", missing)
            if serving and raw["PMD_DEV"]:
                _refuse_foreign_servers(raw, data_dir)
            if needs_secret and not raw.get("JWT_SECRET_KEY"):
                if not raw["PMD_DEV"] or database_url is not None:
                    # The checkout's secret never signs for a database dev mode did not start.
                    where = "outside dev mode" if not raw["PMD_DEV"] else "when DATABASE_URL is set"
                    raise ConfigError(
                        f"JWT_SECRET_KEY is required {where}: set it to a random string "
                        "of at least 32 characters (e.g. `python -c 'import secrets; "
                        "print(secrets.token_urlsafe(48))'`)."
                    )
                raw["JWT_SECRET_KEY"] = dev_secret(data_dir)
            if missing:
                assert embedded is not None
                raw["DATABASE_URL"], raw["REDIS_URL"] = embedded(data_dir, database_url, redis_url)
            return _convert(raw)

    @classmethod
    def check_env(cls, env: Mapping[str, str] | None = None) -> None:
        """Raise a ConfigError naming the first variable that is set and malformed; require none."""
        env = os.environ if env is None else env
        with _named_as_set(env):
            _check_values(_raw_values(_current_names(env)))


# Former names, still read so that an environment written for an earlier release keeps working.
FORMER_NAMES = {
    "BDR_PATH": "ZIP_PATH",
    "BDR_STORE": "ZIP_STORE",
    "BDR_DOWNLOAD_MODE": "ZIP_DOWNLOAD_MODE",
    "BDR_SIGNED_URL_SECONDS": "ZIP_SIGNED_URL_SECONDS",
    "BDR_PROXY_MAX_DOWNLOADS": "ZIP_PROXY_MAX_DOWNLOADS",
    "BDR_PROXY_MAX_PER_USER": "ZIP_PROXY_MAX_PER_USER",
    "BDR_PROXY_IDLE_SECONDS": "ZIP_PROXY_IDLE_SECONDS",
    "BDR_MIN_FREE_BYTES": "ZIP_MIN_FREE_BYTES",
    "BDR_RETRY_BASE_SECONDS": "JOB_RETRY_BASE_SECONDS",
    "BDR_STALE_SECONDS": "JOB_STALE_SECONDS",
    "BDR_PENDING_GRACE_SECONDS": "JOB_PENDING_GRACE_SECONDS",
}


def _current_names(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with each former name read as its current one (both, differing: an error)."""
    current = dict(env)
    for former, name in FORMER_NAMES.items():
        value = env.get(former, "")
        if value == "":
            continue
        if env.get(name, "") not in ("", value):
            raise ConfigError(
                f"{name} and {former} are both set, to different values: {former} is the "
                f"former name of {name}; keep one of them (or give both the same value)."
            )
        current[name] = value
    return current


@contextmanager
def _named_as_set(env: Mapping[str, str]) -> Iterator[None]:
    """A ConfigError names a setting by its former name when only that one is set."""
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        for former, name in FORMER_NAMES.items():
            if env.get(former) and not env.get(name):
                message = re.sub(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", former, message)
        raise ConfigError(message) from None


# First words other software shares: under them an unknown name is reported only when it is
# a letter or two away from one of ours (under the service's own, every unknown name is).
_SHARED_WORDS = frozenset(
    {
        "AUTO",
        "AWS",
        "BASE",
        "CORS",
        "DATABASE",
        "DB",
        "HOST",
        "JWT",
        "LOG",
        "MAIL",
        "MAX",
        "METRICS",
        "PMD",
        "PORT",
        "REDIS",
        "SENTRY",
        "SERVER",
        "SQIDS",
    }
)


def unknown_settings(env: Mapping[str, str] | None = None) -> list[str]:
    """Variables that look like settings but are none (a misspelled optional setting is
    otherwise ignored), each with the closest known name."""
    env = os.environ if env is None else env
    known = [*_KINDS, *FORMER_NAMES]
    words = {name.split("_", 1)[0] for name in known}
    found = []
    for name in sorted(env):
        word = name.split("_", 1)[0]
        if name in known or word not in words or "_" not in name:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        typo = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if word in _SHARED_WORDS and not typo:
            continue
        found.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return found


def dev_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether PMD_DEV asks for dev mode (only then may a process start embedded servers)."""
    value = (os.environ if env is None else env).get("PMD_DEV", "")
    return value != "" and _as_bool("PMD_DEV", value)


_INFO = msgspec.inspect.type_info(Settings)
assert isinstance(_INFO, msgspec.inspect.StructType)
_KINDS = {f.encode_name: f.type for f in _INFO.fields}  # variable name -> its type
SECRET_FIELDS = frozenset(
    f.name
    for f in _INFO.fields
    for kind in (f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,))
    if isinstance(kind, msgspec.inspect.Metadata) and kind.extra == {"secret": True}
)


def _as_bool(name: str, value: str) -> bool:
    text = value.lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _raw_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The variables that name a setting, as the struct expects them: empty means unset,
    lists are comma-separated, booleans also read yes/no/on/off."""
    raw: dict[str, Any] = {}
    for name, kind in _KINDS.items():
        value = env.get(name)
        if value is None or value == "":
            continue
        inner = kind.type if isinstance(kind, msgspec.inspect.Metadata) else kind
        if isinstance(inner, msgspec.inspect.UnionType) and inner.includes_none:
            # An optional setting reads as its one other type (SMTP_STARTTLS=yes).
            others = [t for t in inner.types if not isinstance(t, msgspec.inspect.NoneType)]
            inner = others[0] if len(others) == 1 else inner
        if isinstance(inner, msgspec.inspect.VarTupleType):
            raw[name] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(inner, msgspec.inspect.BoolType):
            raw[name] = _as_bool(name, value)
        else:
            raw[name] = value
    return raw


# What `_check_values` gives the struct for required variables that are unset: it checks the
# others (their absence is the caller's to report).
_STAND_INS = {"DATABASE_URL": "postgresql://", "REDIS_URL": "redis://", "JWT_SECRET_KEY": "x" * 32}


def _check_values(raw: dict[str, Any]) -> None:
    """Every variable that is set, checked as the struct checks it, and HOST resolved."""
    checked = _convert(_STAND_INS | raw)
    try:
        socket.getaddrinfo(checked.host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"HOST: {checked.host!r} is neither an address nor a name this machine resolves "
            f"({why}); HOST and PORT say where the server listens (e.g. HOST=127.0.0.1, or "
            "HOST=0.0.0.0 for every interface)."
        ) from None


def _check_postgres_url(variable: str, url: str) -> None:
    """What asyncpg would refuse only when connecting; messages never repeat the URL."""
    shape = "postgresql://user:password@host:5432/database"
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            given = f"not {parts.scheme}://" if "://" in url else "it has no scheme"
            raise ConfigError(f"{variable} must start with postgresql:// ({shape}); {given}")
        for host in parts.netloc.rpartition("@")[2].split(","):
            tail = host.rpartition("]")[2] if host.startswith("[") else host
            port = tail.rpartition(":")[2] if ":" in tail else ""
            if port and not (_PORT_RE.fullmatch(port) and 0 < int(port) < 65536):
                raise ConfigError(f"{variable}: the port {port!r} is not a port number ({shape})")
        sslmode = parse_qs(parts.query).get("sslmode", [])
        if any(mode not in _SSLMODES for mode in sslmode):
            raise ConfigError(f"{variable}: sslmode must be one of {', '.join(sorted(_SSLMODES))}")
    except ValueError as exc:  # urlsplit: "Invalid IPv6 URL"
        raise ConfigError(f"{variable}: {exc} ({shape})") from None


def _check_http_url(variable: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{variable} must start with http:// or https://, got {url!r}")


def _check_sentry_dsn(variable: str, dsn: str) -> None:
    """The shape sentry-sdk demands, whether or not it is installed; the key is not repeated."""
    shape = "https://<key>@<host>/<project id>, from the Sentry project's settings"
    try:
        parts = urlsplit(dsn)
        fits = parts.scheme in ("http", "https") and bool(parts.hostname and parts.username)
    except ValueError:  # a bad IPv6 bracket or port
        fits = False
    if not fits:
        raise ConfigError(f"{variable} is not a Sentry DSN ({shape})")
    if not parts.path.strip("/"):
        raise ConfigError(f"{variable} names no project ({shape})")


def _check_redis_url(variable: str, url: str) -> None:
    """redis-py's own parsing (no connection is made)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        given = f"not {url.partition('://')[0]}://" if "://" in url else "it has no scheme"
        raise ConfigError(
            f"{variable} must start with redis://, rediss:// or unix:// "
            f"(redis://host:6379/0); {given}"
        )
    try:
        ConnectionPool.from_url(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{variable}: {exc}") from None


def _convert(raw: dict[str, Any]) -> Settings:
    try:
        return msgspec.convert(raw, Settings, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        name = where.rstrip("`") or "configuration"
        got = raw.get(name)
        raise ConfigError(
            f"{name}: {message}" + (f" ({got!r})" if got is not None else "")
        ) from None


def _decode(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value)
    raise NotImplementedError(kind)


# The servers a process may use in dev mode when their URLs are set, and where a dev stack
# lists those it made or owns (digests: a URL may carry a password).
SERVER_URLS = ("DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL")
DEV_SERVERS_FILE = "dev-servers"

FOREIGN_SERVERS = (
    "PMD_DEV=1 with {names} of {servers} no dev stack started: dev mode signs tokens with the "
    "checkout's own secret and shows every user's mail, so it runs only on embedded servers; "
    "on {these} unset PMD_DEV (and set JWT_SECRET_KEY), or for development unset {names} "
    "(`make run`)"
)


def _url_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _marked_servers(data_dir: Path) -> set[str]:
    try:
        return set((data_dir / DEV_SERVERS_FILE).read_text().split())
    except FileNotFoundError:
        return set()


def mark_dev_servers(data_dir: Path, *urls: str) -> None:
    """Record `urls` as servers of the dev stack under `data_dir` (embedded, or a test's own)."""
    known = _marked_servers(data_dir)
    new = [digest for digest in dict.fromkeys(map(_url_digest, urls)) if digest not in known]
    if not new:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / DEV_SERVERS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(f"{digest}\n" for digest in new))  # one append: never interleaved


def _refuse_foreign_servers(raw: Mapping[str, Any], data_dir: Path) -> None:
    """A ConfigError naming each server variable set to a URL no dev stack marked."""
    marked = _marked_servers(data_dir)
    named = [n for n in SERVER_URLS if raw.get(n) and _url_digest(raw[n]) not in marked]
    if named:
        one = len(named) == 1
        names = named[0] if one else f"{', '.join(named[:-1])} and {named[-1]}"
        servers, these = ("a server", "it") if one else ("servers", "them")
        raise ConfigError(FOREIGN_SERVERS.format(names=names, servers=servers, these=these))


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
