"""The features, in one list; a module of its own, so that importing one feature's module imports
no other feature."""

from __future__ import annotations

from ..api.ticket_endpoint import TicketDownloads
from ..manifest import Feature
from ..sse.kinds import EventKinds
from .bdr.feature import FEATURE as BDR
from .exports.feature import FEATURE as EXPORTS
from .posts.feature import FEATURE as POSTS

FEATURES: tuple[Feature, ...] = (POSTS, BDR, EXPORTS)

ENDPOINTS = tuple(e for f in FEATURES for e in f.endpoints)
LIFETIMES = tuple(c for f in FEATURES for c in f.lifetimes)
EVENT_KINDS = EventKinds(k for f in FEATURES for k in f.events)
# The claimed job kinds, in the order the sweep and the cleanup visit them.
JOB_KINDS = tuple(j for f in FEATURES for j in f.jobs)
SCHEDULES = tuple(s for f in FEATURES for s in f.schedules)
# Every email rows may owe, which the sweep sends: each job kind's, then the features' others.
EMAILS = (
    *(j.email for j in JOB_KINDS),
    *(e for f in FEATURES for e in f.emails),
)
PURGES = tuple(p for f in FEATURES for p in f.purges)
TICKETS = TicketDownloads.of([t for f in FEATURES for t in f.tickets])
COMMANDS = tuple(c for f in FEATURES for c in f.commands)
