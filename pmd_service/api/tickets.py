"""Single-use, 30-second tickets for what a browser opens without a Bearer header: EventSource,
or a link to one ZIP. Stored in Redis under the ticket's hash, signed with a key derived from
JWT_SECRET_KEY, and redeemed with GETDEL, so the first use is the only one."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid

import msgspec
from aiohttp import web
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from ..core.codes import Code
from ..core.problems import ProblemError, bad_request, unauthorized, unavailable
from ..host.access import (
    Principal,
    UserLoader,
    load_user,
    load_user_by_id,
    resolve_target,
    signed_in,
)
from .keys import DB_POOL, REDIS, SETTINGS, TICKET_REDEMPTIONS

log = logging.getLogger(__name__)

TICKET_SECONDS = 30
_KEY_PREFIX = "pmd:sse-ticket:"
# A ticket's MAC and a token's signature never share a key.
_KEY_CONTEXT = b"pmd-sse-ticket"
_TICKET_RE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_NOBODY = "The ticket names a user that no longer exists; sign in again."


class TicketOut(msgspec.Struct):
    ticket: str
    expires_in: int


class _Stored(msgspec.Struct):
    caller_id: int
    # Public sqids, re-loaded at redemption; None: a user without one, re-loaded by id.
    caller: str | None
    target_id: int
    target: str | None
    exp: float  # the expiry of the token the ticket was minted with
    # A download ticket's BDR or export (stored as `bdr_id`); None: a stream ticket.
    download_id: str | None = msgspec.field(default=None, name="bdr_id")


def redis_key(ticket: str) -> str:
    return _KEY_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


def signing_key(jwt_secret_key: str) -> bytes:
    return hmac.new(jwt_secret_key.encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def _mac(key: bytes, where: str, payload: bytes) -> bytes:
    # Over the Redis key too: a signed ticket copied under another ticket's key is refused.
    return hmac.new(key, where.encode() + b"\n" + payload, hashlib.sha256).hexdigest().encode()


def seal(key: bytes, where: str, payload: bytes) -> bytes:
    """What is stored at `where`: the MAC, a dot, the ticket's JSON."""
    return _mac(key, where, payload) + b"." + payload


def _redis_down() -> ProblemError:
    return unavailable(
        "Stream tickets are unavailable right now; retry shortly, or send the token as "
        "`Authorization: Bearer <token>`.",
        "tickets-unavailable",
        5,
        code=Code.TICKETS_UNAVAILABLE,
    )


async def mint(
    redis: ArqRedis, key: bytes, principal: Principal, download_id: uuid.UUID | None = None
) -> TicketOut:
    """A stream ticket, or with `download_id` a ticket for that one download."""
    ticket = secrets.token_urlsafe(32)
    stored = _Stored(
        caller_id=principal.caller.id,
        caller=principal.caller.public_sqid,
        target_id=principal.target.id,
        target=principal.target.public_sqid,
        exp=principal.token_expires_at,
        download_id=None if download_id is None else str(download_id),
    )
    try:
        where = redis_key(ticket)
        await redis.set(where, seal(key, where, msgspec.json.encode(stored)), ex=TICKET_SECONDS)
    except RedisError:
        raise _redis_down() from None
    return TicketOut(ticket=ticket, expires_in=TICKET_SECONDS)


# A stream ticket's spend started as its request arrived (`spend_on_arrival`).
_SPENDING: web.RequestKey[tuple[str, asyncio.Future[bytes | None]]] = web.RequestKey(
    "ticket_spending"
)


def spend_on_arrival(request: web.Request) -> None:
    """Starts spending a GET's `?ticket=` as it arrives, before it waits to be served: a reconnect
    storm's queue may outlast a ticket's 30 s, and a ticket is judged by when its client used it."""
    tickets = request.query.getall("ticket", ())
    if (
        request.method != "GET"
        or "Authorization" in request.headers  # the Bearer header is used instead
        or len(tickets) != 1
        or not _TICKET_RE.match(tickets[0])
    ):
        return
    where = redis_key(tickets[0])
    spending = request.app[TICKET_REDEMPTIONS].spend(where)
    spending.add_done_callback(_answer_read)
    request[_SPENDING] = (where, spending)


def _answer_read(spent: asyncio.Future[bytes | None]) -> None:
    # Its request may be gone, its answer unread: that is no error to log.
    if not spent.cancelled():
        spent.exception()


def _download_key(raw: str | None) -> str | None:
    """A path's id as tickets store it (a malformed one stays as is, and matches none)."""
    if raw is None:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return raw


def _wrong_download(minted: str | None, wanted: str | None) -> ProblemError:
    """A ticket minted for another download than the route's, or for the stream."""
    if minted is None:
        detail = (
            "This is a stream ticket; a download needs a ticket minted for it: "
            "POST /api/pmd/bdr/sse-ticket?bdr_id=<the request's id> (an export's: "
            "export_id=<its id>)."
        )
    elif wanted is None:
        detail = (
            "This ticket is for one download; for the stream, mint one without `bdr_id` "
            "or `export_id`."
        )
    else:
        detail = (
            f"This ticket was minted for the download of {minted}, not this "
            "one; mint one with this download's id (`bdr_id` or `export_id`)."
        )
    return unauthorized(detail, code=Code.TICKET_WRONG_DOWNLOAD)


async def redeem(request: web.Request, ticket: str, load: UserLoader | None) -> Principal:
    """The principal of a ticket minted for the route's `{id}` (none: the stream); a HEAD
    leaves it unspent for the GET."""
    unknown = unauthorized(
        "The stream ticket is unknown, expired or already used; get a new one from "
        "POST /api/pmd/bdr/sse-ticket (tickets are single-use and last 30 seconds).",
        code=Code.TICKET_INVALID,
    )
    if not _TICKET_RE.match(ticket):
        raise unknown
    app, where = request.app, redis_key(ticket)
    try:
        if request.method == "HEAD":
            raw = await app[REDIS].get(where)
        elif (spending := request.get(_SPENDING)) is not None and spending[0] == where:
            raw = await spending[1]
        else:
            raw = await app[TICKET_REDEMPTIONS].getdel(where)
    except RedisError:
        raise _redis_down() from None
    if raw is None:
        raise unknown
    mac, dot, payload = raw.partition(b".")
    key = signing_key(app[SETTINGS].jwt_secret_key)
    if not dot or not hmac.compare_digest(mac, _mac(key, where, payload)):
        # Not minted here, or under an earlier JWT_SECRET_KEY: operators should know.
        log.warning("a stream ticket in Redis fails its signature; refused (key %s)", where)
        raise unknown
    stored = msgspec.json.decode(payload, type=_Stored)
    wanted = _download_key(request.match_info.get("id"))
    if stored.download_id != wanted:
        raise _wrong_download(stored.download_id, wanted)
    target_sqid = request.query.get("target_sqid")
    if target_sqid is not None and target_sqid != stored.target:
        raise bad_request(
            "`target_sqid` differs from the user the ticket was issued for; mint the ticket "
            "with that `target_sqid` instead.",
            code=Code.TARGET_MISMATCH,
        )
    if stored.exp <= time.time():
        raise unauthorized(
            "The access token behind this ticket has expired; sign in again.",
            code=Code.TOKEN_EXPIRED,
        )
    # The account may have changed in the seconds since: apply the token rules again.
    pool = app[DB_POOL]
    if stored.caller is None:
        row = await load_user_by_id(pool, stored.caller_id)
    else:
        row = await (load(stored.caller) if load else load_user(pool, stored.caller))
    if row is not None and row["id"] != stored.caller_id:
        row = None  # its public id names another user now
    caller = signed_in(row, _NOBODY)
    target = await resolve_target(pool, caller, stored.target, load)
    if target.id != stored.target_id:
        raise unauthorized(_NOBODY, code=Code.TOKEN_INVALID)
    return Principal(caller=caller, target=target, token_expires_at=stored.exp)
