"""The operations CLI, run as an operator would (its `main`), against the test database."""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from pathlib import Path

import jwt
import pytest
from msgspec.structs import replace

from pmd_service import __version__
from pmd_service.__main__ import main
from pmd_service.core.settings import Settings
from tests.cli_env import admin_value, operator_shell
from tests.helpers import SECRET, run_python


@pytest.fixture
def env(
    settings: Settings, admin_database_url: str, monkeypatch: pytest.MonkeyPatch, redis_clean: None
) -> Settings:
    return operator_shell(
        settings,
        admin_database_url,
        monkeypatch,
        JWT_SECRET_KEY=SECRET,
        JOB_PENDING_GRACE_SECONDS="0",
    )


def test_help_and_bad_input(capsys: pytest.CaptureFixture[str], env: Settings) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "requeue" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["explode"])
    assert exit_info.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["requeue", "not-a-uuid"])  # refused by the argument parser, before any connection
    assert exit_info.value.code == 2
    assert "not a BDR id" in capsys.readouterr().err
    assert main(["requeue", str(uuid.uuid4())]) == 2
    assert main(["token", "nobody"]) == 2


def test_migrate_token_stats_sweep_cleanup(
    capsys: pytest.CaptureFixture[str], env: Settings, admin_database_url: str
) -> None:
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    user_id = admin_value(
        admin_database_url,
        "INSERT INTO users (handle, email, public_sqid, roles) VALUES ('op', 'op@x', 'Op1', '[\"moderator\"]') RETURNING id",
    )
    assert main(["token", "Op1", "--ttl", "60"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "Op1" and claims["roles"] == ["moderator"]
    assert claims["exp"] - claims["iat"] == 60

    admin_value(
        admin_database_url,
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count, created_at)"
        " VALUES ($1, '{1}', 1, now())",
        user_id,
    )
    assert main(["stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["bdrs_today_by_status"] == {"pending": 1}
    assert stats["oldest_pending"] is not None
    assert main(["sweep"]) == 0
    assert json.loads(capsys.readouterr().out)["requeued"] == 1
    assert main(["stats"]) == 0
    assert json.loads(capsys.readouterr().out)["queue_depth"] == 1
    assert main(["cleanup"]) == 0
    assert "purged" in json.loads(capsys.readouterr().out)


def test_requeue_a_failed_bdr(
    capsys: pytest.CaptureFixture[str], env: Settings, admin_database_url: str
) -> None:
    user_id = admin_value(
        admin_database_url, "INSERT INTO users (handle, email) VALUES ('u', 'u@x') RETURNING id"
    )
    bdr_id = admin_value(
        admin_database_url,
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count, status,"
        " error_message, attempts) VALUES ($1, '{1}', 1, 'failed', 'boom', 4) RETURNING id",
        user_id,
    )
    assert main(["requeue", str(bdr_id)]) == 0
    assert "was failed" in capsys.readouterr().out
    assert (
        admin_value(
            admin_database_url,
            "SELECT status || ':' || attempts FROM batch_download_requests WHERE id = $1",
            bdr_id,
        )
        == "pending:0"
    )
    admin_value(
        admin_database_url,
        "UPDATE batch_download_requests SET status = 'ready' WHERE id = $1",
        bdr_id,
    )
    assert main(["requeue", str(bdr_id)]) == 2
    assert "is ready" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["requeue", "not-a-uuid"], ["stats"], ["migrate"]])
def test_no_database_and_no_embedded_extra_is_one_line(tmp_path: Path, argv: list[str]) -> None:
    """Without DATABASE_URL and without the embedded extra: one line, exit 2, no traceback."""
    # A `pgserver` package that fails to import shadows the installed one: as if the extra were
    # not installed.
    (tmp_path / "pgserver").mkdir()
    (tmp_path / "pgserver" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "PYTHONPATH": str(tmp_path),
        "PMD_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "PMD_DEV": "1",
    }
    done = run_python("-m", "pmd_service", *argv, env=env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 or argv[0] == "requeue", done.stderr
    if argv[0] == "requeue":
        assert "not a BDR id" in done.stderr and "pgserver" not in done.stderr
    else:
        assert "DATABASE_URL is unset" in lines[0]


def test_every_command_has_a_help_page_and_the_cli_a_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pmd-service {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    commands = [
        "serve",
        "worker",
        "migrate",
        "dev",
        "token",
        "requeue",
        "sweep",
        "cleanup",
        "stats",
        "import-host-bdrs",
        "check-host",
    ]
    for command in commands:
        assert f"\n    {command}" in listing, command
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        page = capsys.readouterr().out
        assert page.startswith(f"usage: python -m pmd_service {command}")
        # A description: the paragraph between the usage and the options.
        description = page.split("\n\n")[1]
        assert not description.startswith(("options:", "positional")), (command, page)
        assert description[0].isupper() and len(description) > 20, (command, page)


def test_a_bad_ttl_shows_the_token_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for ttl in ("-5", "0", "soon"):
        with pytest.raises(SystemExit) as exit_info:
            main(["token", "Op1", "--ttl", ttl])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(
            "usage: python -m pmd_service token [-h] [--ttl TTL] [--wait SECONDS] user_sqid"
        )
        assert f"argument --ttl: must be a positive whole number of seconds, got '{ttl}'" in err


def test_cleanup_and_import_show_their_progress_on_stderr(
    capsys: pytest.CaptureFixture[str], env: Settings
) -> None:
    assert main(["cleanup"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert "purged" in summary
    steps = [line for line in err.splitlines() if "INFO pmd_service.upkeep.cleanup" in line]
    # Its steps; the summary, the result, only on stdout (the worker's log has it as a line).
    assert len(steps) == 3, err
    assert "downloads past their expiry expired" in steps[0]
    assert "tidying the folder" in steps[2]
    assert str(summary) not in err
    assert main(["import-host-bdrs"]) == 0
    err = capsys.readouterr().err
    assert "import-host-bdrs: " in err and "pmd_service.features.bdr.cutover" in err


def test_no_runtime_dir_warning_from_the_embedded_servers(tmp_path: Path) -> None:
    """pgserver asks platformdirs for XDG_RUNTIME_DIR as it is imported; unset (root in a
    container), platformdirs warned on every command that started the embedded PostgreSQL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "XDG_RUNTIME_DIR", "LOG_FORMAT")
    }
    env |= {"PMD_DATA_DIR": str(tmp_path / "data"), "PYTHONWARNINGS": "always", "PMD_DEV": "1"}
    done = run_python("-m", "pmd_service", "stats", env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "queue_depth" in done.stdout
    assert "Warning" not in done.stderr and "XDG_RUNTIME_DIR" not in done.stderr, done.stderr


def test_make_runs_banner_opens_the_page_signed_in_first_and_names_the_reference() -> None:
    from pmd_service.dev.stack import banner

    token = jwt.encode({"sub": "Abc", "exp": 2**31}, SECRET, algorithm="HS256")
    text = banner("http://127.0.0.1:8080", "Abc", token, 8)
    curl = next(line for line in text.splitlines() if line.startswith("Try: curl"))
    assert f"-H 'Authorization: Bearer {token}' http://127.0.0.1:8080/api/pmd/posts" in curl
    assert "…" not in text
    assert "PORT=9000 make run" in text
    # The first URL a person sees opens the dashboard signed in (the token in the fragment).
    urls = re.findall(r"https?://\S+", text)
    assert urls[0] == f"http://127.0.0.1:8080/u/Abc/posts#token={token}"
    assert "API reference: http://127.0.0.1:8080/docs " in text
    limit = next(line for line in text.splitlines() if "BDR_DAILY_LIMIT" in line)
    assert "at most 8 per user per UTC day" in limit


def test_the_reference_is_named_at_base_url_or_at_host_and_port(settings: Settings) -> None:
    """The server's start-up line and `make run`'s banner name the same base; the server's
    names the reference under /api/pmd/, the one path a site's proxy sends to the service."""
    from pmd_service.web.reference import docs_url

    public = replace(settings, base_url="https://pmd.example.org", port=9000)
    cases = [  # BASE_URL unset (empty) follows HOST and PORT
        (replace(settings, base_url="", host="127.0.0.1", port=9000), "http://127.0.0.1:9000"),
        (replace(settings, base_url="", host="::1", port=9000), "http://[::1]:9000"),
        (public, "https://pmd.example.org"),
    ]
    for case, base in cases:
        assert docs_url(case) == f"{base}/api/pmd/docs"
        assert case.base_url == base


def test_make_run_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    """`make run` checks the port before starting anything: one line naming it, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env |= {
            "PMD_DATA_DIR": str(tmp_path / "data"),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "PMD_DEV": "1",
        }
        done = run_python("-m", "pmd_service", "dev", env=env, timeout=240)
    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() if "pmd dev" in line]
    assert lines == [
        f"pmd dev: cannot listen on 127.0.0.1:{port} (Address already in use): another process "
        "(an earlier `make run`?) holds it. Stop it, or choose another port: PORT=9000 make run"
    ], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("dev", [None, "false", "0"])
def test_dev_runs_only_when_dev_mode_is_asked_for(
    tmp_path: Path, settings: Settings, dev: str | None
) -> None:
    """Without PMD_DEV=1, `dev` starts nothing (no embedded server, no child, no connection to
    the database it was given): one line saying how to turn dev mode on, status 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMD_")}
    data = tmp_path / "data"
    env |= {
        "PMD_DATA_DIR": str(data),
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "JWT_SECRET_KEY": SECRET,
        "LOG_FORMAT": "text",
    }
    if dev is not None:
        env["PMD_DEV"] = dev
    done = run_python("-m", "pmd_service", "dev", env=env, timeout=120)
    assert done.returncode == 2, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "PMD_DEV=1" in lines[0], done.stderr
    assert done.stdout == ""
    assert not data.exists()  # no embedded server, no dev secret
