"""Registering the endpoints (kept in `app[ROUTE_ENDPOINTS]`) and parsing their queries."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from ..core.codes import Code
from ..core.problems import FieldError, bad_request
from ..host.access import Principal
from .auth import bearer, bearer_or_ticket
from .declaration import Auth, Endpoint
from .keys import PRESENCE, PRINCIPAL, ROUTE_ENDPOINTS
from .validation import refuse_nul

_AUTHENTICATE = {Auth.BEARER: bearer, Auth.BEARER_OR_TICKET: bearer_or_ticket}


def _authenticated(
    handler: Handler, authenticate: Callable[[web.Request], Awaitable[Principal]]
) -> Handler:
    async def authenticated(request: web.Request) -> web.StreamResponse:
        request[PRINCIPAL] = await authenticate(request)
        # A person's request: background work leaves them the machine while it lasts.
        presence = request.app[PRESENCE]
        presence.mark()
        try:
            return await handler(request)
        finally:
            presence.mark()

    return authenticated


def register(app: web.Application, endpoints: Iterable[Endpoint]) -> None:
    app.setdefault(ROUTE_ENDPOINTS, {})
    for endpoint in endpoints:
        authenticate = _AUTHENTICATE.get(endpoint.auth)
        handler = endpoint.handler
        if authenticate is not None:
            handler = _authenticated(handler, authenticate)
        once = once_keys(endpoint)  # reads the query's fields: an unsupported one fails here
        if once:
            handler = _refusing_repeats(handler, once)
        if endpoint.method == "get":
            route = app.router.add_get(
                endpoint.path, handler, name=endpoint.operation_id, allow_head=endpoint.allow_head
            )
        else:
            route = app.router.add_route(
                endpoint.method.upper(), endpoint.path, handler, name=endpoint.operation_id
            )
        assert route.resource is not None
        for same in route.resource:  # the GET route, and the HEAD route add_get made with it
            if same.handler is handler:
                app[ROUTE_ENDPOINTS][same] = endpoint


def endpoint_of(request: web.Request) -> Endpoint | None:
    return request.app[ROUTE_ENDPOINTS].get(request.match_info.route)


Q = TypeVar("Q", bound=msgspec.Struct)


def _invalid(name: str, raw: str, message: str) -> Exception:
    return bad_request(
        f"Query parameter `{name}` {message}; got {raw[:40]!r}.",
        slug="invalid-query",
        errors=[FieldError(field=name, message=message)],
        code=Code.INVALID_QUERY,
    )


def once_keys(endpoint: Endpoint) -> frozenset[str]:
    """The query parameters `endpoint` reads that take one value (`target_sqid` included)."""
    keys: set[str] = set()
    if endpoint.query is not None:
        keys = {f.encode_name for f in query_fields(endpoint.query) if query_list(f.type) is None}
    if endpoint.auth is not Auth.PUBLIC:
        keys.add("target_sqid")
    return frozenset(keys)


def _refusing_repeats(handler: Handler, once: frozenset[str]) -> Handler:
    """`handler`, behind a 400 naming a parameter of `once` given twice (a proxy reads one)."""

    async def checked(request: web.Request) -> web.StreamResponse:
        query = request.query
        if len(query) > 1:
            seen: set[str] = set()
            for key, _ in query.items():
                if key in seen and key in once:
                    raise bad_request(
                        f"Query parameter `{key}` is given more than once; send `{key}` once "
                        "(readers of a query differ on which of its values counts).",
                        slug="duplicate-key",
                        errors=[FieldError(field=key, message="is given more than once")],
                        extra={"key": key},
                        code=Code.DUPLICATE_KEY,
                    )
                seen.add(key)
        return await handler(request)

    return checked


def query_scalar(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """The value's own type: without `| None` (absent means None) and Meta wrappers."""
    if isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    if isinstance(kind, msgspec.inspect.UnionType):
        kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    return kind


_SCALARS = (msgspec.inspect.BoolType, msgspec.inspect.IntType, msgspec.inspect.StrType)


def query_list(kind: msgspec.inspect.Type) -> msgspec.inspect.ListType | None:
    """A list of strings: a parameter given once per value (`?hashtag=a&hashtag=b`)."""
    if isinstance(kind, msgspec.inspect.Metadata):
        kind = kind.type
    if isinstance(kind, msgspec.inspect.ListType) and isinstance(
        query_scalar(kind.item_type), msgspec.inspect.StrType
    ):
        return kind
    return None


@functools.cache  # inspected once per struct, not on every request
def query_fields(struct: type[msgspec.Struct]) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        if not isinstance(query_scalar(f.type), _SCALARS) and query_list(f.type) is None:
            raise TypeError(
                f"{struct.__name__}.{f.name}: a query parameter is a bool, int, str or list of str"
            )
    return info.fields


_DIGITS_RE = re.compile(r"[0-9]{1,18}")
_SIGNED_RE = re.compile(r"-?[0-9]{1,18}")


def _field_value(name: str, raw: str, kind: msgspec.inspect.Type) -> object:
    kind = query_scalar(kind)
    if isinstance(kind, msgspec.inspect.BoolType):
        if raw.lower() in {"false", "0", ""}:
            return False
        if raw.lower() in {"true", "1"}:
            return True
        raise _invalid(name, raw, "must be true or false")
    if isinstance(kind, msgspec.inspect.IntType):
        lo, hi = kind.ge, kind.le
        # Plain ASCII digits: int() also takes "+5", "1_000" and non-Latin digits.
        digits = _SIGNED_RE if lo is None or lo < 0 else _DIGITS_RE
        value = int(raw) if digits.fullmatch(raw) else None
        if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _invalid(name, raw, f"must be a whole number from {lo} to {hi}")
        return value
    assert isinstance(kind, msgspec.inspect.StrType)  # query_fields checked it
    refuse_nul(raw, name)
    if kind.max_length is not None and len(raw) > kind.max_length:
        raise _invalid(name, raw, f"must be at most {kind.max_length} characters")
    return raw


def parse_query(request: web.Request, struct: type[Q]) -> Q:
    """The query string as `struct`, with a 400 naming a parameter that does not fit."""
    values: dict[str, object] = {}
    for f in query_fields(struct):
        repeated = query_list(f.type)
        if repeated is not None:
            given = request.query.getall(f.encode_name, [])
            if repeated.max_length is not None and len(given) > repeated.max_length:
                raise _invalid(
                    f.encode_name, given[-1], f"may be given at most {repeated.max_length} times"
                )
            if given:
                values[f.name] = [_field_value(f.encode_name, v, repeated.item_type) for v in given]
            continue
        raw = request.query.get(f.encode_name)
        if raw is not None:
            values[f.name] = _field_value(f.encode_name, raw, f.type)
    return struct(**values)
