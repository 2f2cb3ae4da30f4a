"""Errors a client can act on, as the services raise them: status, slug and a sentence of detail.

Nothing here knows HTTP: web/problem_middleware.py turns them into problem+json (RFC 9457) answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .codes import TABLE, Code

TYPE_BASE = "urn:pmd:problem:"


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    # The host's app translates by `code` and reads its numbers from `details`.
    code: str
    details: dict[str, Any]
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """An error a client can act on; its reason (`Code`) is the slug's snake_case unless named."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        code: Code | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        # Only a code of the table: a slug naming none fails here.
        self.reason = code if code is not None else Code(slug.replace("-", "_"))
        self.code = TABLE[self.reason].code
        # `extra` may hold an older top-level `reason` (kept there for earlier clients).
        self.details = {**self.extra, **(details or {}), "reason": str(self.reason)}


def bad_request(detail: str, slug: str = "bad-request", **kw: Any) -> ProblemError:
    return ProblemError(400, slug, "Bad request", detail, **kw)


def validation_error(
    detail: str, errors: list[FieldError], code: Code = Code.VALIDATION_FAILED
) -> ProblemError:
    return ProblemError(422, "validation", "Invalid request", detail, errors=errors, code=code)


def not_found(detail: str, *, code: Code) -> ProblemError:
    return ProblemError(404, "not-found", "Not found", detail, code=code)


def forbidden(detail: str, *, code: Code, details: Mapping[str, Any] | None = None) -> ProblemError:
    return ProblemError(403, "forbidden", "Forbidden", detail, code=code, details=details)


def conflict(
    detail: str, slug: str = "conflict", *, code: Code, details: Mapping[str, Any] | None = None
) -> ProblemError:
    return ProblemError(409, slug, "Conflict", detail, code=code, details=details)


def gone(detail: str, *, code: Code, details: Mapping[str, Any] | None = None) -> ProblemError:
    return ProblemError(410, "gone", "Gone", detail, code=code, details=details)


def unavailable(detail: str, slug: str, seconds: int, *, code: Code) -> ProblemError:
    headers = {"Retry-After": str(seconds)}
    details = {"retry_after_seconds": seconds}
    return ProblemError(
        503, slug, "Service Unavailable", detail, headers=headers, code=code, details=details
    )


def unauthorized(detail: str, error: str = "invalid_token", *, code: Code) -> ProblemError:
    challenge = 'Bearer realm="pmd"' + (f', error="{error}"' if error else "")
    headers = {"WWW-Authenticate": challenge}
    return ProblemError(401, "unauthorized", "Unauthorized", detail, headers=headers, code=code)
