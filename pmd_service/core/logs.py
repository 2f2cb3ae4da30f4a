"""Logging: readable text by default, JSON lines with LOG_FORMAT=json.

Every line carries the request id of the work it belongs to (`REQUEST_ID`): the server's
middleware sets it per HTTP request, the worker per BDR job (from the row, so a BDR's lines on
both sides and its email share one id). Credentials never reach the output: the handler's
filter masks Bearer tokens, JWTs, `ticket=` values and the user info of URLs in any message,
whichever library wrote it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from aiohttp.http_exceptions import HttpProcessingError

REQUEST_ID: ContextVar[str | None] = ContextVar("pmd_request_id", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_from(value: str | None) -> str:
    """The caller's id when it is a safe token (it lands in logs and headers), else a new one."""
    return value if value and _SAFE_REQUEST_ID.match(value) else uuid.uuid4().hex


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

_SECRETS = re.compile(
    r"(?P<bearer>\bBearer\s+)[^\s\"',;]+"
    r"|(?P<param>[?&;\s](?:ticket|token|access_token)=)[^&\s\"',;]+"
    r"|\beyJ[\w-]{8,}\.[\w-]+\.[\w-]*"  # any JWT (header.payload.signature)
    # user info in a URL (`https://user:password@host`): ARTWORK_BASE_URL, database URLs
    r"|(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@\"'<>]+@"
)


def _mask(match: re.Match[str]) -> str:
    if match.group("scheme"):
        return match.group("scheme") + "[redacted]@"
    return (match.group("bearer") or match.group("param") or "") + "[redacted]"


def redact(text: str) -> str:
    return _SECRETS.sub(_mask, text)


@contextmanager
def request_id_set(value: str | None) -> Iterator[None]:
    """Tag every log line written inside the block (this task and tasks it starts) with `value`."""
    token = REQUEST_ID.set(value)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class ContextFilter(logging.Filter):
    """Adds `request_id` to each record and masks credentials in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        # Tracebacks too (another handler may have cached the record's unmasked one).
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record, not at set-up: a test
    runner (or anything else) that swaps stderr and closes the old one breaks nothing."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


def handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """The process's log handler: formatter by `log_format` plus the request id/redaction filter."""
    out = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    out.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    out.addFilter(ContextFilter())
    return out


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs each request it cannot parse (a bad Content-Length, a space in a header
    name) as an ERROR with a full traceback: anyone can fill the logs with them. Here each is
    one WARNING line without traceback, at most one per `interval` seconds, the next line
    saying how many were left out. The client still gets aiohttp's 400."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self._next = 0.0
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now < self._next:
            self._left_out += 1
            return False
        self._next = now + self.interval
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = " ".join(str(exc.message).split())[:200]
        more = f" ({self._left_out} more since the last such line)" if self._left_out else ""
        self._left_out = 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "malformed HTTP request from %s: %s%s", (peer, reason, more)
        record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_requests(interval: float = 10.0) -> None:
    """Install `MalformedRequestFilter` on aiohttp's server logger, once per process."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter(interval))


def configure(log_format: str, level: int = logging.INFO) -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler(log_format)]
    root.setLevel(level)
    # Access lines would hold query strings (SSE tickets); server.py turns them off, and this
    # keeps them off for any other runner. Errors and the request id are in our own lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
