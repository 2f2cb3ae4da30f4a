"""Our names for the ZIPs we store: the `file_path` a row keeps, the temp file a run writes, a
run's own object in a bucket, the export's folder, and where a stored `file_path` lives.

Paths are checked by host/vault.py's `contained`: nothing resolves outside its root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..host.vault import VaultPathError, contained

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


@dataclass(frozen=True)
class ZipNames:
    """Where one run stores one ZIP: `file_path` once placed in the folder (`temp_name` beside
    it while it is written), `object_path` (the run's own) in a bucket; `download_name` is the
    file name a browser saves."""

    file_path: str
    temp_name: str
    object_path: str
    download_name: str


def bdr_zip_names(user_sqid: str, bdr_id: object, run: str, download_name: str) -> ZipNames:
    return ZipNames(
        bdr_file_path(user_sqid, bdr_id),
        bdr_temp_name(bdr_id, run),
        bdr_object_file_path(user_sqid, bdr_id, run),
        download_name,
    )


def export_part_names(export_id: object, number: int, run: str, download_name: str) -> ZipNames:
    return ZipNames(
        export_part_file_path(export_id, number),
        export_part_temp_name(number, run),
        export_part_file_path(export_id, number, run),
        download_name,
    )
