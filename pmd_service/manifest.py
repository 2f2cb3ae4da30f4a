"""What a feature declares, in one value: its routes, its app lifetimes, its event kinds, its
claimed job kinds (with their upkeep), its scheduled jobs, the emails its other rows owe and its
download-ticket check.

`pmd_service/features.py` lists the features; the app, the stream's kinds and tickets, the
sweep and cleanup, and the worker's functions and crons are all built from that one list, so a
new feature is its folder and one line there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from arq.typing import WorkerCoroutine

from .api.declaration import Endpoint
from .api.ticket_endpoint import TicketDownload
from .jobs.kind import Email, JobKind
from .sse.kinds import EventKind

# One of aiohttp's cleanup contexts: what runs before the app serves, then after it stops.
Lifetime = Callable[[web.Application], AsyncIterator[None]]


@dataclass(frozen=True)
class Schedule:
    """A job the worker runs on a clock, as arq's cron runs it: at every time matching the
    sets given (None: any), in one worker only however many run (arq's own cron lock).
    `name` is its queue name: stable across releases, so a worker of either release during a
    rolling upgrade runs the other's."""

    name: str
    run: WorkerCoroutine  # given arq's job context
    hour: frozenset[int] | None = None
    minute: frozenset[int] | None = None
    second: frozenset[int] = frozenset({0})
    run_at_startup: bool = False
    timeout: float = 300.0


@dataclass(frozen=True)
class Feature:
    name: str
    endpoints: tuple[Endpoint, ...] = ()
    lifetimes: tuple[Lifetime, ...] = ()
    # In the order an opening's snapshot sends them.
    events: tuple[EventKind, ...] = ()
    jobs: tuple[JobKind, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    # Emails owed by rows that are no job kind's (a scheduled job's), sent by the sweep as a
    # kind's are.
    emails: tuple[Email, ...] = ()
    # The downloads a stream ticket may be minted for.
    tickets: tuple[TicketDownload, ...] = ()
