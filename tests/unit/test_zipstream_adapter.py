"""What pmd_service/zipbuild/zipstream_adapter.py relies on in zipstream-ng, checked against the
zipstream-ng installed: each test fails the day zipstream-ng changes it."""

from __future__ import annotations

import inspect
import os
import zlib
from importlib.metadata import version

import zipstream.ng
from zlib_ng import zlib_ng

from pmd_service.zipbuild import zipstream_adapter


def test_the_installed_zipstream_ng_is_the_one_the_adapter_was_read_from() -> None:
    assert version("zipstream-ng") == zipstream_adapter.ZIPSTREAM_VERSION, (
        "re-read zipbuild/zipstream_adapter.py against this zipstream-ng"
    )


def test_the_adapter_s_zipstream_is_zipstream_ng_s() -> None:
    assert zipstream_adapter.ZipStream is zipstream.ng.ZipStream


def test_entries_get_their_crc_from_the_module_global_the_adapter_swaps() -> None:
    """The swap holds only while every CRC-32 of an entry's data is the module's `crc32`,
    looked up when each chunk is added (not bound once, as an import or a default would)."""
    module = inspect.getsource(zipstream.ng)
    assert module.count("crc32(") == 1, "zipstream-ng computes CRCs in more places now"
    file_data = zipstream.ng.ZipStreamInfo._file_data
    assert "crc = crc32(buf, crc) & 0xFFFFFFFF" in inspect.getsource(file_data)
    assert file_data.__globals__ is vars(zipstream.ng)
    assert zipstream.ng.crc32 is zlib_ng.crc32


def test_zlib_ng_s_crc32_gives_zlib_s_values_chunk_by_chunk() -> None:
    data = os.urandom((1 << 20) + 12_345)
    ours = theirs = 0
    for at in range(0, len(data), 1 << 16):
        ours = zlib_ng.crc32(data[at : at + (1 << 16)], ours) & 0xFFFFFFFF
        theirs = zlib.crc32(data[at : at + (1 << 16)], theirs)
    assert ours == theirs == zlib.crc32(data)
    assert zlib_ng.crc32(memoryview(bytearray(data))) == zlib.crc32(data)
