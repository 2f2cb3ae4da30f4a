"""Where an artwork file lives: `{VAULT_PATH}/{storage_shard}/{storage_key}.{ext}`, built from
validated parts only and checked again after symlinks are resolved.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

ARTWORK_FORMATS = frozenset({"png", "gif", "webp", "bmp"})
# The host's `storage_shard`: plain folder names, "24/07" today and "8c/4f/2a" on older rows.
SHARD_MAX_LENGTH = 8
_SHARD_RE = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")


class VaultPathError(ValueError):
    """The parts would name a file outside the vault (or are not valid parts at all)."""


def _folder_and_key(storage_shard: str | None, storage_key: uuid.UUID | str) -> tuple[str, str]:
    """`("{shard}/", key)` after validating both (`("", key)` without a shard)."""
    try:
        key = uuid.UUID(str(storage_key)) if not isinstance(storage_key, uuid.UUID) else storage_key
    except ValueError:
        raise VaultPathError("storage_key is not a UUID") from None
    if storage_shard is None:
        return "", str(key)
    # Plain names only: never absolute, never `.` or `..`, no empty level, no backslash.
    if len(storage_shard) > SHARD_MAX_LENGTH or not _SHARD_RE.fullmatch(storage_shard):
        raise VaultPathError(f"storage_shard {storage_shard[:16]!r} is not a relative folder path")
    return f"{storage_shard}/", str(key)


def relative_artwork_path(storage_shard: str | None, storage_key: uuid.UUID | str, fmt: str) -> str:
    """`{shard}/{key}.{ext}` after validating every part; also the URL path under ARTWORK_BASE_URL."""
    if fmt not in ARTWORK_FORMATS:
        raise VaultPathError(f"unknown artwork format {fmt!r}")
    folder, key = _folder_and_key(storage_shard, storage_key)
    return f"{folder}{key}.{fmt}"


# The host's `.mkpx` layers tree, keyed by the stored shard verbatim (its api/app/vault.py).
LAYERS_FOLDER = "mkpx"


def relative_layers_path(storage_shard: str | None, storage_key: uuid.UUID | str) -> str:
    """`mkpx/{shard}/{key}.mkpx`: a post's `.mkpx` layers file, relative to the vault."""
    folder, key = _folder_and_key(storage_shard, storage_key)
    return f"{LAYERS_FOLDER}/{folder}{key}.mkpx"


def relative_upscaled_path(storage_shard: str | None, storage_key: uuid.UUID | str) -> str:
    """`{shard}/{key}_upscaled.webp`: the host's upscaled copy of an artwork."""
    folder, key = _folder_and_key(storage_shard, storage_key)
    return f"{folder}{key}_upscaled.webp"


def artwork_path(
    vault: Path, storage_shard: str | None, storage_key: uuid.UUID | str, fmt: str
) -> Path:
    return VaultFiles(vault.resolve()).artwork(storage_shard, storage_key, fmt)


def vault_file_in(root: Path, relative: str) -> Path:
    """`root/relative` for a relative path built by this module, `root` already resolved."""
    return VaultFiles(root).file(relative)


class VaultFiles:
    """Files under a vault `root` already resolved, for one pass over many (a build, a plan):
    each folder's symlinks are resolved once, as realpath makes a system call a level a path."""

    def __init__(self, root: Path) -> None:
        self._base = str(root)
        self._inside = self._base.rstrip(os.sep) + os.sep
        self._folders: dict[str, str] = {}

    def file(self, relative: str) -> Path:
        """`root/relative` for a relative path built by this module (plain names, no `..`)."""
        folder, _, name = relative.rpartition("/")
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(os.path.join(self._base, folder))
        candidate = os.path.join(real, name)
        if os.path.islink(candidate):
            candidate = os.path.realpath(candidate)
        # Symlinks followed: a link inside the vault that points out of it is refused.
        if not candidate.startswith(self._inside):
            raise VaultPathError("artwork path resolves outside the vault")
        return Path(candidate)

    def artwork(self, storage_shard: str | None, storage_key: uuid.UUID | str, fmt: str) -> Path:
        return self.file(relative_artwork_path(storage_shard, storage_key, fmt))


def contained(root: Path, relative: str) -> Path:
    """`root/relative` for a path this service wrote itself (its ZIPs), refusing escapes."""
    if "\x00" in relative or relative.startswith("/"):
        raise VaultPathError("path must be relative and free of NUL bytes")
    base = root.resolve()
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base) or candidate == base:
        raise VaultPathError("path resolves outside its root")
    return candidate


def host_shard(storage_key: uuid.UUID, *, legacy: bool = False) -> str:
    """The shard the host gives a new artwork ("24/07"), or an older row's, for demo data."""
    digest = hashlib.sha256(str(storage_key).encode()).digest()
    if legacy:
        return f"{digest[0]:02x}/{digest[1]:02x}/{digest[2]:02x}"
    return f"{digest[0] & 0x3F:02x}/{digest[1] & 0x3F:02x}"
