"""Small real PNGs of pixel art for tests that show artworks in a browser (the seeder's default
bytes are not images). Made with zlib alone: 8-bit RGBA, one filter byte a row."""

from __future__ import annotations

import random
import struct
import zlib

Pixel = tuple[int, int, int, int]


def png(width: int, height: int, pixels: list[Pixel]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes(p) for p in pixels[y * width : (y + 1) * width])
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sprite(seed: int, size: int = 16) -> bytes:
    """A symmetric little creature of a few colours, different for each seed."""
    rng = random.Random(seed)
    palette: list[Pixel] = [
        (rng.randrange(40, 256), rng.randrange(40, 256), rng.randrange(40, 256), 255)
        for _ in range(3)
    ]
    clear: Pixel = (0, 0, 0, 0)
    half = (size + 1) // 2
    grid: list[Pixel] = []
    for y in range(size):
        row = [
            palette[rng.randrange(3)] if rng.random() < 0.55 and 1 < y < size - 1 else clear
            for _ in range(half)
        ]
        grid += row + row[: size - half][::-1]
    return png(size, size, grid)
