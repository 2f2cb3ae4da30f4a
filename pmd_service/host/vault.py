"""Where an artwork file lives: `{VAULT_PATH}/{storage_shard}/{storage_key}.{ext}`, never outside.

Paths are built from validated parts only (never by trimming `art_url`: `lstrip("/vault/")`
strips characters, not a prefix) and checked again after symlinks are resolved.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

ARTWORK_FORMATS = frozenset({"png", "gif", "webp", "bmp"})
# The host's `storage_shard` (varchar(8)) is an opaque folder path of one or more plain folder
# names: "24/07" today (two levels, 00-3f), "8c/4f/2a" on older rows (three levels, 00-ff).
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


# The host's other files of a post (api/app/vault.py: get_mkpx_file_path, whose `mkpx/` tree
# is keyed by the stored shard verbatim, and get_upscaled_file_path, beside the artwork).
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
    return artwork_path_in(vault.resolve(), storage_shard, storage_key, fmt)


def artwork_path_in(
    root: Path, storage_shard: str | None, storage_key: uuid.UUID | str, fmt: str
) -> Path:
    """artwork_path under a vault `root` already resolved: a build resolves it once, not once
    per artwork (resolving costs an lstat per level of the path)."""
    return vault_file_in(root, relative_artwork_path(storage_shard, storage_key, fmt))


def vault_file_in(root: Path, relative: str) -> Path:
    """`root/relative` for a relative path built by this module, `root` already resolved."""
    base = str(root)
    candidate = os.path.realpath(os.path.join(base, relative))
    # realpath follows symlinks: a link inside the vault that points out of it is refused.
    if not candidate.startswith(base.rstrip(os.sep) + os.sep):
        raise VaultPathError("artwork path resolves outside the vault")
    return Path(candidate)


def contained(root: Path, relative: str) -> Path:
    """`root/relative` for a path this service wrote itself (its ZIPs), refusing escapes."""
    if "\x00" in relative or relative.startswith("/"):
        raise VaultPathError("path must be relative and free of NUL bytes")
    base = root.resolve()
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base) or candidate == base:
        raise VaultPathError("path resolves outside its root")
    return candidate


# Every stored `file_path` of a ZIP of the service's own (a BDR's, an export part's) starts
# so: stored in rows since the first release, its value stays.
ZIP_PREFIX = "bdr/"


# Every file the service writes under ZIP_PATH carries this prefix, and the cleanup removes
# nothing else: the host's worker names its ZIPs `{id}.zip`, so even a ZIP_PATH shared with the
# host by mistake never loses a host file.
OWN_FILE_PREFIX = "pmd-"
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
OWN_ZIP_RE = re.compile(rf"{OWN_FILE_PREFIX}{_UUID}\.zip")
OWN_TEMP_RE = re.compile(rf"\.{OWN_FILE_PREFIX}{_UUID}\.[0-9a-f]{{8}}\.part")


def bdr_file_path(user_sqid: str, bdr_id: object) -> str:
    """The stored, relative `file_path` of a BDR ZIP: `bdr/{user_sqid}/pmd-{id}.zip`."""
    return f"{ZIP_PREFIX}{user_sqid}/{OWN_FILE_PREFIX}{bdr_id}.zip"


# In a bucket each run uploads to a name of its own (there is no rename to publish with): the
# row's `file_path` names the run whose commit made it ready, and a run that lost its claim
# deletes its object, or the cleanup does (an orphan: no ready row points at it).
OWN_OBJECT_RE = re.compile(rf"{OWN_FILE_PREFIX}(?P<id>{_UUID})\.(?P<run>[0-9a-f]{{8}})\.zip")
_USER_FOLDER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def bdr_object_file_path(user_sqid: str, bdr_id: object, run: str) -> str:
    """The stored `file_path` of a run's ZIP in a bucket: `bdr/{user_sqid}/pmd-{id}.{run}.zip`."""
    return f"{ZIP_PREFIX}{user_sqid}/{OWN_FILE_PREFIX}{bdr_id}.{run}.zip"


# A full export's parts: a folder per export, beside the user folders of BDRs (a sqid has no
# `-`, so no user folder is ever named so), `part-{n}.zip`; in a bucket each run's upload has a
# name of its own, as for BDRs.
EXPORTS_FOLDER = "pmd-exports"
_EXPORT_PART_RE = re.compile(
    rf"{EXPORTS_FOLDER}/{_UUID}/part-[1-9][0-9]{{0,5}}(\.[0-9a-f]{{8}})?\.zip"
)


# An export part's key in a bucket (relative to the prefix), with the run that uploaded it.
EXPORT_OBJECT_RE = re.compile(
    rf"{EXPORTS_FOLDER}/(?P<id>{_UUID})/part-[1-9][0-9]{{0,5}}\.(?P<run>[0-9a-f]{{8}})\.zip"
)


def export_part_file_path(export_id: object, number: int, run: str | None = None) -> str:
    """The stored `file_path` of an export's part: `bdr/pmd-exports/{id}/part-{n}.zip` in the
    folder, `bdr/pmd-exports/{id}/part-{n}.{run}.zip` in a bucket."""
    suffix = f".{run}" if run else ""
    return f"{ZIP_PREFIX}{EXPORTS_FOLDER}/{export_id}/part-{number}{suffix}.zip"


def export_part_temp_name(number: int, run: str) -> str:
    return f".part-{number}.{run}.part"


def is_export_part(file_path: str) -> bool:
    return _EXPORT_PART_RE.fullmatch(file_path.removeprefix(ZIP_PREFIX)) is not None


def zip_object_key(file_path: str) -> str:
    """The key, under the store's prefix, of a stored `file_path` the service wrote."""
    if file_path.startswith(ZIP_PREFIX) and is_export_part(file_path):
        return file_path.removeprefix(ZIP_PREFIX)
    user, _, name = file_path.removeprefix(ZIP_PREFIX).partition("/")
    if (
        not file_path.startswith(ZIP_PREFIX)
        or not _USER_FOLDER_RE.fullmatch(user)
        or not OWN_OBJECT_RE.fullmatch(name)
    ):
        raise VaultPathError("not an object path of the service's ZIPs")
    return f"{user}/{name}"


def bdr_temp_name(bdr_id: object, run: str) -> str:
    """The file a run writes before it renames it to the final name (atomic publish)."""
    return f".{OWN_FILE_PREFIX}{bdr_id}.{run}.part"


# A `file_path` of a ZIP the host's own PMD made (imported at the cut-over): relative to the
# vault, served until it expires, and never deleted by the service (not its file).
HOST_FILE_PREFIX = "host:"


def is_host_file(file_path: str) -> bool:
    return file_path.startswith(HOST_FILE_PREFIX)


def stored_zip_path(zip_root: Path, vault: Path, file_path: str) -> Path:
    """Where a stored `file_path` lives: under ZIP_PATH, or the host's (a BDR its own PMD made)
    under the vault."""
    if is_host_file(file_path):
        return contained(vault, file_path.removeprefix(HOST_FILE_PREFIX))
    return own_zip_path(zip_root, file_path)


def own_zip_path(zip_root: Path, file_path: str) -> Path:
    """Where a stored `file_path` lives under ZIP_PATH (which may sit outside the vault)."""
    if not file_path.startswith(ZIP_PREFIX):
        raise VaultPathError("not a stored ZIP path")
    return contained(zip_root, file_path.removeprefix(ZIP_PREFIX))


def host_shard(storage_key: uuid.UUID, *, legacy: bool = False) -> str:
    """The shard the host gives a new artwork ("24/07"), or an older row's ("8c/4f/2a").

    For demo data and tests: the service itself never derives a shard, it reads the stored one.
    """
    digest = hashlib.sha256(str(storage_key).encode()).digest()
    if legacy:
        return f"{digest[0]:02x}/{digest[1]:02x}/{digest[2]:02x}"
    return f"{digest[0] & 0x3F:02x}/{digest[1] & 0x3F:02x}"
