"""Where ready ZIPs are kept: the BDR_PATH folder, or a bucket (BDR_STORE=s3://…).

The server finds a ZIP to serve and removes one on request; the worker writes them (jobs/run.py)
and the cleanup tidies both kinds of place (jobs/cleanup.py).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import aiofiles.os
import obstore
from obstore.store import S3Store

from ..core.objects import REQUEST_TIMEOUT, StoreUrl, open_store
from ..core.problems import ProblemError
from ..core.settings import Settings
from ..host.vault import VaultPathError, bdr_object_key, bdr_zip_path, is_host_file, stored_zip_path

log = logging.getLogger(__name__)

# A missing object: obstore raises the builtin for a 404 on GET/HEAD, its own class elsewhere.
OBJECT_MISSING = (FileNotFoundError, obstore.exceptions.NotFoundError)


STORE_RETRY_AFTER = 30


def store_unavailable(exc: Exception) -> ProblemError:
    log.warning("object store unavailable: %s", str(exc).partition("\n")[0])
    return ProblemError(
        503,
        "store-unavailable",
        "Service Unavailable",
        "The storage holding the ZIPs cannot be reached right now; please try again in a minute.",
        headers={"Retry-After": str(STORE_RETRY_AFTER)},
    )


class ZipMissing(Exception):
    """The row says ready but its ZIP is gone (or its stored path is not one of ours)."""


@dataclass(frozen=True)
class StoredZip:
    """A ZIP to serve: a local `path`, or an object `key` in the BDR bucket."""

    size: int
    etag: str  # strong, quoted
    last_modified: datetime
    path: Path | None = None
    key: str | None = None


class ZipFiles:
    def __init__(self, settings: Settings, request_timeout: timedelta = REQUEST_TIMEOUT) -> None:
        self.root = settings.bdr_path
        self.vault = settings.vault_path
        self.bucket: StoreUrl | None = settings.bdr_bucket
        self.store: S3Store | None = (
            open_store(self.bucket, settings.s3_access, request_timeout) if self.bucket else None
        )
        self.signed_url_ttl = timedelta(seconds=settings.bdr_signed_url_seconds)

    def _key(self, file_path: str) -> str | None:
        """The object key when `file_path` lives in the bucket; None when it is a file."""
        if self.store is None or is_host_file(file_path):
            return None  # the host's ZIPs (imported at the cut-over) stay under the vault
        return bdr_object_key(file_path)

    async def locate(self, file_path: str) -> StoredZip:
        try:
            key = self._key(file_path)
            if key is not None:
                assert self.store is not None
                try:
                    meta = await obstore.head_async(self.store, key)
                except OBJECT_MISSING:
                    raise
                except (obstore.exceptions.BaseError, OSError) as exc:
                    raise store_unavailable(exc) from None
                return StoredZip(
                    size=meta["size"],
                    etag=meta["e_tag"] or f'"{meta["size"]:x}"',
                    last_modified=meta["last_modified"],
                    key=key,
                )
            path = stored_zip_path(self.root, self.vault, file_path)
            st = await aiofiles.os.stat(path)
        except (VaultPathError, NotADirectoryError, *OBJECT_MISSING):
            raise ZipMissing(file_path) from None
        return StoredZip(
            size=st.st_size,
            # The strong ETag aiohttp's FileResponse sends for this file.
            etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            path=path,
        )

    async def signed_url(self, stored: StoredZip, method: Literal["GET", "HEAD"]) -> str:
        """A URL of the object valid for BDR_SIGNED_URL_SECONDS (signed locally: no request).

        The method is part of the signature: a HEAD is redirected to a URL signed for HEAD.
        """
        assert self.store is not None and stored.key is not None
        return await obstore.sign_async(self.store, method, stored.key, self.signed_url_ttl)

    async def remove(self, file_path: str | None) -> None:
        if not file_path or is_host_file(file_path):
            return  # a host's ZIP (imported at the cut-over) is not the service's to delete
        try:
            key = self._key(file_path)
            if key is not None:
                assert self.store is not None
                try:
                    await obstore.delete_async(self.store, key)
                except OBJECT_MISSING:
                    pass
                except (obstore.exceptions.BaseError, OSError) as exc:
                    # The row no longer points at it: the daily cleanup removes it as an orphan.
                    log.warning("could not delete %s now: %s", key, str(exc).partition("\n")[0])
                return
            path = bdr_zip_path(self.root, file_path)
        except VaultPathError:
            log.error("refusing to delete %r: not a ZIP the service wrote", file_path)
            return
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(path)
