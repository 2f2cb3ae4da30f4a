"""An artwork's working files beside its image (its `.mkpx` layers file, its upscaled copy, its
palette), each an entry of its own under an id no post has (negative, the kind in its low bits),
which `split` sorts back out of the builder's lists."""

from __future__ import annotations

import dataclasses
import logging
import posixpath
from dataclasses import dataclass

from ..host.vault import relative_layers_path, relative_upscaled_path
from .build import BuildResult, Deriving, Entry
from .outcome import Kind, SkipReason
from .palette import PaletteError, colours, gpl_file, hex_file

log = logging.getLogger(__name__)

_KINDS: tuple[Kind, ...] = ("layers", "upscaled", "palette")
_SLOTS = 4  # room for the kinds in an entry id's low bits
# Where a working file goes: a BDR keeps the layers beside the image, a bag a folder a kind.
BDR_FOLDERS: dict[Kind, str] = {"layers": "artworks", "upscaled": "upscaled", "palette": "palettes"}
BAG_FOLDERS: dict[Kind, str] = {"layers": "layers", "upscaled": "upscaled", "palette": "palettes"}
# An artwork file larger than this is not held to read its palette (it has none: `undecodable`).
PALETTE_MAX_BYTES = 16 << 20
_SUFFIXES: dict[Kind, str] = {"layers": "mkpx", "upscaled": "webp"}
# Not a failure: most posts have no upscaled copy; an absent one is left out, not listed.
_OPTIONAL: frozenset[Kind] = frozenset({"upscaled"})


@dataclass(frozen=True)
class WorkingFile:
    kind: Kind
    arcname: str  # relative to the ZIP's (or the bag's data/) root


@dataclass(frozen=True)
class Wanted:
    """Which working files a request asks for, and in which layout."""

    layers: bool = False
    upscaled: bool = False
    palettes: bool = False
    folders: dict[Kind, str] | None = None

    def for_post(self, sqid: str, has_layers: bool) -> tuple[WorkingFile, ...]:
        folders = self.folders or BDR_FOLDERS
        asked: dict[Kind, bool] = {"layers": self.layers and has_layers, "upscaled": self.upscaled}
        return tuple(
            WorkingFile(k, f"{folders[k]}/{sqid}.{_SUFFIXES[k]}") for k, on in asked.items() if on
        )

    def palette_for(self, sqid: str) -> str | None:
        """Where the post's palette goes (`{it}.hex`, `{it}.gpl`), when one is asked for."""
        return f"{(self.folders or BDR_FOLDERS)['palette']}/{sqid}" if self.palettes else None


NONE = Wanted()


def relative_path(kind: Kind, storage_shard: str | None, storage_key: object) -> str:
    """Where the host keeps it, relative to the vault."""
    if kind == "layers":
        return relative_layers_path(storage_shard, str(storage_key))
    return relative_upscaled_path(storage_shard, str(storage_key))


def entry_id(post_id: int, kind: Kind) -> int:
    return -(post_id * _SLOTS + 1 + _KINDS.index(kind))


def _decode(entry: int) -> tuple[int, Kind] | None:
    if entry >= 0:
        return None
    post_id, slot = divmod(-entry, _SLOTS)
    return post_id, _KINDS[slot - 1]


def palette_of(post_id: int, artwork_arcname: str, palette: str, name: str) -> Deriving:
    """The artwork's palette, made from its bytes as they are written: `{palette}.hex` and
    `.gpl`, or one skipped entry saying why there is none (never a failed build)."""
    entry = entry_id(post_id, "palette")
    stem = posixpath.relpath(palette, posixpath.dirname(artwork_arcname))

    def none(why: SkipReason) -> list[Entry]:
        return [Entry(entry, f"{stem}.hex", skip_reason=why)]

    def make(data: bytes | None) -> list[Entry]:
        if data is None:
            log.info("post %s: no palette: its file is over %d bytes", post_id, PALETTE_MAX_BYTES)
            return none("undecodable")
        try:
            found = colours(data)
        except PaletteError as exc:
            log.info("post %s: no palette: %s", post_id, exc)
            return none("undecodable")
        if found is None:
            return none("too_many_colours")
        return [
            Entry(entry, f"{stem}.hex", data=hex_file(found)),
            Entry(entry, f"{stem}.gpl", data=gpl_file(name, found)),
        ]

    return Deriving(make, PALETTE_MAX_BYTES)


def _files(kind: Kind, arcname: str) -> dict[str, str]:
    """A working file's roles in metadata.json's `files`: a palette is its two files."""
    if kind == "palette":
        return {"palette": f"{arcname}.hex", "gimp_palette": f"{arcname}.gpl"}
    return {kind: arcname}


@dataclass
class Outcome:
    """The working files of a build: added (post id -> {role: arcname}) and skipped ones."""

    added: dict[int, dict[str, str]]
    skipped: list[tuple[int, Kind, str]]  # (post id, kind, reason)


def split(
    added: list[int],
    skipped: list[tuple[int, str]],
    arcnames: dict[tuple[int, Kind], str],
) -> tuple[list[int], list[tuple[int, str]], Outcome]:
    """The builder's lists, sorted back: the artworks' own, and the working files'."""
    outcome = Outcome({}, [])
    for post_id, kind in filter(None, map(_decode, added)):
        outcome.added.setdefault(post_id, {}).update(_files(kind, arcnames[post_id, kind]))
    for entry, reason in skipped:
        decoded = _decode(entry)
        if decoded and not (decoded[1] in _OPTIONAL and reason == "file_missing"):
            outcome.skipped.append((*decoded, reason))
    posts = [entry for entry in added if _decode(entry) is None]
    return posts, [(e, why) for e, why in skipped if _decode(e) is None], outcome


def sorted_out(
    result: BuildResult, arcnames: dict[tuple[int, Kind], str]
) -> tuple[BuildResult, Outcome]:
    """A build's result with the artworks' lists only, and its working files apart."""
    posts, post_skips, outcome = split(result.added, result.skipped, arcnames)
    return dataclasses.replace(result, added=posts, skipped=post_skips), outcome
