"""An artwork's palette against the pixels Pillow decodes, its two files as their readers parse
them, and the builder adding the files made from an entry's bytes right after it."""

from __future__ import annotations

import io
import os
import random
import threading
import uuid
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from obstore.store import LocalStore
from PIL import GimpPaletteFile, Image

from pmd_service.host.vault import host_shard
from pmd_service.zipbuild.build import CHUNK, Deriving, Entry, build, file_sink
from pmd_service.zipbuild.content import Artwork
from pmd_service.zipbuild.palette import (
    MAX_COLOURS,
    MAX_FRAME_PIXELS,
    RAW_VALUES,
    PaletteError,
    colours,
    gpl_file,
    hex_file,
)
from pmd_service.zipbuild.sources import object_fetcher
from pmd_service.zipbuild.working_files import entry_id, palette_of
from tests.exports import pixel_colours

RGBA = tuple[int, int, int, int]


def _encoded(frames: list[Image.Image], fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    first, *more = frames
    if more:
        first.save(out, fmt, save_all=True, append_images=more, duration=100, loop=0)
    else:
        first.save(out, fmt)
    return out.getvalue()


def _painted(size: tuple[int, int], rng: random.Random, palette: list[RGBA]) -> Image.Image:
    img = Image.new("RGBA", size)
    img.putdata([rng.choice(palette) for _ in range(size[0] * size[1])])
    return img


def test_colours_are_the_decoded_pixels_the_most_used_first() -> None:
    rng = random.Random(7)
    palette = [(rng.randrange(256), rng.randrange(256), rng.randrange(256), 255) for _ in range(40)]
    image = _encoded([_painted((37, 23), rng, palette)])
    found = colours(image)
    assert found == pixel_colours(image)
    assert found is not None and set(found) == {bytes(c[:3]).hex() for c in palette}
    assert all(len(c) == 6 and c == c.lower() for c in found)


def test_transparent_pixels_are_left_out_and_alpha_is_ignored() -> None:
    img = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    img.putpixel((0, 0), (12, 34, 56, 0))  # hidden: its colour is not the artwork's
    img.putpixel((1, 0), (255, 0, 0, 255))
    img.putpixel((0, 1), (0, 128, 255, 128))  # half shown: its colour counts
    img.putpixel((3, 1), (255, 0, 0, 1))  # the same colour, barely shown
    assert colours(_encoded([img])) == ("ff0000", "0080ff")
    # An indexed image whose transparent index is a colour of its palette: left out too.
    indexed = Image.new("P", (3, 1))
    indexed.putpalette([9, 9, 9, 200, 100, 50, 1, 2, 3])
    indexed.putdata([0, 1, 2])
    out = io.BytesIO()
    indexed.save(out, "PNG", transparency=0)
    assert colours(out.getvalue()) == ("010203", "c86432")
    # Nothing shown: a palette of no colour.
    assert colours(_encoded([Image.new("RGBA", (5, 5))])) == ()


def test_an_animation_is_read_frame_by_frame() -> None:
    frames = [Image.new("RGB", (6, 4), (10, 20, 30)) for _ in range(3)]
    frames[1].putpixel((5, 3), (200, 0, 0))
    frames[2].putpixel((0, 0), (0, 200, 0))
    for fmt in ("GIF", "WEBP", "PNG"):  # animated GIF, WebP and APNG
        image = _encoded(frames, fmt)
        if fmt != "WEBP":  # lossless below: the same colours back
            assert colours(image) == ("0a141e", "00c800", "c80000")
        assert colours(image) == pixel_colours(image), fmt
    lossless = io.BytesIO()
    frames[0].save(lossless, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert colours(lossless.getvalue()) == ("0a141e", "00c800", "c80000")


def test_more_than_256_colours_have_no_palette() -> None:
    exactly = Image.new("RGB", (MAX_COLOURS, 1))
    exactly.putdata([(i, 255 - i, 7) for i in range(MAX_COLOURS)])
    found = colours(_encoded([exactly]))
    assert found is not None and len(found) == MAX_COLOURS
    one_more = Image.new("RGBA", (MAX_COLOURS + 2, 1))  # and a transparent pixel
    one_more.putdata([(i % 256, i // 256, 7, 255) for i in range(MAX_COLOURS + 1)] + [(0,) * 4])
    assert colours(_encoded([one_more])) is None
    # Over 256 only with every frame together.
    halves = [Image.new("RGB", (200, 1)), Image.new("RGB", (200, 1))]
    halves[0].putdata([(i, 0, 0) for i in range(200)])
    halves[1].putdata([(i, 1, 0) for i in range(200)])
    assert colours(_encoded(halves, "PNG")) is None
    # Many colours under alpha 0 are no colour at all, however many they are.
    for width in (600, RAW_VALUES + 2):
        hidden = Image.new("RGBA", (width, 1))
        hidden.putdata([(i % 256, i // 256, 1, 0) for i in range(width - 1)] + [(1, 2, 3, 255)])
        assert colours(_encoded([hidden])) == ("010203",)


def _modes(rng: random.Random) -> list[Image.Image]:
    """One image in each mode an artwork decodes to, its transparency kept by PNG."""
    grey = Image.frombytes("L", (30, 20), bytes(rng.choice((0, 40, 41, 255)) for _ in range(600)))
    images = [grey, Image.merge("LA", (grey, grey.point(lambda v: v % 3 * 100)))]
    indexed = grey.convert("P")
    indexed.info["transparency"] = bytes([255, 0, 90] + [255] * 40)  # alpha of each index
    images += [indexed, grey.convert("P")]
    images[-1].info["transparency"] = 41
    rgb = grey.convert("RGB")
    rgb.info["transparency"] = (40, 40, 40)
    return [*images, rgb, _painted((9, 9), rng, [(1, 2, 3, 0), (1, 2, 3, 9), (4, 5, 6, 255)])]


def test_each_mode_and_transparency_gives_the_decoded_pixels_colours() -> None:
    for image in _modes(random.Random(3)):
        out = io.BytesIO()
        image.save(out, "PNG", **{k: v for k, v in image.info.items() if k == "transparency"})
        with Image.open(io.BytesIO(out.getvalue())) as back:
            assert back.mode == image.mode  # read back in the same mode
        assert colours(out.getvalue()) == pixel_colours(out.getvalue()), image.mode


@pytest.mark.parametrize(
    "image",
    [
        b"",
        b"PIXELS:1:not an image at all",
        _encoded([Image.frombytes("RGB", (64, 64), random.Random(1).randbytes(64 * 64 * 3))])[
            :4000
        ],  # cut short
        _encoded([Image.new("RGB", (8, 8), (1, 2, 3))], "JPEG"),  # not an artwork format
        b"%PDF-1.4\n",
    ],
)
def test_an_undecodable_image_raises(image: bytes) -> None:
    with pytest.raises(PaletteError):
        colours(image)


def test_a_huge_image_is_refused_before_it_is_decoded() -> None:
    # One frame past the limit, in a few hundred bytes: never decoded.
    side = int(MAX_FRAME_PIXELS**0.5) + 1
    big = _encoded([Image.new("1", (side, side))])
    assert len(big) < 64 << 10
    with pytest.raises(PaletteError, match="over the limit"):
        colours(big)
    # A header claiming billions of pixels: Pillow's own bomb check, as a PaletteError.
    png = bytearray(_encoded([Image.new("1", (1, 1))]))
    png[16:24] = (50_000).to_bytes(4, "big") * 2
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    with pytest.raises(PaletteError):
        colours(bytes(png))


def test_the_hex_and_gpl_files_read_back() -> None:
    found = ("ff0000", "00ff80", "0a0b0c")
    assert hex_file(found) == b"ff0000\n00ff80\n0a0b0c\n"
    gpl = gpl_file("Sprite\n<1>\x00", found)
    lines = gpl.decode().split("\n")
    assert lines[:4] == ["GIMP Palette", "Name: Sprite <1>", "Columns: 16", "#"]
    assert lines[4] == "255   0   0\tff0000"
    read = GimpPaletteFile.GimpPaletteFile(io.BytesIO(gpl))
    data, mode = read.getpalette()
    assert mode == "RGB" and data[:9] == bytes.fromhex("".join(found))
    assert gpl_file("", ()) == b"GIMP Palette\nName: Palette\nColumns: 16\n#\n"


def _zip(
    tmp_path: Path, entries: list[Entry]
) -> tuple[dict[str, bytes], list[int], list[tuple[int, str]]]:
    out = tmp_path / "out.zip"
    result = build(
        file_sink(out), entries, lambda added, skipped: [], lambda n: None, threading.Event()
    )
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        return {n: archive.read(n) for n in archive.namelist()}, result.added, result.skipped


def test_the_builder_adds_what_is_made_of_an_entrys_bytes_after_it(tmp_path: Path) -> None:
    seen: list[bytes | None] = []

    def made(data: bytes | None) -> list[Entry]:
        seen.append(data)  # made on the builder's threads, in any order
        if data is None:
            return [Entry(-1, "../sums/x", skip_reason="too_big")]
        return [Entry(-2, f"../sums/{len(data)}.txt", data=str(len(data)).encode())]

    big = os.urandom(3 * CHUNK + 5)  # read in several reused buffers
    (tmp_path / "big.png").write_bytes(big)
    (tmp_path / "over.png").write_bytes(big)
    deriving = Deriving(made, max_bytes=4 * CHUNK)
    names, added, skipped = _zip(
        tmp_path,
        [
            Entry(1, "bag/data/artworks/big.png", path=tmp_path / "big.png", derived=deriving),
            Entry(2, "bag/data/artworks/fetched.png", data=b"fetched", derived=deriving),
            Entry(
                3,
                "bag/data/artworks/over.png",
                path=tmp_path / "over.png",
                derived=Deriving(made, CHUNK),
            ),
            Entry(4, "bag/data/artworks/gone.png", path=tmp_path / "gone.png", derived=deriving),
        ],
    )
    # The missing file: nothing to make anything of; the one over the bound: not held.
    assert sorted(seen, key=repr) == sorted([big, b"fetched", None], key=repr)
    order = list(names)
    artworks = [n for n in order if "/artworks/" in n]
    assert artworks == [f"bag/data/artworks/{n}.png" for n in ("big", "fetched", "over")]
    # Each made file after the entry it was made of.
    for artwork, sums in (("big", len(big)), ("fetched", len(b"fetched"))):
        made_at = order.index(f"bag/data/sums/{sums}.txt")
        assert made_at > order.index(f"bag/data/artworks/{artwork}.png")
        assert names[f"bag/data/sums/{sums}.txt"] == str(sums).encode()
    assert len(order) == 5
    assert [a for a in added if a > 0] == [1, 2, 3] and added.count(-2) == 2
    assert sorted(skipped) == [(-1, "too_big"), (4, "file_missing")]


def test_a_palette_is_made_of_the_artwork_written(tmp_path: Path) -> None:
    img = Image.new("RGBA", (3, 1))
    img.putdata([(1, 2, 3, 255), (0, 0, 0, 0), (250, 251, 252, 255)])
    many = Image.new("RGB", (300, 1))
    many.putdata([(i % 256, i // 256, 0) for i in range(300)])
    (tmp_path / "a.png").write_bytes(_encoded([img]))
    entries = [
        Entry(
            5,
            "p/data/artworks/a.png",
            path=tmp_path / "a.png",
            derived=palette_of(5, "artworks/a.png", "palettes/a", "Sprite (a)"),
        ),
        Entry(
            6,
            "p/data/artworks/b.png",
            data=_encoded([many]),
            derived=palette_of(6, "artworks/b.png", "palettes/b", "b"),
        ),
        Entry(
            7,
            "p/data/artworks/c.png",
            data=b"not an image",
            derived=palette_of(7, "artworks/c.png", "palettes/c", "c"),
        ),
    ]
    names, added, skipped = _zip(tmp_path, entries)
    assert names["p/data/palettes/a.hex"] == b"010203\nfafbfc\n"
    assert names["p/data/palettes/a.gpl"].startswith(b"GIMP Palette\nName: Sprite (a)\n")
    assert not any(n.startswith(("p/data/palettes/b", "p/data/palettes/c")) for n in names)
    palette = entry_id(5, "palette")
    assert [a for a in added if a > 0] == [5, 6, 7] and added.count(palette) == 2
    assert sorted(skipped) == sorted(
        [(entry_id(6, "palette"), "too_many_colours"), (entry_id(7, "palette"), "undecodable")]
    )


async def test_a_fetched_artwork_gets_its_palette_from_the_bytes_fetched(tmp_path: Path) -> None:
    key = uuid.uuid4()
    shard = host_shard(key)
    image = _encoded([Image.new("RGB", (2, 2), (7, 8, 9))])
    stored = tmp_path / "store" / shard / f"{key}.png"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(image)
    artwork = Artwork(
        post_id=9,
        sqid="k9",
        title="Nine",
        description=None,
        created_at=datetime.now(UTC),
        width=2,
        height=2,
        frame_count=1,
        hashtags=[],
        storage_shard=shard,
        storage_key=key,
        fmt="png",
        palette="palettes/k9",
    )
    fetch = object_fetcher(LocalStore(tmp_path / "store"))
    names, added, skipped = _zip(tmp_path, await fetch(artwork))
    assert names == {
        "artworks/k9.png": image,
        "palettes/k9.hex": b"070809\n",
        "palettes/k9.gpl": b"GIMP Palette\nName: Nine (k9)\nColumns: 16\n#\n  7   8   9\t070809\n",
    }
    assert added == [9, entry_id(9, "palette"), entry_id(9, "palette")] and skipped == []
