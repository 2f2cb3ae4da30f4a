"""Each export part's `index.html` (issue 45): a tag file at the bag's top level, listed in the
tag manifest, showing the part's artworks (image, title, date, license, tags, hidden state,
comments and reactions) with no script and every `src`/`href` inside the extracted bag.
Real PostgreSQL and Redis; the worker is arq's, in burst mode; bags validated by bagit-python.
The page in Chromium: tests/browser/test_export_gallery_browser.py."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from support.seeding import Factory
from tests.exports import exported_parts, seeded
from tests.helpers import Client

KIB = 1024


class Page(HTMLParser):
    """Every tag, every URL attribute, and the text, of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.images: list[str] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data") and value is not None:
                self.urls.append((tag, name, value))
            if name.startswith("on"):
                self.urls.append((tag, name, value or ""))  # an event handler is a script
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.styles if self._in_style else self.text).append(data)


@pytest.fixture
def small(small: Settings) -> Settings:
    """Parts of ~2 artworks: the gallery of each part shows its own, and names the others."""
    return replace(small, export_part_bytes=68 * KIB)


async def test_every_part_has_a_self_contained_gallery(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner, posts = await seeded(factory, pool, small)
    item, folders = await exported_parts(ex_client, owner, small, tmp_path)  # bags validated
    assert len(folders) >= 2
    shown: list[str] = []
    for number, folder in enumerate(folders, start=1):
        index = folder / "index.html"
        assert index.is_file()
        tagmanifest = (folder / "tagmanifest-sha256.txt").read_text()
        assert any(line.endswith("  index.html") for line in tagmanifest.splitlines())
        assert "index.html" not in (folder / "manifest-sha256.txt").read_text()  # a tag file

        page = Page()
        page.feed(index.read_text(encoding="utf-8"))
        assert "script" not in page.tags and "iframe" not in page.tags and "link" not in page.tags
        style = "".join(page.styles)
        assert "image-rendering: pixelated" in style
        assert "url(" not in style and "@import" not in style
        root = folder.resolve()
        for tag, attribute, value in page.urls:
            assert not attribute.startswith("on"), (tag, attribute)
            parts = urlsplit(value)
            assert not parts.scheme and not parts.netloc, value  # no http:, file:, //host
            target = (folder / unquote(parts.path)).resolve()
            assert target.is_relative_to(root), value
            assert target.is_file(), value

        meta = json.loads((folder / "data" / "metadata.json").read_text())
        expected = [f"data/artworks/{a['filename']}" for a in meta["artworks"]]
        assert page.images == expected  # every artwork of the part, in order, and only those
        shown += [a["sqid"] for a in meta["artworks"]]
        text = " ".join(page.text)
        assert f"part {number} of {len(folders)}" in text
        others = [
            f"makapix-export-{item['id'][:8]}-part-{n}-of-{len(folders)}.zip"
            for n in range(1, len(folders) + 1)
            if n != number
        ]
        assert all(name in text for name in others)
        for a in meta["artworks"]:
            assert a["title"] in text
            assert all(f"#{tag}" in text for tag in a["hashtags"])
            if a["license"]:
                assert f"license: {a['license']}" in text
        if posts[1].sqid in [a["sqid"] for a in meta["artworks"]]:
            assert "Hidden by you" in text and "A small one" in text
        if posts[3].sqid in [a["sqid"] for a in meta["artworks"]]:
            assert "Hidden by a moderator" in text
        if posts[0].sqid in [a["sqid"] for a in meta["artworks"]]:
            assert "12 comments (the newest 10; all in data/comments.json)" in text
            assert "comment 11 <b>bold?</b>" in text and "comment 1 <b>" not in text
            assert "🔥 2" in text
        if posts[5].sqid in [a["sqid"] for a in meta["artworks"]]:
            assert ("a", "href", f"data/layers/{posts[5].sqid}.mkpx") in page.urls
    # Every exported artwork is shown once; the one whose file is lost is not.
    assert sorted(shown) == sorted(p.sqid for p in posts[:-1])
