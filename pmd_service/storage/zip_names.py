"""Our names for the ZIPs we store, and where a stored `file_path` lives (checked by
host/vault.py's `contained`: nothing resolves outside its root)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..host.vault import VaultPathError, contained

# Every stored `file_path` of a ZIP of the service's own starts so (rows keep it).
ZIP_PREFIX = "bdr/"


# Every file the service writes under ZIP_PATH carries this prefix, and the cleanup removes
# nothing else, so a ZIP_PATH shared with the host by mistake never loses a host file.
OWN_FILE_PREFIX = "pmd-"
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
OWN_ZIP_RE = re.compile(rf"{OWN_FILE_PREFIX}{_UUID}\.zip")
OWN_TEMP_RE = re.compile(rf"\.{OWN_FILE_PREFIX}{_UUID}\.[0-9a-f]{{8}}\.part")


# In a bucket each run uploads to a name of its own, as there is no rename to publish with.
OWN_OBJECT_RE = re.compile(rf"{OWN_FILE_PREFIX}(?P<id>{_UUID})\.(?P<run>[0-9a-f]{{8}})\.zip")
_USER_FOLDER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


# A full export's parts: `part-{n}.zip` in a folder per export, beside the user folders (a
# sqid has no `-`), with a run's name of its own in a bucket.
EXPORTS_FOLDER = "pmd-exports"
_EXPORT_PART_RE = re.compile(
    rf"{EXPORTS_FOLDER}/{_UUID}/part-[1-9][0-9]{{0,5}}(\.[0-9a-f]{{8}})?\.zip"
)

# An export part's key in a bucket (relative to the prefix), with the run that uploaded it.
EXPORT_OBJECT_RE = re.compile(
    rf"{EXPORTS_FOLDER}/(?P<id>{_UUID})/part-[1-9][0-9]{{0,5}}\.(?P<run>[0-9a-f]{{8}})\.zip"
)


def is_export_part(file_path: str) -> bool:
    return _EXPORT_PART_RE.fullmatch(file_path.removeprefix(ZIP_PREFIX)) is not None


def zip_object_key(file_path: str) -> str:
    """The key, under the store's prefix, of a stored `file_path` the service wrote."""
    key = file_path.removeprefix(ZIP_PREFIX)
    user, _, name = key.partition("/")
    own = _USER_FOLDER_RE.fullmatch(user) and OWN_OBJECT_RE.fullmatch(name)
    if not file_path.startswith(ZIP_PREFIX) or not (own or is_export_part(file_path)):
        raise VaultPathError("not an object path of the service's ZIPs")
    return key


# A `file_path` of a ZIP the host's own PMD made (imported at the cut-over): never deleted.
HOST_FILE_PREFIX = "host:"


def is_host_file(file_path: str) -> bool:
    return file_path.startswith(HOST_FILE_PREFIX)


def stored_zip_path(zip_root: Path, vault: Path, file_path: str) -> Path:
    """Where a stored `file_path` lives: under ZIP_PATH, or the host's under the vault."""
    if is_host_file(file_path):
        return contained(vault, file_path.removeprefix(HOST_FILE_PREFIX))
    return own_zip_path(zip_root, file_path)


def own_zip_path(zip_root: Path, file_path: str) -> Path:
    """Where a stored `file_path` lives under ZIP_PATH (which may sit outside the vault)."""
    if not file_path.startswith(ZIP_PREFIX):
        raise VaultPathError("not a stored ZIP path")
    return contained(zip_root, file_path.removeprefix(ZIP_PREFIX))


@dataclass(frozen=True)
class ZipNames:
    """Where one run stores one ZIP: `file_path` in the folder (written as `temp_name`),
    `object_path` in a bucket; `download_name` is the file name a browser saves."""

    file_path: str
    temp_name: str
    object_path: str
    download_name: str


def bdr_zip_names(user_sqid: str, bdr_id: object, run: str, download_name: str) -> ZipNames:
    """`bdr/{user_sqid}/pmd-{id}.zip` (a run's own `pmd-{id}.{run}.zip` in a bucket)."""
    path = f"{ZIP_PREFIX}{user_sqid}/{OWN_FILE_PREFIX}{bdr_id}"
    temp = f".{OWN_FILE_PREFIX}{bdr_id}.{run}.part"
    return ZipNames(f"{path}.zip", temp, f"{path}.{run}.zip", download_name)


def export_part_names(export_id: object, number: int, run: str, download_name: str) -> ZipNames:
    """`bdr/pmd-exports/{id}/part-{n}.zip` (a run's own `part-{n}.{run}.zip` in a bucket)."""
    path = f"{ZIP_PREFIX}{EXPORTS_FOLDER}/{export_id}/part-{number}"
    return ZipNames(f"{path}.zip", f".part-{number}.{run}.part", f"{path}.{run}.zip", download_name)
