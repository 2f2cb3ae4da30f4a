"""What a feature declares, in one value; the app, the worker and the command line are built from
the list of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from arq.typing import WorkerCoroutine

from .api.declaration import Endpoint
from .api.ticket_endpoint import TicketDownload
from .core.command import Command
from .core.named_sql import Named
from .jobs.kind import Email, JobKind
from .sse.kinds import EventKind

# One of aiohttp's cleanup contexts: what runs before the app serves, then after it stops.
Lifetime = Callable[[web.Application], AsyncIterator[None]]


@dataclass(frozen=True)
class Schedule:
    """A job one worker runs at every matching time (None: any); `name` stays across releases."""

    name: str
    run: WorkerCoroutine  # given arq's job context
    hour: frozenset[int] | None = None
    minute: frozenset[int] | None = None
    second: frozenset[int] = frozenset({0})
    run_at_startup: bool = False
    timeout: float = 300.0


@dataclass(frozen=True)
class Purge:
    """Rows a feature keeps for a while, which the daily cleanup deletes: `past` reads them as of
    `:clock` (the plan's), a count or an array of ids; `purge` deletes them, given that clock or,
    for an array, those `:ids` (re-checked), and answers a command tag or the ids deleted."""

    name: str  # its key in the cleanup's plan
    past: str  # a scalar subquery of the plan's one statement
    purge: Named


@dataclass(frozen=True)
class Feature:
    name: str
    endpoints: tuple[Endpoint, ...] = ()
    lifetimes: tuple[Lifetime, ...] = ()
    # In the order an opening's snapshot sends them.
    events: tuple[EventKind, ...] = ()
    jobs: tuple[JobKind, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    # Emails owed by rows that are no job kind's, sent by the sweep.
    emails: tuple[Email, ...] = ()
    tickets: tuple[TicketDownload, ...] = ()
    purges: tuple[Purge, ...] = ()
    commands: tuple[Command, ...] = ()
