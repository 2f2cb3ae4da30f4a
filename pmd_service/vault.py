"""Where an artwork file lives: `{VAULT_PATH}/{storage_shard}/{storage_key}.{ext}`, never outside.

The seed's `art_url.lstrip("/vault/")` stripped characters, not a prefix; paths here are built
from validated parts only and checked again after symlinks are resolved.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

ARTWORK_FORMATS = frozenset({"png", "gif", "webp", "bmp"})
_SHARD_RE = re.compile(r"^[A-Za-z0-9_-]{1,8}$")


class VaultPathError(ValueError):
    """The parts would name a file outside the vault (or are not valid parts at all)."""


def relative_artwork_path(storage_shard: str | None, storage_key: uuid.UUID | str, fmt: str) -> str:
    """`{shard}/{key}.{ext}` after validating every part; also the URL path under ARTWORK_BASE_URL."""
    if fmt not in ARTWORK_FORMATS:
        raise VaultPathError(f"unknown artwork format {fmt!r}")
    try:
        key = uuid.UUID(str(storage_key)) if not isinstance(storage_key, uuid.UUID) else storage_key
    except ValueError:
        raise VaultPathError("storage_key is not a UUID") from None
    name = f"{key}.{fmt}"
    if storage_shard is None:
        return name
    if not _SHARD_RE.match(storage_shard):
        raise VaultPathError(f"storage_shard {storage_shard[:16]!r} is not a plain folder name")
    return f"{storage_shard}/{name}"


def artwork_path(
    vault: Path, storage_shard: str | None, storage_key: uuid.UUID | str, fmt: str
) -> Path:
    root = vault.resolve()
    candidate = (root / relative_artwork_path(storage_shard, storage_key, fmt)).resolve()
    # resolve() follows symlinks: a link inside the vault that points out of it is refused.
    if not candidate.is_relative_to(root):
        raise VaultPathError("artwork path resolves outside the vault")
    return candidate


def contained(root: Path, relative: str) -> Path:
    """`root/relative` for a path this service wrote itself (BDR ZIPs), refusing escapes."""
    if "\x00" in relative or relative.startswith("/"):
        raise VaultPathError("path must be relative and free of NUL bytes")
    base = root.resolve()
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base) or candidate == base:
        raise VaultPathError("path resolves outside its root")
    return candidate


BDR_PREFIX = "bdr/"


def bdr_file_path(user_sqid: str, bdr_id: object) -> str:
    """The stored, relative `file_path` of a BDR ZIP: `bdr/{user_sqid}/{id}.zip`."""
    return f"{BDR_PREFIX}{user_sqid}/{bdr_id}.zip"


def bdr_zip_path(bdr_root: Path, file_path: str) -> Path:
    """Where a stored `file_path` lives under BDR_PATH (which may sit outside the vault)."""
    if not file_path.startswith(BDR_PREFIX):
        raise VaultPathError("not a BDR file path")
    return contained(bdr_root, file_path.removeprefix(BDR_PREFIX))
