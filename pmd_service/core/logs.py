"""Logging: readable text by default, JSON lines with LOG_FORMAT=json; every line carries its
work's request id, and credentials are masked whichever library wrote the line.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
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
        if hasattr(record, "result"):
            entry["result"] = record.result
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Tracebacks too (another handler may have cached the record's unmasked one).
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at each record, so swapping stderr breaks nothing."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


def handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """The process's log handler: formatter by `log_format` plus the request id/redaction filter."""
    out = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    out.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    out.addFilter(ContextFilter())
    return out


class MalformedRequestFilter(logging.Filter):
    """aiohttp's ERROR for each request it cannot parse, as a WARNING line per `interval` at most."""

    interval = 10.0  # seconds
    _next = 0.0
    _left_out = 0

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


def quiet_malformed_requests() -> None:
    """Install `MalformedRequestFilter` on aiohttp's server logger, once per process."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())


class ResultLine:
    """Under LOG_FORMAT=json, what a CLI command prints becomes one JSON object's `result`."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.buffer = io.StringIO()
        self.stdout = sys.stdout
        sys.stdout = self.buffer

    @classmethod
    def capture(cls, log_format: str, command: str) -> ResultLine | None:
        return cls(command) if log_format == "json" else None

    def emit(self) -> None:
        sys.stdout = self.stdout
        text = self.buffer.getvalue().strip()
        if not text:
            return
        try:
            result: object = json.loads(text)
        except ValueError:
            result = text
        record = logging.LogRecord(
            "pmd_service.cli", logging.INFO, __file__, 0, "%s: done", (self.command,), None
        )
        record.result = result  # a token is the command's answer: not masked
        print(JsonFormatter().format(record), flush=True)


def format_from_env() -> str:
    """LOG_FORMAT before the settings are parsed, so their errors are in that format."""
    return "json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text"


def _is_ours(h: logging.Handler) -> bool:
    return any(isinstance(f, ContextFilter) for f in h.filters)


def drop_foreign_handlers() -> None:
    """Remove the handlers the `arq` command adds, which would write each line a second time."""
    logger = logging.getLogger("arq")
    for h in list(logger.handlers):
        if not _is_ours(h):
            logger.removeHandler(h)
            h.close()


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("pmd_service").critical("uncaught exception", exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    logging.getLogger("pmd_service").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure(log_format: str) -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler(log_format)]
    root.setLevel(logging.INFO)
    drop_foreign_handlers()
    # Warnings and uncaught exceptions go through the same handler: formatted and masked.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    # Access lines would hold query strings (SSE tickets).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
