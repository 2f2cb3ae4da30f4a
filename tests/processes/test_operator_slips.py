"""What a new operator trips on, run as they would run it: a misspelled setting is named, not
ignored; `migrate` needs only the database; an error on a terminal is one plain line."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from pmd_service.core.settings import Settings, unknown_settings
from support.stack import database_env
from tests.helpers import CHECKOUT, SECRET, run_python


def _base_env(settings: Settings) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DATABASE_DIRECT_URL", "DATABASE_POOLER")
        and not k.startswith("PMD_")
    }
    return env | database_env(settings) | {"LOG_FORMAT": "text", "AUTO_MIGRATE": "false"}


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return run_python("-m", "pmd_service", *argv, env=env, timeout=120)


def test_unknown_settings_are_named_with_the_closest_known_name() -> None:
    env = {
        "BDR_DAILY_LIMT": "50",  # ours: named with its correction
        "EXPORT_COOLDOWN": "60",  # ours: named, the closest suggested
        "SSE_WHATEVER_THIS_IS": "1",  # ours, with nothing close: named alone
        "JWT_SECRET_KY": "x",  # a shared first word, one letter off: a typo
        "JWT_ALGORITHM": "HS256",  # the host's own environment: not ours
        "PMD_REQUIRE_BROWSER": "1",  # a tool's: no typo of a setting
        "SENTRY_DEBUG": "1",  # Sentry's SDK
        "PATH": "/bin",
        "BDR_DAILY_LIMIT": "8",  # known
    }
    assert unknown_settings(env) == [
        "BDR_DAILY_LIMT (did you mean BDR_DAILY_LIMIT?)",
        "EXPORT_COOLDOWN (did you mean EXPORT_COOLDOWN_SECONDS?)",
        "JWT_SECRET_KY (did you mean JWT_SECRET_KEY?)",
        "SSE_WHATEVER_THIS_IS",
    ]


def test_migrate_needs_only_the_database_and_names_a_misspelled_setting(
    settings: Settings,
) -> None:
    env = _base_env(settings) | {"BDR_DAILY_LIMT": "50"}
    done = _cli(env, "migrate")
    assert done.returncode == 0, done
    warnings = [line for line in done.stderr.splitlines() if "not a setting" in line]
    assert len(warnings) == 1, done.stderr
    assert "BDR_DAILY_LIMT (did you mean BDR_DAILY_LIMIT?)" in warnings[0]
    # A command that does use Redis still requires it, in one line.
    done = _cli(env | {"JWT_SECRET_KEY": SECRET}, "stats")
    assert done.returncode == 2, done
    assert "REDIS_URL is required and not set" in done.stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_error_on_a_terminal_is_one_plain_line(
    settings: Settings, tmp_path: Path, log_format: str
) -> None:
    """A person at a terminal reads `pmd: configuration error: ...`, not a log line with a
    timestamp and a logger's name; LOG_FORMAT=json keeps its JSON object."""
    env = _base_env(settings) | {"LOG_FORMAT": log_format, "BDR_DAILY_LIMIT": "many"}
    main, child = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pmd_service", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=child,
            stdin=subprocess.DEVNULL,
            cwd=CHECKOUT,
            timeout=120,
        )
        os.close(child)
        child = -1
        err = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the other end is closed and everything was read
                break
            if not chunk:
                break
            err += chunk
    finally:
        if child >= 0:
            os.close(child)
        os.close(main)
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert done.returncode == 2, err
    assert len(lines) == 1, err
    if log_format == "text":
        assert lines[0].startswith("pmd: configuration error: BDR_DAILY_LIMIT"), lines
    else:
        record = json.loads(lines[0])
        assert record["level"] == "error", record
        assert record["msg"].startswith("pmd: configuration error: BDR_DAILY_LIMIT"), record
