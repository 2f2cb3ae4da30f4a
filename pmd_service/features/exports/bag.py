"""A part of an export as a BagIt bag (RFC 8493), checked by any BagIt tool or `sha256sum -c`."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...storage.budget import human_bytes
from ...zipbuild.build import FileDigest, sha256sum_lines
from ...zipbuild.content import pretty_json

SOURCE_ORGANIZATION = "Makapix Club"
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


@dataclass(frozen=True)
class BagPlace:
    """Where a part stands in its export: the bag's name and `Bag-Count`."""

    export_id: uuid.UUID
    number: int
    count: int
    handle: str
    # An incremental export: the export it follows, and when that one started.
    follows: uuid.UUID | None = None
    since: datetime | None = None

    @property
    def name(self) -> str:
        return f"makapix-export-{str(self.export_id)[:8]}-part-{self.number}"


# Control characters and line separators: a tag file value never starts a line of its own.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def tag_text(value: object) -> str:
    """`value` as it may go into a tag file: on one line, whatever it holds."""
    return _CONTROL.sub("", str(value))


def _readme(place: BagPlace, artworks: int) -> bytes:
    kind = "full" if place.follows is None else "incremental"
    handle = tag_text(place.handle)
    return f"""Makapix Club: {kind} export of @{handle}, part {place.number} of {place.count}
Export {place.export_id}

Open index.html (a double-click) to browse this part's artworks in any web browser,
offline: the page needs nothing outside this folder.

This folder is a BagIt bag (RFC 8493). Its payload is under data/:
  data/artworks/    {artworks} artwork file(s), each named by its post's public id (the id in
                    its address on the site) and its format
  data/layers/      each artwork's .mkpx layers file (its editable source), when it has one
  data/upscaled/    the site's upscaled copies, when they were asked for
  data/palettes/    each artwork's colours, when it has 256 or fewer: <id>.hex, one rrggbb a
                    line (Lospec's format), and <id>.gpl, a GIMP palette (Aseprite, Pixelorama
                    and Krita import both)
  data/metadata.json   every artwork of this part: title, description, dates, size, hashtags,
                       whether it is hidden, its license; and what was skipped, and why
  data/comments.json, data/reactions.json   when they were asked for

{_incremental(place)}The other parts of the export are bags like this one; bag-info.txt names the export
(Bag-Group-Identifier) and this part's place in it (Bag-Count).

To check that this part arrived whole and unchanged, run in this folder:

    sha256sum -c manifest-sha256.txt

or, with the Library of Congress's BagIt tool (pip install bagit):

    bagit.py --validate .

To check the downloaded ZIP files themselves before unpacking them, save SHA256SUMS from the
export's page beside them and run: sha256sum -c SHA256SUMS
""".encode()


def _incremental(place: BagPlace) -> str:
    if place.follows is None or place.since is None:
        return ""
    return f"""This export is incremental: it follows export {place.follows}, made
{place.since:%Y-%m-%d %H:%M} UTC, and holds only what changed since that one started. A post
new since then, or whose artwork or layers file changed, carries its files here; a post whose
metadata alone changed (hidden or shown, tags, license, title) is listed in data/metadata.json
with "change": "metadata" and no files: its files are in the earlier export. Part 1 also holds
data/removed.json, the posts of that export that are gone since (deleted, turned into a
playlist or no longer yours). Keep it beside the earlier export's parts.

"""


def removed_json(place: BagPlace, removed: list[dict[str, Any]]) -> bytes:
    """An incremental export's `removed.json`: what it follows, and the posts gone since."""
    document = {
        "follows_export_id": str(place.follows),
        "changed_since": place.since,
        "removed_count": len(removed),
        "removed": removed,
    }
    return pretty_json(document)


def bag_closing(
    place: BagPlace, index: Callable[[set[str]], bytes], payload: list[FileDigest]
) -> list[tuple[str, bytes]]:
    """The tag files, once the payload is written; `index(payload names)`: its index.html."""
    when = datetime.now(UTC)
    root = place.name + "/"
    octets = sum(f.size for f in payload)
    artworks = sum(f.name.startswith(f"{root}data/artworks/") for f in payload)
    fields = [
        ("Source-Organization", SOURCE_ORGANIZATION),
        ("Bagging-Date", f"{when:%Y-%m-%d}"),
        ("External-Identifier", f"makapix-export-{place.export_id}-part-{place.number}"),
        (
            "External-Description",
            f"Artworks of @{place.handle}, exported from {SOURCE_ORGANIZATION}",
        ),
        ("Bag-Group-Identifier", place.export_id),
        ("Bag-Count", f"{place.number} of {place.count}"),
        ("Bag-Size", human_bytes(octets)),
        ("Payload-Oxum", f"{octets}.{len(payload)}"),
    ]
    if place.follows is not None and place.since is not None:
        fields += [
            ("Follows-Export-Identifier", place.follows),
            ("Changed-Since", f"{place.since:%Y-%m-%dT%H:%M:%SZ}"),
        ]
    info = "".join(f"{label}: {tag_text(value)}\n" for label, value in fields).encode()
    tags = [
        ("bagit.txt", BAGIT_TXT),
        ("bag-info.txt", info),
        ("manifest-sha256.txt", sha256sum_lines(payload, root)),
        ("README.txt", _readme(place, artworks)),
        ("index.html", index({f.name.removeprefix(root) for f in payload})),
    ]
    tagmanifest = b"".join(
        f"{hashlib.sha256(blob).hexdigest()}  {name}\n".encode() for name, blob in tags
    )
    return [(root + name, blob) for name, blob in [*tags, ("tagmanifest-sha256.txt", tagmanifest)]]
