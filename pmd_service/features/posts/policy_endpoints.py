"""The cleanup policies' endpoints: parse, call features/posts/policies.py or policy_runs.py, answer."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ...api.auth import retarget
from ...api.declaration import Endpoint, Param
from ...api.keys import DB_POOL, PRINCIPAL, SETTINGS
from ...api.responses import json_response
from ...api.validation import path_uuid, read_json
from ...core.codes import Code
from ...core.problems import not_found
from . import policies, policy_runs
from .policies import (
    LastRun,
    PolicyChange,
    PolicyCreate,
    PolicyCreated,
    PolicyItem,
    PolicyList,
    Preview,
    PreviewRequest,
)
from .undo import UNDO_HOURS


class PolicyRun(msgspec.Struct):
    policy: PolicyItem
    run: LastRun


def _on(request: web.Request) -> None:
    if not request.app[SETTINGS].cleanup_policies:
        raise not_found(
            "Cleanup policies are turned off on this site (CLEANUP_POLICIES).",
            code=Code.POLICIES_OFF,
        )


async def preview(request: web.Request) -> web.Response:
    _on(request)
    body = await read_json(request, PreviewRequest)
    principal = await retarget(request, body.target_sqid)
    return json_response(await policies.preview(request.app[DB_POOL], principal, body))


async def create(request: web.Request) -> web.Response:
    _on(request)
    body = await read_json(request, PolicyCreate)
    principal = await retarget(request, body.target_sqid)
    settings = request.app[SETTINGS]
    made = await policies.create(request.app[DB_POOL], principal, body, settings.policies_per_user)
    return json_response(made, status=201, headers={"Location": f"/api/pmd/policies/{made.id}"})


async def list_all(request: web.Request) -> web.Response:
    _on(request)
    settings = request.app[SETTINGS]
    found = await policies.list_policies(
        request.app[DB_POOL], request[PRINCIPAL], settings.policies_per_user, UNDO_HOURS
    )
    return json_response(found)


async def get_one(request: web.Request) -> web.Response:
    _on(request)
    pool, principal = request.app[DB_POOL], request[PRINCIPAL]
    return json_response(await policies.get(pool, principal, path_uuid(request), UNDO_HOURS))


async def change(request: web.Request) -> web.Response:
    _on(request)
    body = await read_json(request, PolicyChange)
    principal = await retarget(request, body.target_sqid)
    return json_response(
        await policies.change(request.app[DB_POOL], principal, path_uuid(request), body)
    )


async def delete(request: web.Request) -> web.Response:
    _on(request)
    await policies.delete(request.app[DB_POOL], request[PRINCIPAL], path_uuid(request))
    return web.Response(status=204)


async def run(request: web.Request) -> web.Response:
    _on(request)
    item, last = await policy_runs.run_now(
        request.app[DB_POOL], request[PRINCIPAL], path_uuid(request), request.app[SETTINGS]
    )
    return json_response(PolicyRun(item, last))


_ID = Param("id", {"type": "string", "format": "uuid"}, "The policy", "path", True)
_OFF = Code.POLICIES_OFF
_APPROVAL = (Code.COUNT_CHANGED, Code.SET_CHANGED, Code.POLICY_WIDENS)
_APPROVAL_NOTE = (
    "The set a run would change now is not the one approved: `count` and `match_digest` carry "
    "it (`policy_widens`: the change widens it and `expect_count` is missing)"
)

ENDPOINTS = (
    Endpoint(
        "post", "/api/pmd/policies/preview", preview, "previewPolicy",
        "What a run of this cleanup policy would change now: its count, the oldest 20 and "
        "the set's digest (nothing is saved)", "policies",
        request=PreviewRequest, response=Preview,
        codes=(_OFF, Code.TARGET_MISMATCH, Code.INVALID_FILTER),
    ),
    Endpoint(
        "get", "/api/pmd/policies", list_all, "listPolicies",
        "The target's cleanup policies, each with its last and next run", "policies",
        response=PolicyList, codes=(_OFF,),
    ),
    Endpoint(
        "post", "/api/pmd/policies", create, "createPolicy",
        "Save a cleanup policy, bound to the count (and set) its preview showed; its first run "
        "comes within a minute (owner only)", "policies",
        request=PolicyCreate, response=PolicyCreated, ok_status=201,
        headers={"Location": "The policy's URL"},
        codes=(_OFF, Code.TARGET_MISMATCH, Code.INVALID_FILTER, Code.POLICY_OWNER_ONLY,
               Code.TOO_MANY_POLICIES, Code.COUNT_CHANGED, Code.SET_CHANGED),
        problem_notes={409: _APPROVAL_NOTE + "; or the owner has as many policies as allowed"},
    ),
    Endpoint(
        "get", "/api/pmd/policies/{id}", get_one, "getPolicy", "One cleanup policy",
        "policies", response=PolicyItem, params=(_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.POLICY_NOT_FOUND),
    ),
    Endpoint(
        "patch", "/api/pmd/policies/{id}", change, "changePolicy",
        "Change a cleanup policy: a change that widens what a run would change (or turns it "
        "on) needs the new count; a moderator may only pause it", "policies",
        request=PolicyChange, response=PolicyItem, params=(_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.TARGET_MISMATCH, Code.INVALID_FILTER,
               Code.POLICY_NOT_FOUND, Code.POLICY_OWNER_ONLY, *_APPROVAL),
        problem_notes={409: _APPROVAL_NOTE},
    ),
    Endpoint(
        "delete", "/api/pmd/policies/{id}", delete, "deletePolicy",
        "Delete a cleanup policy (its runs stay in the history, undoable) (owner only)",
        "policies", ok_status=204, ok_description="Deleted", params=(_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.POLICY_NOT_FOUND, Code.POLICY_OWNER_ONLY),
    ),
    Endpoint(
        "post", "/api/pmd/policies/{id}/run", run, "runPolicy",
        "Run a cleanup policy now (owner only): one bulk action recorded as done by the "
        "policy, undoable for 24 hours; its schedule is unchanged", "policies",
        response=PolicyRun, params=(_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.POLICY_NOT_FOUND, Code.POLICY_OWNER_ONLY,
               Code.SITE_BUDGET_EXCEEDED),
        problem_notes={429: "A concurrent write took the last of the site's budget of changed "
                            "posts: nothing changed; run it again after Retry-After"},
    ),
)  # fmt: skip
