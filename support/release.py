"""A previous release installed apart, for the cluster's upgrade and the benchmarks' A/B runs."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.migration_check import read_record
from support.stack import CHECKOUT

# A release's commit, for a clone that lacks its tag.
RELEASES = {
    "v0.1.0": "c41ab5d839745c24f1981126faf326d4ae051422",
    "v0.2.0": "b71c6231744a10c18ec050a34c74b5b7435baeeb",
}
PREVIOUS = "previous"  # the newest release tag before HEAD, else migrations/RELEASED's


class StartFailed(RuntimeError):
    """A host, a server or a release that could not be made ready."""


@dataclass(frozen=True)
class Release:
    """The code a server or worker host runs: this checkout's, or a previous release's."""

    name: str
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=lambda: {"PYTHONPATH": str(CHECKOUT)})

    def argv(self, *command: str) -> list[str]:
        return [self.python, "-m", "pmd_service", *command]


CURRENT = Release("this checkout")


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def _run(*argv: str, **kw: Any) -> bytes:
    done: subprocess.CompletedProcess[bytes] = subprocess.run(argv, capture_output=True, **kw)
    if done.returncode:
        raise StartFailed(f"{' '.join(argv[:4])}: {done.stderr.decode()[-800:]}")
    return done.stdout


def install(rev: str, folder: Path) -> Release:
    """Revision `rev` installed into a venv of its own, beside this environment's libraries."""
    if rev == PREVIOUS:
        tag = _git("describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", "HEAD~1")
        rev = tag or f"v{read_record(CHECKOUT).version}"
    commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}") or RELEASES.get(rev)
    if commit is None:
        raise StartFailed(f"--upgrade-from {rev}: no such revision in {CHECKOUT}")
    (src := folder / "src").mkdir(parents=True)
    tree = _run("git", "-C", str(CHECKOUT), "archive", "--format=tar", commit)
    _run("tar", "-x", "-C", str(src), input=tree)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder), str(src))
    venv.create(folder / "venv", with_pip=False)
    site = next((folder / "venv").glob("lib/python*/site-packages"))
    with zipfile.ZipFile(next(folder.glob("*.whl"))) as wheel:
        wheel.extractall(site)
    (site / "libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(folder / "venv" / "bin" / "python")
    release = Release(f"{rev} ({commit[:9]})", python, {"PYTHONSAFEPATH": "1"})
    probe = "import pmd_service as p, pmd_service.migrations as m; print(p.__file__, m.__file__)"
    env = {"PATH": os.environ["PATH"]} | release.env  # this checkout the working folder
    found = _run(release.python, "-c", probe, cwd=CHECKOUT, env=env).decode()
    if len(paths := found.split()) != 2 or not all(p.startswith(str(site)) for p in paths):
        raise StartFailed(f"the release {release.name} imports {found!r}, not its own tree")
    return release
