"""Turns at the pool for stream openings (pmd_service/sse/pool_turns.py): first come, first
served, and a waiter that gives up never takes a turn from another."""

from __future__ import annotations

import asyncio

from pmd_service.sse.pool_turns import Turns


async def enter(
    turns: Turns, name: str, inside: list[str], until: asyncio.Event | None = None
) -> None:
    """Take a turn, note `name` in `inside`, and keep the turn until `until` is set."""
    async with turns:
        inside.append(name)
        if until is not None:
            await until.wait()


async def test_turns_are_handed_on_in_arrival_order() -> None:
    turns = Turns(1)
    order: list[str] = []
    hold = asyncio.Event()
    tasks = [
        asyncio.create_task(enter(turns, n, order, hold if n == "0" else None)) for n in "01234"
    ]
    await asyncio.sleep(0.01)
    assert order == ["0"] and turns.waiting == 4
    hold.set()
    await asyncio.gather(*tasks)
    assert order == list("01234")
    assert turns.waiting == 0


async def test_a_cancelled_waiter_is_skipped_and_a_cancelled_holder_frees_its_turn() -> None:
    turns = Turns(1)
    inside: list[str] = []
    release = asyncio.Event()
    first, gives_up, last = (
        asyncio.create_task(enter(turns, name, inside, release))
        for name in ("first", "gives up", "last")
    )
    await asyncio.sleep(0.01)
    gives_up.cancel()
    await asyncio.sleep(0.01)
    first.cancel()  # the holder itself: its turn goes to the next still waiting
    await asyncio.sleep(0.01)
    assert inside == ["first", "last"]
    release.set()
    await last
    # Every turn is back: two at once now enter without waiting.
    async with turns:
        assert turns.waiting == 0


async def test_a_turn_handed_to_a_waiter_as_it_is_cancelled_goes_to_the_next() -> None:
    turns = Turns(1)
    got: list[str] = []
    await turns.__aenter__()  # held here
    victim = asyncio.create_task(enter(turns, "victim", got))
    after = asyncio.create_task(enter(turns, "after", got))
    await asyncio.sleep(0.01)
    await turns.__aexit__(None, None, None)  # the turn goes to `victim`'s future...
    victim.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(victim, return_exceptions=True)
    await asyncio.wait_for(after, 5)
    assert got == ["after"]
