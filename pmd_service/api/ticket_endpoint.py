"""POST /api/pmd/bdr/sse-ticket: a single-use ticket for the stream or a declared download."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import msgspec
from aiohttp import web
from msgspec import Meta

from ..core.codes import Code
from ..core.problems import bad_request
from ..host.access import Principal, UserLoader
from . import tickets
from .auth import bearer
from .declaration import Auth, Endpoint
from .keys import DB_POOL, PRINCIPAL, REDIS, SETTINGS
from .responses import json_response
from .routing import parse_query
from .validation import parse_uuid

# Raises the feature's problem (404, 403) unless the principal may download that BDR or export.
DownloadCheck = Callable[[asyncpg.Pool, uuid.UUID, Principal], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class TicketDownload:
    """A download a ticket may be minted for, as its feature declares it."""

    query_key: str
    description: str
    check: DownloadCheck
    codes: tuple[Code, ...] = ()


@dataclass(frozen=True, slots=True)
class TicketDownloads:
    """The downloads tickets are minted for, and the ticket request's query they make."""

    all: tuple[TicketDownload, ...]
    query: type[msgspec.Struct]

    @classmethod
    def of(cls, downloads: Sequence[TicketDownload]) -> TicketDownloads:
        fields = [
            (
                d.query_key,
                Annotated[str, Meta(max_length=64, description=d.description)] | None,
                None,
            )
            for d in downloads
        ]
        return cls(tuple(downloads), msgspec.defstruct("TicketQuery", fields))


def endpoint(downloads: TicketDownloads) -> Endpoint:
    async def create_ticket(request: web.Request) -> web.Response:
        query = parse_query(request, downloads.query)
        request[PRINCIPAL] = principal = await bearer(request, request.app.get(TICKET_CALLERS))
        named = [(d, value) for d in downloads.all if (value := getattr(query, d.query_key))]
        if len(named) > 1:
            keys = " or ".join(f"`{d.query_key}`" for d in downloads.all)
            raise bad_request(f"Send {keys}: a ticket opens one download.", code=Code.INVALID_QUERY)
        download_id = None
        for download, value in named:
            download_id = parse_uuid(value)
            # 404 now rather than at the download: it must be one the principal may get.
            await download.check(request.app[DB_POOL], download_id, principal)
        key = tickets.signing_key(request.app[SETTINGS].jwt_secret_key)
        out = await tickets.mint(request.app[REDIS], key, principal, download_id)
        return json_response(out, headers={"Cache-Control": "no-store"})

    return Endpoint(
        "post",
        "/api/pmd/bdr/sse-ticket",
        create_ticket,
        "createSseTicket",
        "A single-use, 30-second ticket for EventSource (which cannot send headers), or "
        "with `bdr_id` for a link to that one ZIP",
        "downloads",
        auth=Auth.OWN,
        query=downloads.query,
        response=tickets.TicketOut,
        problems=(503,),
        codes=(
            Code.INVALID_QUERY,
            Code.INVALID_ID,
            *(c for d in downloads.all for c in d.codes),
            Code.TICKETS_UNAVAILABLE,
        ),
    )


# The stream's batched caller lookups, where the app has them: a reconnect storm is one of tickets.
TICKET_CALLERS: web.AppKey[UserLoader] = web.AppKey("ticket_callers")
