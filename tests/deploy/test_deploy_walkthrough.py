"""docs/operations.md, "Running beside Makapix Club", followed as far as a machine without a
Docker engine can: the overlay copied beside the host's files, the environment the doc tells
the operator to add, the doc's own compose command (`$C config --quiet`), the commands it names,
and step 5 (the role's SQL, then the migrations and check-host as that role)."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import uuid
from pathlib import Path

import asyncpg

from support.stack import with_database
from tests.helpers import SECRET, captured, run_python
from tests.host_stack import (
    CHECKOUT,
    COMPOSE_MISSING,
    HOST_DOTENV,
    HOST_ENV_PROD,
    OVERLAY,
    compose_binary,
    merged,
    stack_dir,
    write_env,
)
from tests.prerequisites import needs

DOC = CHECKOUT / "docs" / "operations.md"
TITLE = "## Running beside Makapix Club"


def section() -> str:
    text = DOC.read_text()
    start = text.index(TITLE + "\n")
    end = text.find("\n## ", start + len(TITLE))
    return text[start : end if end != -1 else len(text)]


def code_lines() -> list[str]:
    """Every line of the section's fenced shell blocks, continuation lines joined."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines.extend(line.strip() for line in joined.splitlines() if line.strip())
    return lines


def doc_compose_args() -> list[str]:
    """The arguments of the doc's `C="docker compose …"` after `docker compose`."""
    (line,) = [line for line in code_lines() if line.startswith('C="docker compose ')]
    (assignment,) = shlex.split(line)
    words = shlex.split(assignment.removeprefix("C="))
    assert words[:2] == ["docker", "compose"], words
    return words[2:]


def doc_env() -> dict[str, str]:
    """The PMD_ variables the doc adds to .env.prod, placeholders given a value."""
    env = {}
    for line in code_lines():
        match = re.fullmatch(r"(PMD_[A-Z_]+)=(.*)", line)
        if match:
            name, value = match.groups()
            env[name] = uuid.uuid4().hex if value.startswith("<") else value
    return env


needs_compose = needs("deploy", None if compose_binary() else COMPOSE_MISSING)


@needs_compose
def test_steps_2_and_3_the_copy_the_environment_and_the_docs_compose_command(
    tmp_path: Path,
) -> None:
    # Step 2: the file the doc copies is the one this checkout ships.
    (cp,) = [line for line in code_lines() if line.startswith("cp ")]
    source = cp.split()[1]
    assert source.startswith("/opt/pmd-service/")
    assert CHECKOUT / source.removeprefix("/opt/pmd-service/") == OVERLAY
    stack = stack_dir(tmp_path)
    assert cp.split()[2].rstrip("/").endswith("deploy/stack")
    # Step 3: the host's own interpolation file plus what the doc adds.
    added = doc_env()
    assert "PMD_DB_PASSWORD" in added
    write_env(stack / ".env.prod", HOST_ENV_PROD | added)
    write_env(stack / ".env", HOST_DOTENV)
    # The doc's own command, `$C config --quiet`: complete, and says nothing.
    binary = compose_binary()
    assert binary is not None
    args = doc_compose_args()
    env = {"PATH": os.environ["PATH"], "HOME": str(stack)}
    result = captured([str(binary), *args, "config", "--quiet"], 60, cwd=stack, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    # The doc's command is the one the other deploy tests merge with.
    assert args == [
        "-f",
        "docker-compose.yml",
        "-f",
        "docker-compose.prod.yml",
        "-f",
        "compose.pmd.yml",
        "--env-file",
        ".env.prod",
        "-p",
        "makapix-prod",
    ]
    config = merged(stack)
    server = config["services"]["pmd-server"]["environment"]
    assert server["SMTP_HOST"] == added["PMD_SMTP_HOST"]
    assert server["SMTP_USERNAME"] == added["PMD_SMTP_USERNAME"]
    assert server["DATABASE_URL"].startswith(f"postgresql://pmd:{added['PMD_DB_PASSWORD']}@db:")


def test_every_variable_the_overlay_reads_is_in_the_walkthrough() -> None:
    overlay = OVERLAY.read_text()
    ours = set(re.findall(r"\$\{(PMD_[A-Z_]+)", overlay))
    text = section()
    for name in ours:
        assert f"`{name}`" in text or f"{name}=" in text, name
    required = set(re.findall(r"\$\{([A-Z_]+):\?", overlay))
    # Required ones are the host's own (already in its .env.prod) or added by step 3.
    assert required <= set(HOST_ENV_PROD) | set(doc_env()), required


def cli_commands() -> set[str]:
    result = run_python("-m", "pmd_service", "--help")
    assert result.returncode == 0, result.stderr
    # argparse lists each subcommand on a line of its own, indented by four spaces.
    listed = set(re.findall(r"^ {4}([a-z][a-z-]*)(?: |$)", result.stdout, re.M))
    assert {"migrate", "check-host"} <= listed, result.stdout
    return listed


@needs_compose
def test_the_commands_and_services_the_walkthrough_names_exist(tmp_path: Path) -> None:
    named = {
        m for line in code_lines() for m in re.findall(r"python -m pmd_service ([a-z-]+)", line)
    }
    assert {"check-host", "import-host-bdrs"} <= named
    available = cli_commands()
    pending = {"grants"} - available  # see test_step_5 below
    assert named - pending <= available, named - available
    services = set(merged(stack_dir(tmp_path))["services"])
    for line in code_lines():
        if line.startswith("$C "):
            words = shlex.split(line.split("#")[0])
            verb = words[1]
            if verb in {"run", "up", "ps", "exec", "build", "stop", "rm", "logs"}:
                names = [w for w in words[2:] if not w.startswith("-")]
                if verb in {"run", "exec"}:
                    names = names[:1]
                assert set(names) <= services, line


async def test_step_5_the_roles_sql_then_migrations_and_check_host_as_that_role(
    host_url: str, redis_url: str
) -> None:
    """The walk-through's grants step: its SQL run by the admin on a database holding the
    host's tables, then `migrate` and `check-host` as the new role, as pmd-migrate runs them."""
    role = f"pmd_doc_{uuid.uuid4().hex[:8]}"
    grants = ("-m", "pmd_service", "grants", "--role", role, "--cutover")
    made = await asyncio.to_thread(run_python, *grants, check=True)
    sql = made.stdout
    admin = await asyncpg.connect(host_url)
    try:
        await admin.execute(sql)
        await admin.execute(f"ALTER ROLE {role} PASSWORD 'doc-step-5'")
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(host_url)
        # Embedded PostgreSQL's URLs name no host (the socket folder is in the query).
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        netloc = f"{role}:doc-step-5@{host}"
        as_role = urlunsplit(parts._replace(netloc=netloc))
        env = {
            **os.environ,
            "DATABASE_URL": as_role,
            "REDIS_URL": redis_url,
            "JWT_SECRET_KEY": SECRET,
            "PMD_DEV": "false",
            "LOG_FORMAT": "json",
        }
        for args in (["migrate"], ["check-host"]):
            done = await asyncio.to_thread(
                run_python, "-m", "pmd_service", *args, env=env, timeout=120
            )
            # check-host exits 1 while an index is missing (the host's usual state).
            assert done.returncode in ({0} if args == ["migrate"] else {0, 1}), done.stderr
        owner = await admin.fetchval(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pmd'"
        )
        assert owner == role
    finally:
        await admin.execute("DROP SCHEMA IF EXISTS pmd CASCADE")
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.close()
        other = await asyncpg.connect(with_database(host_url, "postgres"))
        try:
            await other.execute(f"DROP ROLE IF EXISTS {role}")
        except asyncpg.PostgresError:
            pass  # still owns something elsewhere: left for the admin, named pmd_doc_*
        finally:
            await other.close()
