"""The one place that imports zipstream-ng and leans on its internals, as read from
ZIPSTREAM_VERSION (tests/unit/test_zipstream_adapter.py fails the day they change): its module
globals `crc32` and `_get_compressor` are swapped for zlib-ng's, which give the same bytes
faster (docs/architecture.md, "Libraries' internals")."""

from __future__ import annotations

import zlib
from typing import Any
from zipfile import ZIP_DEFLATED

import zipstream.ng
from zipstream import ZipStream
from zlib_ng import zlib_ng

__all__ = ["ZIPSTREAM_VERSION", "ZipStream"]

ZIPSTREAM_VERSION = "1.9.3"  # the release these internals were read from

if getattr(zipstream.ng, "crc32", None) is zlib.crc32:
    zipstream.ng.crc32 = zlib_ng.crc32

_zipfile_compressor = zipstream.ng._get_compressor


def _get_compressor(compress_type: int, compresslevel: int | None = None) -> Any:
    """zipfile's `_get_compressor`, with zlib-ng's deflate (raw, zipfile's default level)."""
    if compress_type == ZIP_DEFLATED:
        level = zlib_ng.Z_DEFAULT_COMPRESSION if compresslevel is None else compresslevel
        return zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15)
    return _zipfile_compressor(compress_type, compresslevel)


if getattr(zipstream.ng, "_get_compressor", None) is not _get_compressor:
    zipstream.ng._get_compressor = _get_compressor
