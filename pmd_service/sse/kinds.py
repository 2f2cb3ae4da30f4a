"""The stream's event kinds, as their features declare them (each feature's `events.py`), in the
one list the app hands the stream (`features/registry.py`): the stream knows no feature, only
this shape, so a new kind needs nothing here. An event is a row of `stream_events`: its `kind`
names the kind that frames it, its `audience` whose streams receive it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from . import frames


class Audience(StrEnum):
    """Whose streams receive an event of a user (the `audience` column)."""

    # The user's own streams only (an export: what the user made, not what a moderator sees).
    OWNER = "owner"
    # The user's own streams and every moderator's stream watching the user.
    WATCHERS = "watchers"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a stream's opening holds of a kind (without `Last-Event-ID`, or after `reset`).

    `sql`: a scalar subquery of the opening's one statement (so it and the watermark see one
    MVCC snapshot), the JSON array (as text, newest first) of the payloads of user `:user`'s
    items, each framed as a live event of the kind is; held by the streams its kind's
    audience reaches."""

    sql: str


@dataclass(frozen=True, slots=True)
class EventKind:
    """One kind of event: a feature's declaration of it."""

    kind: str  # the events table's `kind` of its rows
    event: bytes  # its SSE event name (`event:`), what the page listens for
    data: type[msgspec.Struct]  # its `data:`, as the OpenAPI document shows it
    make: Callable[[Any], msgspec.Struct]  # the data from a row's decoded payload
    audience: Audience  # whose streams its rows are written for (their `audience`)
    summary: str  # when it is sent, for the OpenAPI document
    snapshot: Snapshot | None = None
    # After `Last-Event-ID`, whether the events missed are sent again (False: only live ones
    # are, for what the page would fetch again anyway).
    replayed: bool = True
    # Its generated SQL, if any: a file under migrations/repeatable/ and what writes it
    # (`python -m pmd_service.web.event_kinds`).
    repeatable: tuple[str, Callable[[EventKind], str]] | None = None

    def frame(self, payload: Any, event_id: int | None = None) -> bytes:
        return frames.event(self.event, self.make(payload), event_id)


class UnknownKind(Exception):
    """A row of a kind (or an audience) this release does not know: a later release's, during
    a rolling deploy. Skipped, not an error."""


class EventKinds:
    """The kinds the stream serves, by their `kind`."""

    __slots__ = ("all", "by_kind")

    def __init__(self, kinds: Iterable[EventKind]) -> None:
        self.all = tuple(kinds)
        self.by_kind = {k.kind: k for k in self.all}
        if len(self.by_kind) != len(self.all):
            raise ValueError("two event kinds share a `kind`")

    def frame(self, kind: str, payload: str, event_id: int) -> bytes:
        """The frame of an events-table row. Raises UnknownKind for a kind it does not know,
        and what the kind's shape raises for a payload it rejects."""
        known = self.by_kind.get(kind)
        if known is None:
            raise UnknownKind(kind)
        return known.frame(msgspec.json.decode(payload), event_id)

    def replayed(self, kind: str) -> bool:
        known = self.by_kind.get(kind)
        return known is not None and known.replayed

    def snapshots(self) -> list[tuple[EventKind, Snapshot]]:
        return [(k, k.snapshot) for k in self.all if k.snapshot is not None]

    def summary(self) -> str:
        """The live events, one clause each, for the OpenAPI document."""
        parts = []
        for k in self.all:
            whose = "" if k.audience is Audience.WATCHERS else " (the user's own stream only)"
            name, data = k.event.decode(), k.data.__name__
            parts.append(f"`{name}` (with `id:`, data `{data}`){whose} {k.summary}")
        return "; ".join(parts)


def reaches(audience: str, own: bool) -> bool:
    """Whether a row of `audience` goes to a stream, the user's `own` or a moderator's. One
    this release does not know (a later release's) goes to none: it may be narrower."""
    return audience == Audience.WATCHERS or (own and audience == Audience.OWNER)
