from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from pmd_service.host.vault import (
    VaultFiles,
    VaultPathError,
    artwork_path,
    contained,
    host_shard,
    relative_artwork_path,
)

KEY = uuid.UUID("3f2b8c1e-0d4a-4c7e-9a51-6b2f0e8d7c93")


def test_maps_parts_to_a_path(tmp_path: Path) -> None:
    assert artwork_path(tmp_path, "ab", KEY, "png") == tmp_path.resolve() / "ab" / f"{KEY}.png"
    assert relative_artwork_path(None, str(KEY), "gif") == f"{KEY}.gif"


@pytest.mark.parametrize("shard", ["24/07", "8c/4f/2a", "3f/00", "ab"])
def test_the_hosts_shards_of_any_depth(tmp_path: Path, shard: str) -> None:
    # The host's current two-level shards, its older three-level ones, and one level.
    assert artwork_path(tmp_path, shard, KEY, "webp") == tmp_path.resolve() / shard / f"{KEY}.webp"
    assert relative_artwork_path(shard, KEY, "webp") == f"{shard}/{KEY}.webp"


def test_host_shard_matches_the_hosts_layouts() -> None:
    # api/app/vault.py of the host: v2 "24/07" (low 6 bits of two sha256 bytes), v1 "8c/4f/2a".
    digest = hashlib.sha256(str(KEY).encode()).hexdigest()
    assert host_shard(KEY, legacy=True) == f"{digest[0:2]}/{digest[2:4]}/{digest[4:6]}"
    current = host_shard(KEY)
    assert len(current) == 5
    assert all(int(level, 16) < 64 for level in current.split("/"))


@pytest.mark.parametrize(
    ("shard", "key", "fmt"),
    [
        ("..", KEY, "png"),
        ("../..", KEY, "png"),
        ("/etc", KEY, "png"),
        ("a//b", KEY, "png"),
        ("a/../b", KEY, "png"),
        ("a/./b", KEY, "png"),
        ("ab/", KEY, "png"),
        ("/ab", KEY, "png"),
        ("a\\b", KEY, "png"),
        ("123/5678/", KEY, "png"),
        ("12/45/78/0", KEY, "png"),  # over the column's 8 characters
        ("ab\x00", KEY, "png"),
        ("ab", "../../etc/passwd", "png"),
        ("ab", KEY, "png/../../x"),
        ("ab", KEY, "exe"),
        ("", KEY, "png"),
    ],
)
def test_refuses_anything_outside_the_vault(
    tmp_path: Path, shard: str, key: object, fmt: str
) -> None:
    with pytest.raises(VaultPathError):
        artwork_path(tmp_path, shard, key, fmt)  # type: ignore[arg-type]


def test_refuses_symlinks_out_of_the_vault(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    outside = tmp_path / "outside"
    vault.mkdir()
    outside.mkdir()
    os.symlink(outside, vault / "ab")
    with pytest.raises(VaultPathError):
        artwork_path(vault, "ab", KEY, "png")


def test_one_pass_over_many_files_refuses_every_link_out(tmp_path: Path) -> None:
    vault, outside = tmp_path / "vault", tmp_path / "outside"
    (vault / "ab").mkdir(parents=True)
    (vault / "cd").mkdir()
    outside.mkdir()
    (outside / "stolen.png").write_bytes(b"x")
    os.symlink(outside, vault / "out")
    linked = uuid.uuid4()
    os.symlink(outside / "stolen.png", vault / "ab" / f"{linked}.png")
    os.symlink(vault / "cd", vault / "in")
    files = VaultFiles(vault.resolve())
    real = vault.resolve()
    # A file beside one already found, and a link inside the vault, are followed to the vault.
    assert files.artwork("ab", KEY, "png") == real / "ab" / f"{KEY}.png"
    assert files.artwork("in", KEY, "gif") == real / "cd" / f"{KEY}.gif"
    # A file linking out, in a folder already resolved, and a folder linking out: refused.
    with pytest.raises(VaultPathError):
        files.artwork("ab", linked, "png")
    with pytest.raises(VaultPathError):
        files.artwork("out", KEY, "png")
    with pytest.raises(VaultPathError):
        files.artwork("out", KEY, "png")  # the folder's answer kept: refused again


def test_contained_refuses_escapes(tmp_path: Path) -> None:
    assert contained(tmp_path, "bdr/u/x.zip") == tmp_path.resolve() / "bdr/u/x.zip"
    for bad in ("../x.zip", "/etc/passwd", "a/\x00.zip", "a/../../x", "."):
        with pytest.raises(VaultPathError):
            contained(tmp_path, bad)
