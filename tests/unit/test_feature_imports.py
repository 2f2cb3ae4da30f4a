"""A feature's module imports its own feature only: the registry that lists every feature is a
module of its own, so the `features` package imports nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pmd_service.features
from tests.helpers import run_python

FOLDER = Path(pmd_service.features.__file__).parent
FEATURES = sorted(p.name for p in FOLDER.iterdir() if (p / "feature.py").is_file())
# Prints the parts of `features` (its folders and the registry) that importing argv[1] loaded.
LOADED = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
prefix = "pmd_service.features."
print(json.dumps(sorted({m[len(prefix):].split(".")[0] for m in sys.modules if m.startswith(prefix)})))
"""


def loaded_by(module: str) -> list[str]:
    """The parts of `features` a fresh interpreter holds after importing `module`."""
    done = run_python("-c", LOADED, module, check=True)
    parts: list[str] = json.loads(done.stdout)
    return parts


def test_there_are_features_to_keep_apart() -> None:
    assert len(FEATURES) >= 2, FEATURES


def test_the_registry_imports_every_feature() -> None:
    # The check below sees a feature that is imported: the registry's import shows them all.
    assert loaded_by("pmd_service.features.registry") == sorted([*FEATURES, "registry"])


@pytest.mark.parametrize(
    ("module", "own"),
    [("pmd_service.features.posts.filters", "posts")]
    + [(f"pmd_service.features.{name}.feature", name) for name in FEATURES],
)
def test_a_feature_module_imports_no_other_feature(module: str, own: str) -> None:
    assert loaded_by(module) == [own]


def test_the_features_package_imports_nothing() -> None:
    assert loaded_by("pmd_service.features") == []
