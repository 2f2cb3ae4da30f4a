"""Where ready ZIPs are kept: the ZIP_PATH folder, or a bucket (ZIP_STORE=s3://…), as the
server finds, serves and removes them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import aiofiles.os
import obstore
from obstore.store import S3Store

from ..core.codes import Code
from ..core.objects import STREAMING_CEILING, StoreUrl, open_store
from ..core.problems import ProblemError
from ..core.settings import Settings
from ..host.vault import VaultPathError
from .zip_names import is_host_file, own_zip_path, stored_zip_path, zip_object_key

if TYPE_CHECKING:
    from obstore import GetOptions, GetResult

log = logging.getLogger(__name__)
T = TypeVar("T")

# A missing object: obstore raises the builtin for a 404 on GET/HEAD, its own class elsewhere.
OBJECT_MISSING = (FileNotFoundError, obstore.exceptions.NotFoundError)
STORE_ERRORS = (obstore.exceptions.BaseError, OSError, TimeoutError)


STORE_RETRY_AFTER = 30


def store_unavailable(reason: Exception | str) -> ProblemError:
    log.warning("object store unavailable: %s", str(reason).partition("\n")[0])
    return ProblemError(
        503,
        "store-unavailable",
        "Service Unavailable",
        "The storage holding the ZIPs cannot be reached right now; please try again in a minute.",
        headers={"Retry-After": str(STORE_RETRY_AFTER)},
        code=Code.STORE_UNAVAILABLE,
        details={"retry_after_seconds": STORE_RETRY_AFTER},
    )


class StoreFailed(Exception):
    """The store stopped sending a body already under way (silent, or an error)."""


class StoreHealth:
    """What this process's own calls to the store found lately (/readyz and /metrics read it)."""

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.failing_since: float | None = None  # wall time; None while the last call worked
        self.last_error = ""

    def succeeded(self) -> None:
        self.calls += 1
        self.failing_since = None

    def failed(self, what: str) -> None:
        self.calls += 1
        self.failures += 1
        self.last_error = what
        if self.failing_since is None:
            self.failing_since = time.time()


class ZipMissing(Exception):
    """The row says ready but its ZIP is gone, is not the size the row says, or is not ours."""


@dataclass(frozen=True)
class StoredZip:
    """A ZIP to serve: a local `path`, or an object `key` in the ZIPs' bucket."""

    size: int
    etag: str  # strong, quoted
    last_modified: datetime
    path: Path | None = None
    key: str | None = None


class ZipFiles:
    """`streams`: the server's copy, whose reads (proxy mode) last as long as their reader."""

    def __init__(self, settings: Settings, *, streams: bool = False) -> None:
        self.root = settings.zip_path
        self.vault = settings.vault_path
        self.bucket: StoreUrl | None = settings.zip_bucket
        self.timeout = settings.store_timeout_seconds
        self.idle = settings.store_idle_seconds
        self.health = StoreHealth()
        # The client's own timeouts are a backstop at twice the bound, so `_call`'s fires first.
        short = timedelta(seconds=2 * self.timeout)
        self.store: S3Store | None = None
        self.meta: S3Store | None = None
        if self.bucket is not None:
            access = settings.s3_access
            # HEAD, DELETE and signing take milliseconds: no answer within seconds is a 503.
            self.meta = open_store(self.bucket, access, short, retry_timeout=short)
            # Uploads or proxied reads: as long as they take, cut only when the store falls silent.
            self.store = (
                open_store(
                    self.bucket,
                    access,
                    STREAMING_CEILING,
                    read_timeout=timedelta(seconds=self.idle),
                )
                if streams
                else open_store(self.bucket, access)
            )
        self.signed_url_ttl = timedelta(seconds=settings.zip_signed_url_seconds)

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """One short call bounded by STORE_TIMEOUT_SECONDS; any failure but a 404 is a 503."""
        try:
            async with asyncio.timeout(self.timeout):
                result = await call
        except OBJECT_MISSING:
            self.health.succeeded()
            raise
        except TimeoutError:
            self.health.failed(f"{what}: no answer within {self.timeout:g} s")
            raise store_unavailable(f"{what}: no answer within {self.timeout:g} s") from None
        except STORE_ERRORS as exc:
            self.health.failed(f"{what}: {type(exc).__name__}")
            raise store_unavailable(exc) from None
        self.health.succeeded()
        return result

    def _key(self, file_path: str) -> str | None:
        """The object key when `file_path` lives in the bucket; None when it is a file."""
        if self.store is None or is_host_file(file_path):
            return None  # the host's ZIPs (imported at the cut-over) stay under the vault
        return zip_object_key(file_path)

    async def locate(self, file_path: str, size: int | None = None) -> StoredZip:
        """The stored ZIP; ZipMissing when there is none, or it is not `size` (the row's) long."""
        try:
            key = self._key(file_path)
            if key is not None:
                assert self.meta is not None
                meta = await self._call("HEAD", obstore.head_async(self.meta, key))
                stored = StoredZip(
                    size=meta["size"],
                    etag=meta["e_tag"] or f'"{meta["size"]:x}"',
                    last_modified=meta["last_modified"],
                    key=key,
                )
            else:
                path = stored_zip_path(self.root, self.vault, file_path)
                st = await aiofiles.os.stat(path)
                stored = StoredZip(
                    size=st.st_size,
                    # The strong ETag aiohttp's FileResponse sends for this file.
                    etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
                    last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
                    path=path,
                )
        except (VaultPathError, NotADirectoryError, *OBJECT_MISSING):
            raise ZipMissing(file_path) from None
        if size is not None and stored.size != size:
            log.warning(
                "%s holds %d bytes where its row says %d: not served (answered as gone)",
                file_path,
                stored.size,
                size,
            )
            raise ZipMissing(file_path)
        return stored

    async def signed_url(self, stored: StoredZip, method: Literal["GET", "HEAD"]) -> str:
        """A URL of the object, for `method`, valid for ZIP_SIGNED_URL_SECONDS."""
        assert self.meta is not None and stored.key is not None
        # Local with static keys, but a credentials chain may fetch keys first: bounded too.
        return await self._call(
            "sign", obstore.sign_async(self.meta, method, stored.key, self.signed_url_ttl)
        )

    async def read(self, stored: StoredZip, start: int, stop: int) -> GetResult:
        """The object's bytes [start, stop), once the store has answered; read with `chunks`."""
        assert self.store is not None and stored.key is not None
        # The ETag pins the version, so a replaced object never splices two files into one.
        options: GetOptions = {"range": (start, stop), "if_match": stored.etag}
        try:
            return await self._call(
                "GET", obstore.get_async(self.store, stored.key, options=options)
            )
        except obstore.exceptions.PreconditionError:
            raise FileNotFoundError(stored.key) from None  # replaced: this version is gone

    async def chunks(self, result: GetResult, size: int) -> AsyncIterator[memoryview]:
        """The body in chunks of at least `size` bytes; StoreFailed when the store falls silent."""
        stream = result.stream(min_chunk_size=size)
        while True:
            try:
                async with asyncio.timeout(self.idle):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                self.health.failed(f"GET body: no byte for {self.idle:g} s")
                raise StoreFailed(f"no byte for {self.idle:g} s") from None
            except STORE_ERRORS as exc:
                self.health.failed(f"GET body: {type(exc).__name__}")
                raise StoreFailed(str(exc).partition("\n")[0]) from None
            yield memoryview(chunk)

    async def remove(self, file_path: str | None) -> None:
        if not file_path or is_host_file(file_path):
            return  # a host's ZIP (imported at the cut-over) is not the service's to delete
        try:
            key = self._key(file_path)
            if key is not None:
                assert self.meta is not None
                try:
                    await self._call("DELETE", obstore.delete_async(self.meta, key))
                except OBJECT_MISSING:
                    pass
                except ProblemError:
                    # The row no longer points at it: the cleanup removes it as an orphan.
                    log.warning("could not delete %s now; the daily cleanup will", key)
                return
            path = own_zip_path(self.root, file_path)
        except VaultPathError:
            log.error("refusing to delete %r: not a ZIP the service wrote", file_path)
            return
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(path)


def repr_digest(sha256_hex: str | None) -> dict[str, str]:
    """RFC 9530's `Repr-Digest` of a whole ZIP (on a 206 too: it is the file's)."""
    if not sha256_hex:
        return {}
    return {"Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"}
