"""The stream's event kinds (pmd_service/sse/kinds.py): a kind declared outside the stream is
framed, routed and replayed by its declaration alone."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pmd_service.features.registry import EVENT_KINDS as KINDS
from pmd_service.sse import replay
from pmd_service.sse.kinds import Audience, EventKind, EventKinds, UnknownKind, reaches
from pmd_service.sse.recent import RecentEvents


class Note(msgspec.Struct):
    text: str


def note(payload: Any) -> Note:
    return msgspec.convert(payload, Note)


def declared(kind: str, audience: Audience, replayed: bool = True) -> EventKind:
    return EventKind(
        kind=kind,
        event=kind.encode(),
        data=Note,
        make=note,
        audience=audience,
        summary="per note",
        replayed=replayed,
    )


NOTES = EventKinds(
    (
        declared("note", Audience.WATCHERS),
        declared("private_note", Audience.OWNER),
        declared("passing_note", Audience.WATCHERS, replayed=False),
    )
)


def test_a_row_is_framed_by_its_kind_column_not_its_payload() -> None:
    frame = NOTES.frame("note", '{"text": "hi", "kind": "posts"}', 7)
    assert frame == b'event: note\nid: 7\ndata: {"text":"hi"}\n\n'
    with pytest.raises(UnknownKind):
        NOTES.frame("bdr", '{"text": "hi"}', 8)  # another release's, or another app's


def test_an_audience_reaches_the_streams_it_names_and_an_unknown_one_none() -> None:
    assert reaches("watchers", True) and reaches("watchers", False)
    assert reaches("owner", True) and not reaches("owner", False)
    assert not reaches("moderators", True) and not reaches("moderators", False)


def test_a_resume_sends_the_replayed_kinds_the_stream_may_see() -> None:
    recent = RecentEvents()
    recent.start(10)
    for event_id, kind, audience in (
        (11, "note", "watchers"),
        (12, "private_note", "owner"),
        (13, "passing_note", "watchers"),
        (14, "later_note", "watchers"),
    ):
        recent.add(event_id, 1, kind, audience, f'{{"text": "n{event_id}"}}')

    def sent(owner: bool) -> list[bytes]:
        opening = replay.resumed_from_memory(NOTES, recent, 1, 10, owner)
        assert opening is not None
        return [line for line in opening.body.split(b"\n") if line.startswith(b"event: ")]

    assert sent(owner=True) == [b"event: note", b"event: private_note", b"event: connected"]
    assert sent(owner=False) == [b"event: note", b"event: connected"]


def test_two_kinds_never_share_a_name() -> None:
    with pytest.raises(ValueError, match="share a `kind`"):
        EventKinds((declared("note", Audience.OWNER), declared("note", Audience.WATCHERS)))


def test_the_stream_document_lists_every_kind_of_the_app() -> None:
    summary = KINDS.summary()
    for kind in KINDS.all:
        assert f"`{kind.event.decode()}`" in summary and kind.data.__name__ in summary
