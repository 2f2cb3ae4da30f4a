"""What pmd_service/zipbuild/zipstream_adapter.py relies on in zipstream-ng, checked against the
zipstream-ng installed: each test fails the day zipstream-ng changes it."""

from __future__ import annotations

import inspect
import io
import os
import zipfile
import zlib
from importlib.metadata import version
from zipfile import ZIP_DEFLATED, ZIP_STORED

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


def test_entries_get_their_compressor_from_the_module_global_the_adapter_swaps() -> None:
    """The deflate swap holds only while each entry's compressor is made by the module's
    `_get_compressor`, looked up when the entry is written."""
    module = inspect.getsource(zipstream.ng)
    assert module.count("_get_compressor(") == 2, "zipstream-ng makes compressors elsewhere now"
    file_data = zipstream.ng.ZipStreamInfo._file_data
    assert "cmpr = _get_compressor(self.compress_type, self._compresslevel)" in inspect.getsource(
        file_data
    )
    assert file_data.__globals__ is vars(zipstream.ng)
    assert zipstream.ng._get_compressor is zipstream_adapter._get_compressor


def test_deflated_entries_are_zlib_ng_s_and_read_back_with_zipfile() -> None:
    data = b'{\n  "comments": [\n' + b'    {"body": "Pixel pals: @fan01, @fan02"},\n' * 5000
    stream = zipstream_adapter.ZipStream(compress_type=ZIP_STORED)
    stream.add(data, "comments.json", compress_type=ZIP_DEFLATED)
    stream.add(b"\x89PNG" + os.urandom(1000), "a.png")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(stream)))
    assert archive.testzip() is None
    assert archive.read("comments.json") == data
    deflated = archive.getinfo("comments.json").compress_size
    ours = zlib_ng.compressobj(zlib_ng.Z_DEFAULT_COMPRESSION, zlib_ng.DEFLATED, -15)
    assert deflated == len(ours.compress(data) + ours.flush())
    assert archive.getinfo("a.png").compress_type == ZIP_STORED
