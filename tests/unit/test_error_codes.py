"""Every code the service can raise is one the OpenAPI document declares, with the status the
table gives it; and every code of the table is raised somewhere.

The raise sites are read from the source (every `Code.X` named, and every ProblemError or
helper call that leaves its code to its slug), so a code raised anywhere is found without
provoking it; tests/api/web/test_error_codes.py provokes them.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pmd_service
from pmd_service.api.keys import OPENAPI_DOC
from pmd_service.core.codes import ITEM_CODES, PROBLEM_CODES, TABLE, Code, item_error
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app

PACKAGE = Path(pmd_service.__file__).parent
# Problems any URL may answer, whatever its operation (problem_middleware.py, connections.py).
ANYWHERE = {
    Code.NOT_FOUND,
    Code.METHOD_NOT_ALLOWED,
    Code.BAD_REQUEST,
    Code.INTERNAL_ERROR,
    Code.TOO_MANY_CONNECTIONS,
    Code.REDIS_UNAVAILABLE,  # a Redis refusal no operation handles: none is known to remain
}
# The status each problem helper answers (core/problems.py), and the slug it defaults to.
HELPERS = {
    "bad_request": (400, "bad-request"),
    "validation_error": (422, "validation"),
    "not_found": (404, None),
    "forbidden": (403, None),
    "conflict": (409, "conflict"),
    "gone": (410, None),
    "unauthorized": (401, None),
}


def _sources() -> list[tuple[Path, ast.Module]]:
    return [
        (p, ast.parse(p.read_text("utf-8")))
        for p in sorted(PACKAGE.rglob("*.py"))
        # codes.py is the table; problems.py the helpers, checked where they are called.
        if p.name not in ("codes.py", "problems.py") and "migrations" not in p.parts
    ]


def _literal_code(node: ast.expr | None) -> Code | None:
    if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name):
        return None
    return Code[node.attr] if node.value.id == "Code" else None


def raise_sites() -> tuple[set[Code], list[str]]:
    """Every code named in the package, and what is wrong at a raise site: a slug naming no
    code, a code of another status than the call's."""
    named: set[Code] = set()
    wrong: list[str] = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            code = _literal_code(node) if isinstance(node, ast.Attribute) else None
            if code is not None:
                named.add(code)
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            name, where = node.func.id, f"{path.relative_to(PACKAGE)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name == "ProblemError":
                status_node = node.args[0] if node.args else None
                status = status_node.value if isinstance(status_node, ast.Constant) else None
                slug_node = node.args[1] if len(node.args) > 1 else None
            elif name in HELPERS:
                status, default = HELPERS[name]
                slug_node = keywords.get("slug") or (node.args[1] if len(node.args) > 1 else None)
                if slug_node is None and default is not None:
                    slug_node = ast.Constant(default)
            else:
                continue
            code = _literal_code(keywords.get("code"))
            if "code" not in keywords:
                if name == "validation_error":
                    code = Code.VALIDATION_FAILED
                elif isinstance(slug_node, ast.Constant):
                    try:
                        code = Code(str(slug_node.value).replace("-", "_"))
                    except ValueError:
                        wrong.append(f"{where}: slug {slug_node.value!r} names no code")
                        continue
                    named.add(code)
                else:
                    wrong.append(f"{where}: {name} without a code")
                    continue
            if code is not None and status is not None and TABLE[code].status != status:
                wrong.append(f"{where}: {code} is a {TABLE[code].status}, raised as {status!r}")
    return named, wrong


def _document(tmp_path: Path) -> dict[str, Any]:
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:9/none",
        redis_url="redis://127.0.0.1:9",
        data_dir=tmp_path,
        vault_path=tmp_path / "vault",
        zip_path=tmp_path / "zips",
        jwt_secret_key="s" * 40,
        auto_migrate=False,
        metrics_port=0,
    )
    doc: dict[str, Any] = create_app(settings)[OPENAPI_DOC]
    return doc


def declared_shapes(doc: dict[str, Any]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    """(method, path, status) → the shapes the document declares for that problem answer."""
    found = {}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, answer in op["responses"].items():
                content = answer.get("content", {}).get("application/problem+json")
                if content is None:
                    continue
                extra = content["schema"]["allOf"][1]
                found[(method, path, int(status))] = extra.get("oneOf", [extra])
    return found


def declared_codes(doc: dict[str, Any]) -> dict[tuple[str, str, int], set[str]]:
    """(method, path, status) → the reasons (`details.reason`) the document declares there."""
    return {
        at: {s["properties"]["details"]["properties"]["reason"]["const"] for s in shapes}
        for at, shapes in declared_shapes(doc).items()
    }


def test_every_code_raised_is_declared_with_its_status(tmp_path: Path) -> None:
    named, wrong = raise_sites()
    assert not wrong
    doc = _document(tmp_path)
    declared = declared_codes(doc)
    by_operation = {c for codes in declared.values() for c in codes}
    raised = {c for c in named if TABLE[c].status is not None}
    assert not {str(c) for c in raised - ANYWHERE} - by_operation, "raised, declared nowhere"
    assert set(doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]) == {
        str(TABLE[c].code) for c in PROBLEM_CODES
    }
    for (method, path, status), codes in declared.items():
        assert {TABLE[Code(c)].status for c in codes} == {status}, (method, path, status)


def test_every_code_of_the_table_is_raised_somewhere() -> None:
    named, _ = raise_sites()
    assert set(PROBLEM_CODES) - named == set(), "a code nothing raises"
    assert set(ITEM_CODES) - named == set(), "an error_code nothing records"


# The host's app knows these codes on the PMD's paths (../shared HOST.md, "The error contract as
# the host serves it"; its ErrorCode enum): its specific names, and its fallbacks by status.
HOSTS_SPECIFIC = {
    "posts_not_owned": 400,
    "bdr_daily_limit": 429,
    "bdr_not_ready": 400,
    "bdr_expired": 410,
    "bdr_not_found": 404,
    "forbidden_role": 403,
    "owner_protected": 403,
    "user_not_found": 404,
    "account_banned": 403,
    "account_deactivated": 403,
    "token_expired": 401,
}
HOSTS_FALLBACK = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "file_too_large",
    422: "validation_error",
    429: "rate_limited",
}
HOSTS_ITEM_CODES = {"user_not_found", "no_posts", "internal"}


def test_every_declared_problem_speaks_the_hosts_code_and_names_our_reason(
    tmp_path: Path,
) -> None:
    """Each problem answer of the document: its `code` one the host's app knows (the host's
    own name at the host's status, else the host's fallback for the status), and its
    `details.reason` one of this service's, required."""
    walked = 0
    for (method, path, status), shapes in declared_shapes(_document(tmp_path)).items():
        for shape in shapes:
            code = shape["properties"]["code"]["const"]
            details = shape["properties"]["details"]
            reason = Code(details["properties"]["reason"]["const"])
            assert "reason" in details["required"], (method, path, reason)
            assert TABLE[reason].status == status, (method, path, reason)
            if code in HOSTS_SPECIFIC:
                assert HOSTS_SPECIFIC[code] == status, (method, path, reason, code)
            else:
                assert code == HOSTS_FALLBACK.get(status, "internal_error"), (path, reason)
            walked += 1
    assert walked >= len(PROBLEM_CODES)


def test_the_hosts_names_for_the_situations_it_names() -> None:
    expected = {
        Code.TARGET_NOT_FOUND: "user_not_found",
        Code.VALIDATION_FAILED: "validation_error",
        Code.BDR_NOT_READY: "bdr_not_ready",
        Code.BDR_NO_FILE: "bdr_not_ready",
        Code.ROW_BUDGET_EXCEEDED: "rate_limited",
        Code.ACCOUNT_DEACTIVATED: "account_deactivated",
        Code.ACCOUNT_BANNED: "account_banned",
        Code.TOKEN_MISSING: "unauthorized",
    }
    assert {c: str(TABLE[c].code) for c in expected} == expected
    assert (TABLE[Code.BDR_NO_FILE].status, TABLE[Code.ACCOUNT_DEACTIVATED].status) == (400, 403)


def test_every_failed_item_reads_a_hosts_code_and_its_one_sentence() -> None:
    """Whatever a row stored (a reason of this release, of an older one, none, or text no
    release wrote), it reads as one of the host's three codes with that code's sentence."""
    sentences: dict[str, set[str]] = {}
    for stored in [*(str(c) for c in ITEM_CODES), None, "", "KeyError('x')", "bdr_not_ready"]:
        shown = item_error(stored)
        assert shown.code in HOSTS_ITEM_CODES
        sentences.setdefault(shown.code, set()).add(shown.message)
    assert set(sentences) == HOSTS_ITEM_CODES
    assert all(len(s) == 1 for s in sentences.values()), sentences
    assert item_error(None).code == item_error("no such reason").code == "internal"
    assert item_error("too_large").reason == Code.TOO_LARGE
