"""The package stands on its own: what the Docker image installs, and what importing the
worker does (nothing but read the environment)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pmd_service import __version__
from pmd_service.core.migrate import discover, discover_repeatable
from tests.helpers import CHECKOUT, SECRET, captured, run_python

LOCKS = CHECKOUT / "requirements"
# One xdist worker: the installs are module fixtures (asked for by name, which the suite's
# grouping by fixture cannot see), and two builds of the checkout at once share its build/.
# Builds and installs take minutes on a crowded machine: the suite's 300 s would cut them off.
pytestmark = [pytest.mark.xdist_group("tests/unit/test_packaging.py"), pytest.mark.timeout(900)]
# The Pythons the locks are for: the oldest 3.11 a distribution ships (Debian 12's), a current
# 3.11, and newer ones; markers such as `python_full_version < "3.11.3"` differ between them.
PYTHONS = ("3.11.2", "3.11.14", "3.12.12", "3.13.9")


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def _lock(name: str) -> dict[str, list[tuple[Requirement, list[str]]]]:
    """The lock's pins by package name: (requirement with its marker, its hashes) each."""
    text = (LOCKS / name).read_text().replace("\\\n", " ")
    pins: dict[str, list[tuple[Requirement, list[str]]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        requirement = Requirement(spec)
        pins.setdefault(_name(spec), []).append((requirement, options))
    return pins


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    return project


def _wanted(extra: str | None) -> set[str]:
    project = _project()
    wanted = {_name(d) for d in project["dependencies"]}
    for requirement in project["optional-dependencies"].get(extra, []):
        req = Requirement(requirement)
        if _name(requirement) == "pmd-service":  # the project's own extras, as in dev
            for inner in req.extras:
                wanted |= {_name(d) for d in project["optional-dependencies"][inner]}
        else:
            wanted.add(_name(requirement))
    return wanted


@pytest.mark.parametrize(
    ("lock", "extra"),
    [("runtime.txt", None), ("run.txt", "embedded"), ("dev.txt", "dev")],
)
def test_each_lock_pins_its_dependencies_exactly_with_hashes(lock: str, extra: str | None) -> None:
    """Every dependency pyproject.toml names (and its extra's) is pinned to one version, each
    pin with hashes: pip installs these files with --require-hashes. After editing the
    dependencies, `make lock` regenerates them."""
    pins = _lock(lock)
    assert _wanted(extra) <= pins.keys(), f"run `make lock`: {_wanted(extra) - pins.keys()}"
    for entries in pins.values():
        for requirement, hashes in entries:
            assert [s.operator for s in requirement.specifier] == ["=="], requirement
            assert hashes and all(h.startswith("sha256:") for h in hashes), requirement


def test_the_image_lock_holds_only_the_runtime() -> None:
    """The image's lock is [project] dependencies and the `sentry` extra (errors to the host's
    Sentry) and what they need, no other extra's packages."""
    runtime = _lock("runtime.txt").keys()
    assert _wanted("sentry") <= runtime
    extras_only = (_wanted("dev") | _wanted("embedded")) - _wanted(None) - _wanted("sentry")
    assert not runtime & extras_only


def test_the_runtime_lock_is_complete_for_every_supported_python() -> None:
    """Each runtime package's own requirements (read from the installed distributions, which
    the dev lock pins at the same versions), evaluated for each Python the image or a host may
    run, are pinned too: async-timeout, which redis needs below Python 3.11.3 only, included.
    Nothing unpinned can slip in: pip's --require-hashes would refuse it at install."""
    pins = _lock("runtime.txt")
    dev = _lock("dev.txt")
    for name, entries in pins.items():
        shared = [str(r.specifier) for r, _ in dev.get(name, [])]
        assert all(str(r.specifier) in shared for r, _ in entries), f"{name}: {shared}"
    missing: set[str] = set()
    for python in PYTHONS:
        env = {
            "python_full_version": python,
            "python_version": python.rsplit(".", 1)[0],
            "sys_platform": "linux",
            "platform_system": "Linux",
            "extra": "",
        }
        wanted = {
            n
            for n, entries in pins.items()
            if any(r.marker is None or r.marker.evaluate(env) for r, _ in entries)
        }
        for name in wanted:
            try:
                requires = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                # Not for this interpreter (its marker says so); the others' needs still count.
                assert not all(r.marker is None or r.marker.evaluate() for r, _ in pins[name])
                continue
            for text in requires:
                dep = Requirement(text)
                if (dep.marker is None or dep.marker.evaluate(env)) and _name(text) not in wanted:
                    missing.add(f"{_name(text)} (for {name} on Python {python})")
    assert not missing
    assert "async-timeout" in pins


def test_migrations_are_read_from_the_package() -> None:
    assert [m.version for m in discover()] == sorted({m.version for m in discover()})
    assert discover()[0].version == 1


def test_importing_the_worker_starts_nothing(tmp_path: Path) -> None:
    """Without DATABASE_URL/REDIS_URL the worker module stops with one line (exit 2) naming
    exactly what is missing; it never starts the embedded servers and writes nothing (not even
    the dev secret), whatever the data dir."""
    base = {"PATH": "/usr/bin:/bin", "PMD_DATA_DIR": str(tmp_path / "data"), "PMD_DEV": "true"}
    for given, missing in [
        ({}, "DATABASE_URL and REDIS_URL are required"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "DATABASE_URL is required"),
        ({"DATABASE_URL": "postgresql://127.0.0.1:1/x"}, "REDIS_URL is required"),
    ]:
        done = run_python(
            "-c",
            "from pmd_service.worker_settings import WorkerSettings",
            env=base | given,
            cwd=tmp_path,
        )
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].endswith(f"pmd-worker: configuration error: {missing} and not set.")
        assert list(tmp_path.iterdir()) == []


# Every production entry point, and the app built outside dev mode: none of them imports dev/.
NO_DEV = """
import sys
import pmd_service.__main__, pmd_service.web.serve, pmd_service.worker
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
env = {"DATABASE_URL": "postgresql://127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1/0",
       "JWT_SECRET_KEY": "k" * 32}
create_app(Settings.from_env(env))
print(sorted(m for m in sys.modules if m.startswith("pmd_service.dev")))
"""


def test_production_never_imports_the_development_package(tmp_path: Path) -> None:
    done = run_python("-c", NO_DEV, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, check=True)
    assert done.stdout.strip() == "[]"


# The builds below run without PYTHONDONTWRITEBYTECODE: with it, setuptools says "byte-compiling
# is disabled" of every build, a warning about the caller's environment, not the project.
BUILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


# A Python warning as a build backend prints it, indented by pip's verbose output:
# "  /…/setuptools/command/build_py.py:215: _Warning: Package 'x' is absent from …".
PY_WARNING = re.compile(r"^\s+\S+\.py:\d+: (\w+): ")


def backend_warnings(output: str) -> list[str]:
    """The build backend's warnings in pip's verbose output: every Python warning setuptools
    emits (but `InformationOnly`, its note on how an editable install is made: information by
    its class) and distutils' `warning: …` lines. pip's own notices (not indented) are not the
    project's."""
    found = []
    for line in output.splitlines():
        match = PY_WARNING.match(line)
        if (match and match[1] != "InformationOnly") or (
            line.startswith("  ") and line.strip().lower().startswith("warning:")
        ):
            found.append(line)
    return found


def _pip(python: Path, *args: str) -> None:
    """`pip install --quiet ARGS` with `python`'s pip."""
    captured([str(python), "-m", "pip", "install", "--quiet", *args], check=True)


def _purelib(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(captured([str(python), "-c", code], check=True).stdout.strip())


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the runtime lock (and pip), nothing of the service: its site-packages."""
    where = tmp_path_factory.mktemp("runtime") / "venv"
    run_python("-m", "venv", str(where), timeout=600, check=True)
    python = where / "bin" / "python"
    _pip(python, "--require-hashes", "-r", str(LOCKS / "runtime.txt"))
    return _purelib(python)


def _venv_with_the_runtime(where: Path, runtime: Path) -> Path:
    """A new venv that sees `runtime`'s packages, nothing of the service yet: its python. The
    runtime is installed once, for both installs of the service, and seen through a .pth."""
    run_python("-m", "venv", "--without-pip", str(where), timeout=600, check=True)
    python = where / "bin" / "python"
    (_purelib(python) / "runtime.pth").write_text(f"{runtime}\n")
    return python


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory: pytest.TempPathFactory, runtime: Path) -> Path:
    """The checkout's wheel, as the image installs it, in a venv of its own: its python."""
    tmp = tmp_path_factory.mktemp("plain")
    dist = tmp / "dist"
    # setuptools builds on top of build/lib, where a module deleted since an earlier build stays.
    shutil.rmtree(CHECKOUT / "build", ignore_errors=True)
    wheel = ("wheel", "--verbose", "--no-deps", "--wheel-dir", str(dist), str(CHECKOUT))
    built = run_python("-m", "pip", *wheel, env=BUILD_ENV, timeout=600, check=True)
    output = built.stdout + built.stderr
    assert backend_warnings(output) == [], output
    python = _venv_with_the_runtime(tmp / "venv", runtime)
    _pip(python, "--no-deps", str(next(dist.glob("pmd_service-*.whl"))))
    return python


@pytest.fixture(scope="module")
def editable_install(tmp_path_factory: pytest.TempPathFactory, runtime: Path) -> Path:
    """`pip install -e` of the checkout, as `make` does, in a venv of its own: its python."""
    python = _venv_with_the_runtime(tmp_path_factory.mktemp("editable") / "venv", runtime)
    editable = [str(python), "-m", "pip", "install", "--verbose", "--no-deps", "-e", str(CHECKOUT)]
    done = captured(editable, env=BUILD_ENV, check=True)
    output = done.stdout + done.stderr
    assert backend_warnings(output) == [], output
    return python


def _run(
    python: Path, cwd: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return captured([str(python), *args], 120, env={"PATH": "/usr/bin:/bin", **env}, cwd=cwd)


@pytest.mark.parametrize(
    ("install", "cwd"),
    [
        ("plain_install", Path("/")),
        ("plain_install", CHECKOUT),
        ("editable_install", CHECKOUT),
        ("editable_install", Path("/")),
    ],
    ids=[
        "wheel, elsewhere",
        "wheel, from the checkout's root",
        "editable, from the root",
        "editable, elsewhere",
    ],
)
async def test_migrate_applies_every_migration_from_wherever_it_is_run(
    install: str,
    cwd: Path,
    request: pytest.FixtureRequest,
    host_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """`python -m pmd_service migrate` in a clean venv holding the runtime lock and the service,
    installed from its wheel (the migrations, top-level `migrations/` in the checkout, come from
    the installed `pmd_service.migrations`) or editable, run from `/` or from the checkout's
    root. There the checkout's own `pmd_service/` comes first on sys.path and shadows a plain
    install: its link `pmd_service/migrations` must serve the same migrations."""
    python: Path = request.getfixturevalue(install)
    env = {
        "DATABASE_URL": host_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": SECRET,
        "PMD_DATA_DIR": str(tmp_path / "data"),
    }
    where = _run(python, cwd, env, "-c", "import pmd_service; print(pmd_service.__file__)")
    imported = Path(where.stdout.strip())
    shadowed = cwd == CHECKOUT or install == "editable_install"
    expected = CHECKOUT if shadowed else python.parent.parent
    assert imported.is_relative_to(expected), where.stdout + where.stderr
    done = _run(python, cwd, env, "-m", "pmd_service", "migrate")
    assert done.returncode == 0, done.stderr
    # Every migration the checkout has, then its repeatable definitions (the wheel ships
    # them too); the host's tables were there already.
    assert done.stdout.strip() == "applied: " + ", ".join(
        [f"{m.version:04d}_{m.name}" for m in discover()]
        + [f"repeatable {r.name}" for r in discover_repeatable()]
    )
    conn = await asyncpg.connect(host_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('pmd.batch_download_requests')::text")
    finally:
        await conn.close()
    again = _run(python, cwd, env, "-m", "pmd_service", "migrate")
    assert again.stdout.strip() == "schema is up to date", again.stdout + again.stderr


# Each file of the imported pmd_service/ and its SHA-256, following the link to the migrations.
LISTING = """
import hashlib, os, pmd_service as p
root = os.path.dirname(p.__file__)
for top, dirs, files in os.walk(root, followlinks=True):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for name in files:
        path = os.path.join(top, name)
        print(os.path.relpath(path, root), hashlib.sha256(open(path, "rb").read()).hexdigest())
"""


def test_the_wheel_ships_every_file_of_the_package(plain_install: Path) -> None:
    """The installed wheel holds every file of the checkout's pmd_service/, byte for byte (the
    migrations, the page's static files and the vendored viewer of /docs included): a folder
    the build left out would fail only in the image."""

    def listed(cwd: Path) -> dict[str, str]:
        done = _run(plain_install, cwd, {}, "-c", LISTING)
        assert done.returncode == 0, done.stderr
        return dict(line.split(" ") for line in done.stdout.splitlines())

    # From the checkout's root its own pmd_service/ comes first on sys.path.
    installed, checkout = listed(Path("/")), listed(CHECKOUT)
    del checkout["migrations/RELEASED"]  # `make lint`'s record of the last release, not served
    assert {
        "web/static/vendor/swagger-ui-bundle.js",
        "migrations/0001_batch_download_requests.sql",
    } <= checkout.keys()
    assert installed == checkout


def test_the_release_is_one_version_for_the_package_the_cli_and_the_image(
    plain_install: Path,
) -> None:
    """`__version__` is the one definition: the wheel's metadata carries it (pyproject.toml reads
    it), `--version` prints it, and the Dockerfile's label defaults to it (the image's build
    refuses another, which needs podman: this holds a release that forgot the Dockerfile)."""
    versions = "import importlib.metadata as m, pmd_service as p; print(m.version(p.__name__), p.__version__)"
    done = _run(plain_install, Path("/"), {}, "-c", versions)
    assert done.returncode == 0, done.stderr
    metadata_version, package_version = done.stdout.split()
    assert metadata_version == package_version == __version__
    cli = _run(plain_install, Path("/"), {}, "-m", "pmd_service", "--version")
    assert cli.stdout.split() == ["pmd-service", __version__], cli.stdout + cli.stderr
    label = re.search(r"^ARG VERSION=(\S+)$", (CHECKOUT / "Dockerfile").read_text(), re.M)
    assert label is not None and label[1] == __version__
