"""Errors a client can act on, as the services raise them: status, slug and a sentence of detail.

Nothing here knows HTTP: web/problem_middleware.py turns them into problem+json (RFC 9457) answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

TYPE_BASE = "urn:pmd:problem:"


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """An error a client can act on: status, a stable type slug, and a sentence of detail."""

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
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def bad_request(detail: str, slug: str = "bad-request", **kw: Any) -> ProblemError:
    return ProblemError(400, slug, "Bad request", detail, **kw)


def validation_error(detail: str, errors: list[FieldError]) -> ProblemError:
    return ProblemError(422, "validation", "Invalid request", detail, errors=errors)


def not_found(detail: str) -> ProblemError:
    return ProblemError(404, "not-found", "Not found", detail)


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "forbidden", "Forbidden", detail)


def conflict(detail: str, slug: str = "conflict") -> ProblemError:
    return ProblemError(409, slug, "Conflict", detail)


def gone(detail: str) -> ProblemError:
    return ProblemError(410, "gone", "Gone", detail)


def unauthorized(detail: str, error: str = "invalid_token") -> ProblemError:
    challenge = f'Bearer realm="pmd", error="{error}"'
    if error == "":
        challenge = 'Bearer realm="pmd"'
    return ProblemError(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge}
    )
