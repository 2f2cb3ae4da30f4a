"""The full exports in parts, as the house builds them: one manifest."""

from __future__ import annotations

from ...api.ticket_endpoint import TicketDownload
from ...core.codes import Code
from ...manifest import Feature
from . import operator, service
from .endpoints import ENDPOINTS
from .events import EVENTS
from .job import EXPORT

FEATURE = Feature(
    name="exports",
    endpoints=ENDPOINTS,
    events=EVENTS,
    jobs=(EXPORT,),
    tickets=(
        TicketDownload(
            "export_id",
            "Mint a ticket for downloading one part of this export (the owner's own); without "
            "it, a ticket for the stream",
            service.get,
            (Code.EXPORT_OWNER_ONLY, Code.EXPORT_NOT_FOUND),
        ),
    ),
    commands=operator.COMMANDS,
)
