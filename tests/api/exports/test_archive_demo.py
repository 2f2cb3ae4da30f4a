"""The demo's gallery (`python -m pmd_service demo`, as a newcomer's first run seeds it) exported
as an archive, unpacked and read as PostyBirb+ reads a folder and as Sharkey finds media: every
post of the demo artist that the page shows goes in, each with its image, its files and its
palette, and nothing else."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from pytest_aiohttp import AiohttpClient

from pmd_service.core.migrate import apply_migrations, create_host_tables
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.dev.demo import load_demo
from pmd_service.dev.demo_user import DEMO_HANDLE
from pmd_service.host.tokens import mint_token
from pmd_service.web.app import create_app
from support.seeding import UserRow
from support.stack import connected
from tests.api.exports.test_archive_layout import MEDIA, notes_of, parts_of, postybirb
from tests.conftest import TestDatabase as ServiceDatabase
from tests.exports import ready_export
from tests.helpers import as_role, direct, grant_role

DEMO_POSTS = 12


@pytest.fixture
async def demo_site(
    empty_db: str, test_database: ServiceDatabase, small: Settings
) -> tuple[Settings, UserRow]:
    """A database of the standalone host tables holding the demo, the service's migrations
    applied, as `make run` makes it: its settings and the demo artist."""
    db = test_database
    async with connected(empty_db) as conn:
        await create_host_tables(conn)
        await grant_role(conn, db.role, db.password)
    service_url = as_role(empty_db, db.role, db.password)
    async with connected(service_url) as conn:
        await apply_migrations(conn)
    settings = direct(small, service_url)
    async with connected(empty_db, "pmd-test") as conn:  # as the demo command connects
        ids = PublicIds(settings.sqids_alphabet)
        sqid = await load_demo(conn, settings.vault_path, ids, count=DEMO_POSTS)
        assert sqid is not None
        user_id = await conn.fetchval("SELECT id FROM users WHERE public_sqid = $1", sqid)
    return settings, UserRow(user_id, sqid, DEMO_HANDLE, mint_token(settings.jwt_secret_key, sqid))


async def test_the_demos_archive_reads_as_postybirb_and_sharkey_read_it(
    aiohttp_client: AiohttpClient,
    demo_site: tuple[Settings, UserRow],
    redis_clean: None,
    tmp_path: Path,
) -> None:
    settings, artist = demo_site
    client = await aiohttp_client(create_app(settings))
    item = await ready_export(client, settings, artist, layout="activitypub")
    async with connected(settings.database_url) as conn:
        artworks = await conn.fetch(
            "SELECT id, public_sqid FROM posts WHERE owner_id = $1 AND kind = 'artwork' "
            "AND NOT deleted_by_user",
            artist.id,
        )
    assert item["artwork_count"] == len(artworks) > 0
    no_palette = {s["post_id"] for s in item["skipped"] if s.get("file") == "palette"}
    sqids = {r["public_sqid"]: r["id"] for r in artworks}
    taken: list[str] = []
    for number, archive in enumerate(await parts_of(client, artist, item), start=1):
        names = set(archive.namelist())
        # Sharkey: each attachment found by the last segment of its url, an entry of the zip.
        urls = [a["url"] for note in notes_of(archive) for a in note["attachment"]]
        segments = [PurePosixPath(url).name for url in urls]
        assert len(segments) == len(set(segments)) and set(urls) <= names
        assert all(MEDIA.fullmatch(url) for url in urls)
        folder = tmp_path / f"part-{number}"
        archive.extractall(folder)
        for note in postybirb(folder):
            assert note["files"] and all(f.is_file() for f in note["files"])
            # The image first, then (where the demo drew one) its layers file, then the palette.
            sqid = note["url"].rpartition("/")[2]
            suffixes = [f.suffix for f in note["files"]]
            assert suffixes[0] in (".png", ".gif", ".webp", ".bmp"), suffixes
            assert (suffixes[-2:] == [".hex", ".gpl"]) == (sqids[sqid] not in no_palette)
            taken.append(sqid)
        assert archive.testzip() is None
    skipped = {s["post_id"] for s in item["skipped"] if "file" not in s}
    assert not skipped
    assert sorted(taken) == sorted(sqids)
