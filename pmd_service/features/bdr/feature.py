"""The download requests (BDR), as the house builds them: one manifest."""

from __future__ import annotations

from ...api.ticket_endpoint import TicketDownload
from ...core.codes import Code
from ...manifest import Feature, Purge
from . import commands, service
from .endpoints import ENDPOINTS, announcer_ctx
from .events import EVENTS
from .job import BDR

FEATURE = Feature(
    name="bdr",
    endpoints=ENDPOINTS,
    # Flushed before the pool and Redis close: the app's own lifetimes come first.
    lifetimes=(announcer_ctx,),
    events=EVENTS,
    jobs=(BDR,),
    tickets=(
        TicketDownload(
            "bdr_id",
            "Mint a ticket for downloading this request's ZIP (only that one); without it, a "
            "ticket for the stream",
            lambda pool, bdr_id, principal: service.get(pool, bdr_id, principal.target.id),
            (Code.BDR_NOT_FOUND,),
        ),
    ),
    purges=(Purge("audited_reads", service.AUDITED_READS_PAST, service.SQL_PURGE_AUDITED_READS),),
    commands=commands.COMMANDS,
)
