"""Proxy mode's slots give glibc's free pages back once the last download has ended and the
store client's threads have freed what it held (pmd_service/api/download_slots.py)."""

from __future__ import annotations

import asyncio

import pytest

from pmd_service.api import download_slots
from pmd_service.api.download_slots import ProxySlots
from tests.helpers import eventually


async def test_the_trim_runs_after_the_last_download_ended_and_not_while_one_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []
    real = download_slots.RELEASE_FREE_MEMORY

    def trim() -> None:
        trims.append(slots.active)
        if real is not None:
            real()

    monkeypatch.setattr(download_slots, "RELEASE_FREE_MEMORY", trim)
    slots = ProxySlots(4, 4)
    with slots.hold(1), slots.hold(2):
        pass
    # Not as the last one ends: the store client's threads free its connection and buffers
    # a moment later, and a trim before that left them resident (docs/reliability.md).
    assert trims == []
    with slots.hold(1):  # a download started meanwhile: nothing is trimmed under it
        await asyncio.sleep(download_slots.TRIM_DELAY_SECONDS * 2)
        assert trims == []

    async def trimmed() -> bool:
        return bool(trims)

    await eventually(trimmed, 30, "the trim after the last download ended")
    await asyncio.sleep(download_slots.TRIM_DELAY_SECONDS * 2)
    assert trims == [0]  # once, with nothing streaming
