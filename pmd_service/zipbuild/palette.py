"""An artwork's palette as the two files pixel art editors import, Lospec's `.hex` and GIMP's
`.gpl` (Aseprite, Pixelorama, Krita); images can be hostile, so only bounded pixels of the host's
formats are decoded. Called on the build thread, never the event loop."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

from PIL import Image

MAX_COLOURS = 256
# Beyond these the image is refused unread: a frame's RGBA copies stay within tens of MB.
MAX_FRAME_PIXELS = 2048 * 2048
MAX_PIXELS = 16 * MAX_FRAME_PIXELS  # every frame of an animation together
# The host's artwork formats (host/vault.py), as Pillow names its decoders.
FORMATS = ("PNG", "GIF", "WEBP", "BMP")
GPL_COLUMNS = 16
# Modes whose raw values count as they are, and as many as are counted before converting.
_RAW_MODES = ("P", "L", "LA", "PA", "RGB", "RGBA")
RAW_VALUES = 16 * MAX_COLOURS
# Fully transparent -> 0, any other alpha -> 255: a pixel either shows its colour or nothing.
_SHOWN = [0] + [255] * 255
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class PaletteError(ValueError):
    """The image could not be decoded within the limits above (not an image, damaged, too big)."""


def colours(image: bytes) -> tuple[str, ...] | None:
    """The image's distinct colours as lowercase `rrggbb`, the most used first (every frame's
    pixels; a tie by the colour), fully transparent ones left out; None past MAX_COLOURS."""
    try:
        with Image.open(io.BytesIO(image), formats=FORMATS) as img:
            return _colours(img)
    except PaletteError:
        raise
    except Exception as exc:  # Pillow raises many kinds for a damaged or hostile file
        raise PaletteError(f"undecodable image ({type(exc).__name__})") from exc


def _colours(img: Any) -> tuple[str, ...] | None:
    width, height = img.size
    frames = getattr(img, "n_frames", 1)
    if width * height > MAX_FRAME_PIXELS or width * height * frames > MAX_PIXELS:
        raise PaletteError(f"{width}x{height} pixels, {frames} frame(s): over the limit")
    used: dict[bytes, int] = {}  # pixels of each colour shown
    for index in range(frames):
        img.seek(index)
        counted = _counted(img)
        if counted is None:
            return None
        for n, colour in counted:
            if len(colour) == 3 or colour[3]:
                used[bytes(colour[:3])] = used.get(bytes(colour[:3]), 0) + n
        if len(used) > MAX_COLOURS:
            return None
    return tuple(c.hex() for c in sorted(used, key=lambda c: (-used[c], c)))


def _counted(frame: Any) -> list[tuple[int, tuple[int, ...]]] | None:
    """(pixels, shown colour) of the frame, counted in C: its raw values (indices, grey levels,
    colours) first and only those few made shown colours, as converting every pixel costs more
    than decoding it."""
    raw = frame.getcolors(RAW_VALUES) if frame.mode in _RAW_MODES else None
    if raw is None:  # many values, or a mode counted only once converted
        counted: list[tuple[int, tuple[int, ...]]] | None = _shown(frame).getcolors(
            MAX_COLOURS + 1  # one more: the transparent pixel
        )
        return counted
    sample = frame.crop((0, 0, len(raw), 1))  # the frame's mode, palette and transparency
    sample.putdata([value for _, value in raw])
    data = sample.convert("RGBA").tobytes()  # any alpha but 0 is shown, as `_shown` says
    return [(n, tuple(data[i * 4 : i * 4 + 4])) for i, (n, _) in enumerate(raw)]


def _shown(frame: Any) -> Any:
    """The frame as RGB, or with transparency as RGBA, each pixel opaque or (0, 0, 0, 0)."""
    if frame.mode not in ("RGBA", "LA", "PA", "La") and "transparency" not in frame.info:
        return frame.convert("RGB")
    rgba = frame.convert("RGBA")
    alpha = rgba.getchannel("A").point(_SHOWN)
    rgba.putalpha(alpha)
    hidden = alpha.point(lambda value: 255 - value)
    rgba.paste((0, 0, 0, 0), (0, 0, *rgba.size), hidden)
    return rgba


def hex_file(colours: Sequence[str]) -> bytes:
    """Lospec's `.hex`: one `rrggbb` a line."""
    return "".join(f"{colour}\n" for colour in colours).encode()


def gpl_file(name: str, colours: Sequence[str]) -> bytes:
    """A GIMP palette (format version 2): its header, then `R G B<TAB>name` a colour."""
    title = _CONTROL.sub(" ", name).strip()[:200] or "Palette"
    lines = ["GIMP Palette", f"Name: {title}", f"Columns: {GPL_COLUMNS}", "#"]
    for colour in colours:
        red, green, blue = bytes.fromhex(colour)
        lines.append(f"{red:3d} {green:3d} {blue:3d}\t{colour}")
    return ("\n".join(lines) + "\n").encode()
