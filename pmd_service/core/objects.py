"""Object storage (S3 and S3-compatible) behind `s3://bucket/prefix`: obstore for the data,
aiobotocore only to list and abort the uploads a killed process left, never outside the prefix.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from obstore.store import S3Store

if TYPE_CHECKING:
    from obstore.store import ClientConfig

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART_RE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoreUrl:
    """`s3://bucket/prefix`: the bucket, and the folder-like prefix every key goes under."""

    bucket: str
    prefix: str  # "" or "a/b", no leading or trailing slash

    @classmethod
    def parse(cls, url: str, variable: str) -> StoreUrl:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET_RE.fullmatch(bucket):
            raise ValueError(
                f"{variable}: {bucket!r} is not a bucket name (3-63 characters: lowercase "
                "letters, digits, dots and hyphens); write s3://bucket or s3://bucket/prefix"
            )
        if prefix and not all(
            _PREFIX_PART_RE.fullmatch(p) and p not in {".", ".."} for p in prefix.split("/")
        ):
            raise ValueError(
                f"{variable}: the prefix {prefix!r} must be folder names of letters, digits, "
                "'.', '_' and '-', separated by '/'"
            )
        return cls(bucket, prefix)

    def key(self, relative: str) -> str:
        """The object key of `relative` (as the bucket sees it, prefix included)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True, repr=False)
class S3Access:
    """The AWS_* settings: endpoint (empty: AWS), region, and keys (None: the credentials chain)."""

    endpoint: str
    region: str
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None

    def __repr__(self) -> str:  # keys never reach a log line
        return f"S3Access(endpoint={self.endpoint!r}, region={self.region!r})"

    def keys(self) -> dict[str, str]:
        names = ("access_key_id", "secret_access_key", "session_token")
        return {n: v for n in names if (v := getattr(self, n))}


# A request's whole time, its body included: the worker's parts and artworks take seconds.
REQUEST_TIMEOUT = timedelta(minutes=2)
# A proxied body is cut when idle for `read_timeout`; this ceiling only keeps the client bounded.
STREAMING_CEILING = timedelta(days=7)


def open_store(
    url: StoreUrl,
    access: S3Access,
    request_timeout: timedelta = REQUEST_TIMEOUT,
    *,
    read_timeout: timedelta | None = None,
    retry_timeout: timedelta = timedelta(seconds=30),
) -> S3Store:
    """An obstore S3 store rooted at the URL's prefix; `read_timeout` bounds each read's wait,
    `retry_timeout` one call's retries."""
    config: dict[str, Any] = {"region": access.region, **access.keys()}
    if access.endpoint:
        config["endpoint"] = access.endpoint
    client: ClientConfig = {
        "allow_http": access.endpoint.startswith("http://"),
        "connect_timeout": _duration(min(request_timeout, timedelta(seconds=10))),
        "timeout": _duration(request_timeout),
    }
    if read_timeout is not None:
        client["read_timeout"] = _duration(read_timeout)
    return S3Store(
        url.bucket,
        prefix=url.prefix or None,
        client_options=client,
        retry_config={
            "max_retries": 3,
            "backoff": {"init_backoff": timedelta(milliseconds=100)},
            "retry_timeout": retry_timeout,
        },
        **config,
    )


def _duration(value: timedelta) -> str:
    return f"{max(1, round(value.total_seconds() * 1000))}ms"


@dataclass(frozen=True)
class Upload:
    key: str  # relative to the prefix
    upload_id: str
    initiated: datetime


def _client(access: S3Access) -> Any:
    from aiobotocore.session import get_session  # imported only where object storage is used

    endpoint = {"endpoint_url": access.endpoint} if access.endpoint else {}
    keys = {f"aws_{name}": value for name, value in access.keys().items()}
    return get_session().create_client("s3", region_name=access.region, **endpoint, **keys)


async def incomplete_uploads(url: StoreUrl, access: S3Access) -> list[Upload]:
    """Multipart uploads begun under the prefix and never completed nor aborted."""
    prefix = f"{url.prefix}/" if url.prefix else ""
    found: list[Upload] = []
    async with _client(access) as client:
        paginator = client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=url.bucket, Prefix=prefix):
            found += [
                Upload(upload["Key"].removeprefix(prefix), upload["UploadId"], upload["Initiated"])
                for upload in page.get("Uploads", [])
                if upload["Key"].startswith(prefix)  # a store that ignores Prefix is not trusted
            ]
    return found


async def abort_uploads(url: StoreUrl, access: S3Access, uploads: list[Upload]) -> None:
    async with _client(access) as client:
        for upload in uploads:
            # Completed or aborted since it was listed: nothing left to do.
            with contextlib.suppress(client.exceptions.NoSuchUpload):
                await client.abort_multipart_upload(
                    Bucket=url.bucket, Key=url.key(upload.key), UploadId=upload.upload_id
                )
