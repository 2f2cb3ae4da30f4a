"""The tooling tests' shared fixture: a figures folder of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import runner


@pytest.fixture
def figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty figures folder, with the runner's scratch beside it."""
    monkeypatch.setattr(runner, "SCRATCH", tmp_path / "scratch")
    folder = tmp_path / "figures"
    folder.mkdir()
    return folder
