"""The one place that imports zipstream-ng and leans on its internals, named with the release
they were read from (pyproject.toml pins it; tests/unit/test_zipstream_adapter.py fails the day
zipstream-ng changes what is relied on, so an upgrade re-reads this module first).

- `ZipStream` with zlib-ng's CRC-32: zipstream-ng computes each entry's CRC-32 with `crc32`, a
  global of its module `zipstream.ng` looked up at every chunk, and zlib-ng's gives the same
  values several times faster (docs/architecture.md, "Libraries' internals"). Importing
  `ZipStream` from here is what makes the swap hold wherever a ZIP is built; it is made only
  while that global is still zlib's own function.
"""

from __future__ import annotations

import zlib

import zipstream.ng
from zipstream import ZipStream
from zlib_ng import zlib_ng

__all__ = ["ZIPSTREAM_VERSION", "ZipStream"]

ZIPSTREAM_VERSION = "1.9.3"  # the release these internals were read from

if getattr(zipstream.ng, "crc32", None) is zlib.crc32:
    zipstream.ng.crc32 = zlib_ng.crc32
