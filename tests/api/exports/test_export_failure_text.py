"""A failed export shows its code's fixed sentence, whatever text its row holds."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from support.seeding import Factory
from tests.api.exports.test_exports import get_export

Client = TestClient[Any, Any]

# Text an older release or a crash left in a row: never shown to the person.
STORED = "OSError(28, 'No space left on device') writing part 3"


async def test_a_failed_export_shows_its_codes_sentence_not_the_rows_text(
    ex_client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner = await factory.user()
    failures = {"no_posts": HostCode.NO_POSTS, None: HostCode.INTERNAL}
    made: dict[str, HostCode] = {}
    for stored_code, code in failures.items():
        export_id = await pool.fetchval(
            "INSERT INTO exports (user_id, user_sqid, part_bytes, status, error_code,"
            " error_message, completed_at) VALUES ($1, $2, 65536, 'failed', $3, $4, now())"
            " RETURNING id",
            owner.id,
            owner.sqid,
            stored_code,
            STORED,
        )
        made[str(export_id)] = code
    listed = await (await ex_client.get("/api/pmd/exports", headers=owner.auth)).json()
    shown = {i["id"]: i for i in listed["items"]}
    assert set(shown) == set(made)
    for export_id, code in made.items():
        item = await get_export(ex_client, owner, export_id)
        for seen in (item, shown[export_id]):
            assert (seen["error_code"], seen["error_message"]) == (code, ITEM_SENTENCES[code])
