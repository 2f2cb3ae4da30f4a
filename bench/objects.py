"""The benchmarks' object store: a SeaweedFS bucket through obstore (support/seaweed.py's keys),
and the plain multipart upload that bench.store weighs the ZIP builds against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import obstore
from obstore.store import S3Store

from pmd_service.core.objects import S3Access, StoreUrl, open_store
from pmd_service.zipbuild.build import CHUNK, PART_BYTES, PARTS_IN_FLIGHT
from support.seaweed import ACCESS_KEY, REGION, SECRET_KEY


def store_at(endpoint: str, bucket: str, prefix: str) -> S3Store:
    access = S3Access(endpoint, REGION, ACCESS_KEY, SECRET_KEY, None)
    return open_store(StoreUrl(bucket, prefix), access)


def plain_put(store: S3Store, key: str, local: Path) -> None:
    """`local` uploaded as a build uploads its ZIP: CHUNK reads, PART_BYTES parts, PARTS_IN_FLIGHT
    at once."""

    def chunks() -> Iterator[bytes]:
        with open(local, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    obstore.put(store, key, chunks(), use_multipart=True, chunk_size=PART_BYTES,
                max_concurrency=PARTS_IN_FLIGHT)  # fmt: skip
