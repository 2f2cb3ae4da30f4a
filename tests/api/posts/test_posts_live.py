"""Posts that change live: every bulk action and undo that changes posts is a `posts_changed`
event on the stream, in commit order with the BDR and export events, resumed and replayed as
they are, scoped as they are (the user's stream, and a moderator's stream of the user)."""

from __future__ import annotations

import aiohttp
import asyncpg
from pytest_aiohttp import AiohttpClient

from pmd_service.features.posts.live import MOST_IDS, announce_new
from support.seeding import Factory, UserRow
from support.sse import SSE, Message, Stream, open_stream
from tests.helpers import (
    Client,
    Serve,
    Served,
    act,
    assert_problem,
    event_ids,
    insert_bdr,
    ok,
    step,
)


async def _changed(stream: Stream, within: float = 15) -> Message:
    """The stream's next `posts_changed` (pings dropped; any other event fails the test)."""
    messages = await stream.until(lambda m: m.event is not None, within)
    assert messages[-1].event == "posts_changed", [(m.event, m.data) for m in messages]
    assert messages[-1].id is not None
    return messages[-1]


async def _own_hide(client: Client, user: UserRow, post_ids: list[int]) -> None:
    """A change of `user`'s own posts: the marker that a stream saw nothing before it."""
    await ok(client, user, "hide", post_ids)


async def test_a_bulk_action_reaches_its_owners_streams_and_no_one_elses(
    served: Served, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server, client = served
    url = str(server.make_url(SSE))
    user, other = await factory.user(), await factory.user()
    ids = await factory.posts_bulk(user, 4)
    others = await factory.posts_bulk(other, 2)
    async with (
        open_stream(session, url, user.auth) as first_tab,
        open_stream(session, url, user.auth) as second_tab,
        open_stream(session, url, other.auth) as theirs,
    ):
        for stream in (first_tab, second_tab, theirs):
            await stream.opening()
        await ok(client, user, "hide", ids[:2])
        for stream in (first_tab, second_tab):
            change = await _changed(stream)
            assert change.json() == {"post_ids": ids[:2], "changed_count": 2, "action": "hide"}
        assert first_tab.last_event_id == second_tab.last_event_id

        # Only the posts that changed are named; a batch that changes nothing, or is
        # refused, is no event (the next event each stream sees is the next change).
        await ok(client, user, "hide", ids)
        assert (await _changed(first_tab)).json()["post_ids"] == ids[2:]
        await ok(client, user, "hide", ids)
        await assert_problem(await act(client, user, "delete", [*ids, *others]), 400)
        await ok(client, user, "delete", ids[:1])
        deleted = (await _changed(first_tab)).json()
        assert (deleted["action"], deleted["post_ids"]) == ("delete", ids[:1])

        # The other user's stream saw none of it: its first event is its own change.
        await _own_hide(client, other, others)
        assert (await _changed(theirs)).json()["post_ids"] == others


async def test_an_undo_is_an_event(
    served: Served, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server, client = served
    user, ids = await factory.owner_and_bulk(3)
    resp = await act(client, user, "hide", ids)
    undo = (await resp.json())["undo"]
    async with open_stream(session, str(server.make_url(SSE)), user.auth) as stream:
        await stream.opening()
        resp = await client.post(undo, headers=user.auth)
        assert resp.status == 200, await resp.text()
        change = await _changed(stream)
        assert change.json() == {"post_ids": ids, "changed_count": 3, "action": "undo"}


async def test_an_action_on_many_posts_says_only_how_many(
    served: Served, session: aiohttp.ClientSession, factory: Factory, pool: asyncpg.Pool
) -> None:
    server, client = served
    user = await factory.user()
    many = MOST_IDS + 1
    await factory.posts_bulk(user, many)
    async with open_stream(session, str(server.make_url(SSE)), user.auth) as stream:
        await stream.opening()
        body = {"action": "hide", "filter": {"hidden": False}, "expect_count": many}
        resp = await client.post("/api/pmd/action", json=body, headers=user.auth)
        assert resp.status == 200, await resp.text()
        change = await _changed(stream)
        assert change.json() == {"post_ids": None, "changed_count": many, "action": "hide"}
        # And the undo of it too.
        resp = await client.post((await resp.json())["undo"], headers=user.auth)
        assert resp.status == 200, await resp.text()
        assert (await _changed(stream)).json() == {
            "post_ids": None,
            "changed_count": many,
            "action": "undo",
        }
    # What the events table keeps stays small whatever the action.
    size = await pool.fetchval(
        "SELECT max(pg_column_size(payload)) FROM stream_events WHERE payload->>'kind' = 'posts'"
    )
    assert 0 < size < 200


async def test_a_resume_replays_posts_events_in_order_with_the_others(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory, aiohttp_client: AiohttpClient
) -> None:
    server = await serve()
    client: Client = await aiohttp_client(server)
    url = str(server.make_url(SSE))
    user, other = await factory.user(), await factory.user()
    ids = await factory.posts_bulk(user, 3)
    others = await factory.posts_bulk(other, 1)
    bdr = await insert_bdr(factory.pool, user)
    async with open_stream(session, url, user.auth) as stream:
        opening = await stream.opening()
    last = int(opening[-1].id or 0)

    # While away: the user's download progresses, their posts change, another user's too.
    await step(factory.pool, bdr)
    await ok(client, user, "hide", ids[:1])
    await ok(client, other, "hide", others)
    await step(factory.pool, bdr)
    await ok(client, user, "hide", ids[1:])
    download_events = await event_ids(factory.pool, user, after=last)
    assert len(download_events) == 2

    # From the hub's memory (this server read them), then from the table (a server started
    # after them holds none): the same events, in order.
    for answering in (server, await serve()):
        answering_url = str(answering.make_url(SSE))
        resumed = user.auth | {"Last-Event-ID": str(last)}
        async with open_stream(session, answering_url, resumed) as stream:
            opening = await stream.opening()
        missed = opening[1:-1]
        assert [m.event for m in missed] == [
            "bdr_update",
            "posts_changed",
            "bdr_update",
            "posts_changed",
        ]
        assert [m.json()["post_ids"] for m in missed if m.event == "posts_changed"] == [
            ids[:1],
            ids[1:],
        ]
        numbers = [int(m.id or 0) for m in missed]
        assert numbers == sorted(numbers) and numbers[0] > last
        assert [n for m, n in zip(missed, numbers, strict=True) if m.event == "bdr_update"] == (
            download_events
        )
        assert opening[-1].json() == {"resumed": True} and opening[-1].id == str(numbers[-1])


async def test_a_moderators_stream_of_a_user_sees_the_users_posts_change(
    served: Served, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server, client = served
    url = str(server.make_url(SSE))
    mod, user, ids = await factory.caller_and_posts(2, roles=["moderator"])
    own = await factory.posts_bulk(mod, 1)
    async with (
        open_stream(session, url, mod.auth, {"target_sqid": user.sqid}) as watching,
        open_stream(session, url, user.auth) as users,
        open_stream(session, url, mod.auth) as mods_own,
    ):
        for stream in (watching, users, mods_own):
            await stream.opening()
        await ok(client, mod, "hide", ids[:1], target_sqid=user.sqid)
        for stream in (watching, users):
            change = (await _changed(stream)).json()
            assert (change["action"], change["post_ids"]) == ("hide", ids[:1])
        await ok(client, user, "hide", ids[1:])
        assert (await _changed(watching)).json()["post_ids"] == ids[1:]
        # The moderator's own stream is of the moderator's own posts.
        await _own_hide(client, mod, own)
        assert (await _changed(mods_own)).json()["post_ids"] == own


async def test_an_event_of_a_kind_this_release_does_not_know_is_skipped(
    serve: Serve, served: Served, session: aiohttp.ClientSession, factory: Factory
) -> None:
    """A later release's events, during a rolling deploy: neither the live stream nor a resume
    (from memory or from the table) fails on one."""
    server, client = served
    url = str(server.make_url(SSE))
    user, ids = await factory.owner_and_bulk(2)
    async with open_stream(session, url, user.auth) as stream:
        await stream.opening()
        await ok(client, user, "hide", ids[:1])
        last = (await _changed(stream)).id
        await factory.pool.execute(
            "INSERT INTO stream_events (subject_id, user_id, payload)"
            """ VALUES (gen_random_uuid(), $1, '{"kind": "later", "n": 1}')""",
            user.id,
        )
        await ok(client, user, "hide", ids[1:])
        assert (await _changed(stream)).json()["post_ids"] == ids[1:]
    # From the hub's memory, then from the table (a server started after the events).
    resumed = user.auth | {"Last-Event-ID": str(last)}
    for answering in (server, await serve()):
        async with open_stream(session, str(answering.make_url(SSE)), resumed) as stream:
            opening = await stream.opening()
        assert [m.event for m in opening[1:]] == ["posts_changed", "connected"]
        assert opening[1].json()["post_ids"] == ids[1:]


async def test_added_posts_are_announced_to_their_owner_and_moderators_and_replayed(
    served: Served, session: aiohttp.ClientSession, factory: Factory
) -> None:
    """Posts the service did not add through an action (the demo's `--posts`) are a
    `posts_changed` of action `new`, scoped and resumed as every other."""
    server, client = served
    url = str(server.make_url(SSE))
    mod, user, ids = await factory.caller_and_posts(1, roles=["moderator"])
    other = await factory.user()
    others = await factory.posts_bulk(other, 1)
    async with (
        open_stream(session, url, user.auth) as users,
        open_stream(session, url, mod.auth, {"target_sqid": user.sqid}) as watching,
        open_stream(session, url, other.auth) as theirs,
    ):
        for stream in (users, watching, theirs):
            await stream.opening()
        await _own_hide(client, user, ids)
        last = (await _changed(users)).id
        await _changed(watching)
        added = await factory.posts_bulk(user, 3)
        async with factory.pool.acquire() as conn, conn.transaction():
            assert await announce_new(conn, user.id, added)
        for stream in (users, watching):
            change = await _changed(stream)
            assert change.json() == {"post_ids": added, "changed_count": 3, "action": "new"}
        # The other user's stream saw none of it: its first event is its own change.
        await _own_hide(client, other, others)
        assert (await _changed(theirs)).json()["post_ids"] == others
    async with open_stream(session, url, user.auth | {"Last-Event-ID": str(last)}) as stream:
        opening = await stream.opening()
    assert [(m.event, m.json()["action"]) for m in opening[1:-1]] == [("posts_changed", "new")]
