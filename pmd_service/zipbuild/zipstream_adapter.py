"""The one place that imports zipstream-ng and leans on its internals, named with the release
they were read from (pyproject.toml pins it; tests/unit/test_zipstream_adapter.py fails the day
zipstream-ng changes what is relied on, so an upgrade re-reads this module first).

- `ZipStream` with zlib-ng's CRC-32: zipstream-ng computes each entry's CRC-32 with `crc32`, a
  global of its module `zipstream.ng` looked up at every chunk, and zlib-ng's gives the same
  values several times faster (docs/architecture.md, "Libraries' internals"). Importing
  `ZipStream` from here is what makes the swap hold wherever a ZIP is built; it is made only
  while that global is still zlib's own function.
- The JSON files' deflate by zlib-ng: zipstream-ng makes each entry's compressor with
  `_get_compressor`, a global of `zipstream.ng` imported from zipfile, looked up at every
  entry; zlib-ng's deflate at the same level gives ZIPs of the same size in about two thirds
  of the time (docs/benchmarks-details.md, "Mentions served plain"). Every other kind of entry
  still gets zipfile's compressor.
"""

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
