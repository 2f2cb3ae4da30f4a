"""What a download's item and its download answer while it is not ready: a request still being
built is the host's 400 `bdr_not_ready`, and a failed one shows its code's fixed sentence,
whatever text its row holds."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from support.seeding import Factory, bdr_row
from tests.helpers import assert_problem, fetch_item, requested, step

Client = TestClient[Any, Any]

# Text an older release or a crash left in a row: never shown to the person.
STORED = "KeyError('storage_key') in zipbuild at line 42"


async def test_a_download_still_processing_is_the_hosts_400_not_ready(
    client: Client, factory: Factory
) -> None:
    owner, _, [item] = await requested(client, factory)
    await step(factory.pool, item["id"])
    assert (await fetch_item(client, owner, item["id"]))["status"] == "processing"
    resp = await client.get(f"/api/pmd/bdr/{item['id']}/download", headers=owner.auth)
    body = await assert_problem(resp, 400, "bdr_not_ready")
    assert body["details"]["status"] == "processing"


async def test_a_failed_download_shows_its_codes_sentence_not_the_rows_text(
    client: Client, factory: Factory
) -> None:
    owner, [post] = await factory.owner_and_posts(1)
    failures = {
        "no_posts": HostCode.NO_POSTS,
        "user_not_found": HostCode.USER_NOT_FOUND,
        None: HostCode.INTERNAL,  # a row of a release before codes were stored
    }
    made: dict[uuid.UUID, HostCode] = {}
    for stored_code, code in failures.items():
        bdr_id = await bdr_row(
            factory.pool,
            owner.id,
            [post.id],
            status="failed",
            error_code=stored_code,
            error_message=STORED,
        )
        made[bdr_id] = code
    listed = (await (await client.get("/api/pmd/bdr", headers=owner.auth)).json())["items"]
    shown = {uuid.UUID(i["id"]): i for i in listed}
    assert set(shown) == set(made)
    for bdr_id, code in made.items():
        item = await fetch_item(client, owner, str(bdr_id))
        for seen in (item, shown[bdr_id]):
            assert (seen["error_code"], seen["error_message"]) == (code, ITEM_SENTENCES[code])
