"""Every configuration mistake is one line naming the variable, from every entry point.

docs/configuration.md promises it; `REDIS_URL=localhost:6379` (no scheme) used to end `stats`,
`serve` and `worker` in 35 lines of redis-py's traceback, `HOST=localhostt` the server in 42
lines of `socket.gaierror`, and a production environment that forgot REDIS_URL started quietly
with a private embedded Redis and a generated JWT secret.

Each case runs one entry point in a subprocess, as an operator would, and passes when it exits
with status 2, prints nothing on stdout, and prints exactly one line on stderr, which names the
variable (and no traceback). The environment is otherwise complete and valid, with PostgreSQL
and Redis URLs where nothing listens and STARTUP_WAIT_SECONDS=0: a mistake that went unnoticed
would end in a line about an unreachable server (or a traceback), not in the expected line.

Coverage (the runs go in parallel; about 70 processes):

- every entry point: `python server.py`, `python -m pmd_service serve`, `… worker`, `arq
  worker.WorkerSettings`, `… dev`, and every other CLI command (`migrate`, `grants`, `token`,
  `requeue`, `sweep`, `cleanup`, `stats`, through the `pmd-service` console script,
  `import-host-bdrs`, `check-host`);
- every entry point gets the two mistakes of the issue (REDIS_URL without a scheme, HOST that
  does not resolve), and every entry point that needs the URLs gets the half-configured
  production (DATABASE_URL set, REDIS_URL forgotten, PMD_DEV unset), or for the commands that
  need only the database (`migrate`, `token`, `check-host`) DATABASE_URL forgotten. `grants` connects nowhere
  and requires nothing; `dev` is dev mode, where unset URLs start embedded servers;
- every entry point that signs or checks tokens (the server, the worker, `token`) gets
  JWT_SECRET_KEY unset;
- every kind of bad value (a URL without its scheme, a number out of its bounds or not a
  number, a boolean or a choice that is neither, a file where a folder belongs, a pair that
  does not go together: each field's type, and for a number whether the value is one) is dealt
  out over the entry points in turn, a setting of that kind each time, so each entry point
  meets several kinds. All entry points read the settings through one function
  (`Settings.from_env`, or `check_env` for `grants`), which tests/unit/test_settings.py runs
  in-process with a bad value for every setting (tests/bad_settings.py, checked below to name
  them all). The settings in FREE_TEXT accept any text: nothing to refuse.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from pmd_service.core.settings import Settings
from support.stack import free_port
from tests.bad_settings import BAD, FILE
from tests.helpers import CHECKOUT, SECRET
from tests.procs import ARQ_WORKER, CLI

SCRIPT = str(Path(sys.executable).with_name("pmd-service"))
ENTRY_POINTS = {
    "server.py": [sys.executable, "server.py"],
    "serve": [*CLI, "serve"],
    "worker": [*CLI, "worker"],
    "arq worker.WorkerSettings": ARQ_WORKER,
    "dev": [*CLI, "dev"],
    "migrate": [*CLI, "migrate"],
    "grants": [*CLI, "grants", "--role", "pmd"],
    "token": [*CLI, "token", "Op1"],
    "requeue": [*CLI, "requeue", str(uuid.uuid4())],
    "sweep": [*CLI, "sweep"],
    "cleanup": [*CLI, "cleanup"],
    "stats": [SCRIPT, "stats"],
    "import-host-bdrs": [*CLI, "import-host-bdrs"],
    "check-host": [*CLI, "check-host"],
}
NEEDS_SECRET = ("server.py", "serve", "worker", "arq worker.WorkerSettings", "token")
NEEDS_URLS = [name for name in ENTRY_POINTS if name not in ("grants", "dev")]
DATABASE_ONLY = ("migrate", "token", "check-host")

FREE_TEXT = {
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "SMTP_HOST",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "HOST_CACHE_PATTERNS",
    "SENTRY_ENVIRONMENT",
    "SENTRY_RELEASE",
}
UNSET = None
DEALT = 2  # kinds of bad value each entry point meets beyond the ones above
# The bad values dealt out by kind: all but the two every entry point gets.
DEALT_OUT = sorted(set(BAD) - {"REDIS_URL", "HOST"})


def _fields() -> dict[str, msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.encode_name: f for f in info.fields}


FIELDS = _fields()  # Settings' fields by variable name


@dataclass(frozen=True)
class Case:
    entry: str
    variable: str
    value: str | None  # None: the variable is left unset

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.variable}={'(unset)' if self.value is None else self.value}"


def _cases() -> list[Case]:
    cases = [Case(entry, "REDIS_URL", "localhost:6379") for entry in ENTRY_POINTS]
    cases += [Case(entry, "HOST", "localhostt") for entry in ENTRY_POINTS]
    cases += [Case(entry, "REDIS_URL", UNSET) for entry in NEEDS_URLS if entry not in DATABASE_ONLY]
    # A command that never touches Redis needs no REDIS_URL; it still needs the database.
    cases += [Case(entry, "DATABASE_URL", UNSET) for entry in DATABASE_ONLY]
    cases += [Case(entry, "JWT_SECRET_KEY", UNSET) for entry in NEEDS_SECRET]
    # Each entry point meets DEALT kinds; each kind's settings take turns.
    kinds: dict[str, list[str]] = {}
    for variable in DEALT_OUT:
        kinds.setdefault(_kind(variable), []).append(variable)
    turns, entries = sorted(kinds), list(ENTRY_POINTS)
    for i in range(max(DEALT * len(entries), len(turns))):
        kind = kinds[turns[i % len(turns)]]
        variable = kind[(i // len(turns)) % len(kind)]
        cases.append(Case(entries[i % len(entries)], variable, BAD[variable]))
    return cases


def _kind(variable: str) -> str:
    """The kind of mistake BAD's value for `variable` is: its field's type, and for a number
    whether the value is one."""
    shape = FIELDS[variable].type
    if isinstance(shape, msgspec.inspect.UnionType):
        (shape,) = (t for t in shape.types if not isinstance(t, msgspec.inspect.NoneType))
    kind = type(shape).__name__
    if isinstance(shape, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        try:
            float(BAD[variable])
        except ValueError:
            return f"{kind}, not a number"
        return f"{kind}, out of bounds"
    return kind


CASES = _cases()
# The processes run in the first test's set-up: on a busy machine that takes minutes.
pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class Outcome:
    status: int
    out: str
    err: str


def _env(data: Path, case: Case) -> dict[str, str]:
    # Nothing of the developer's own environment that names a setting.
    env = {k: v for k, v in os.environ.items() if k not in FIELDS and not k.startswith("PMD_")}
    env |= {
        "DATABASE_URL": f"postgresql://pmd@127.0.0.1:{CLOSED_PORT}/pmd",
        "REDIS_URL": f"redis://127.0.0.1:{CLOSED_PORT}/0",
        "JWT_SECRET_KEY": SECRET,
        "PMD_DATA_DIR": str(data),
        "STARTUP_WAIT_SECONDS": "0",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "METRICS_PORT": "0",
        "AUTO_MIGRATE": "false",
        "LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",
    }
    if case.value is None:
        env.pop(case.variable)
    else:
        env[case.variable] = str(data / "a-file") if case.value == FILE else case.value
    return env


CLOSED_PORT = free_port()  # nothing listens there


async def _run(case: Case, data: Path, slots: asyncio.Semaphore) -> Outcome:
    async with slots:
        proc = await asyncio.create_subprocess_exec(
            *ENTRY_POINTS[case.entry],
            cwd=CHECKOUT,
            env=_env(data, case),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return Outcome(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[Case, Outcome]:
    """Every case, run at once (a few processes at a time)."""
    data = tmp_path_factory.mktemp("config-errors")
    (data / "a-file").write_text("not a folder\n")

    async def run_all() -> dict[Case, Outcome]:
        slots = asyncio.Semaphore(max(2, (os.cpu_count() or 2) + 1))
        results = await asyncio.gather(*(_run(case, data, slots) for case in CASES))
        return dict(zip(CASES, results, strict=True))

    return asyncio.run(run_all())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_one_line_naming_the_variable(case: Case, outcomes: dict[Case, Outcome]) -> None:
    got = outcomes[case]
    shown = f"status {got.status}\n--- stdout:\n{got.out}\n--- stderr:\n{got.err}"
    lines = [line for line in got.err.splitlines() if line.strip()]
    assert got.status == 2, shown
    assert "Traceback" not in got.err, shown
    assert got.out == "", shown
    assert len(lines) == 1, shown
    assert case.variable in lines[0], shown
    assert "configuration error" in lines[0], shown


def test_every_setting_and_every_entry_point_is_covered() -> None:
    assert set(BAD) | FREE_TEXT == set(FIELDS), "give each new setting a bad value, or say why not"
    assert not set(BAD) & FREE_TEXT
    kinds = {_kind(variable) for variable in DEALT_OUT}
    assert len(kinds) >= 8
    assert {_kind(c.variable) for c in CASES if c.variable in BAD} >= kinds
    assert {case.entry for case in CASES} == set(ENTRY_POINTS)
    # Each entry point meets mistakes of several kinds, not only the two of the issue.
    for entry in ENTRY_POINTS:
        assert len({c.variable for c in CASES if c.entry == entry}) >= 4, entry
