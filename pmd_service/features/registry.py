"""The features, in one list: the app, the stream, the sweep, the cleanup, the worker and the
command line are built from it. A module of its own, so that importing one feature's module
imports no other feature."""

from __future__ import annotations

from ..api.declaration import Endpoint
from ..api.ticket_endpoint import TicketDownloads
from ..core.command import Command
from ..jobs.kind import Email, JobKind
from ..manifest import Feature, Lifetime, Purge, Schedule
from ..sse.kinds import EventKinds
from .bdr.feature import FEATURE as BDR
from .exports.feature import FEATURE as EXPORTS
from .posts.feature import FEATURE as POSTS

FEATURES: tuple[Feature, ...] = (POSTS, BDR, EXPORTS)

ENDPOINTS: tuple[Endpoint, ...] = tuple(e for f in FEATURES for e in f.endpoints)
LIFETIMES: tuple[Lifetime, ...] = tuple(c for f in FEATURES for c in f.lifetimes)
EVENT_KINDS = EventKinds(k for f in FEATURES for k in f.events)
# The claimed job kinds, in the order the sweep and the cleanup visit them.
JOB_KINDS: tuple[JobKind, ...] = tuple(j for f in FEATURES for j in f.jobs)
SCHEDULES: tuple[Schedule, ...] = tuple(s for f in FEATURES for s in f.schedules)
# Every email rows may owe, which the sweep sends: each job kind's, then the features' others.
EMAILS: tuple[Email, ...] = (
    *(j.email for j in JOB_KINDS),
    *(e for f in FEATURES for e in f.emails),
)
PURGES: tuple[Purge, ...] = tuple(p for f in FEATURES for p in f.purges)
TICKETS = TicketDownloads.of([t for f in FEATURES for t in f.tickets])
COMMANDS: tuple[Command, ...] = tuple(c for f in FEATURES for c in f.commands)
