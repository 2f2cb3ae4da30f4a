"""The cleanup policies' endpoints: parse, call the service, answer JSON."""

from __future__ import annotations

import msgspec
from aiohttp import web

from ....api.auth import retarget
from ....api.declaration import Endpoint, Param
from ....api.keys import DB_POOL, PRINCIPAL, REDIS, SETTINGS
from ....api.responses import json_response
from ....api.validation import path_uuid, read_json
from ....core.codes import Code
from ....core.problems import not_found
from ..pace import take_turn
from . import runs as policy_runs
from . import service as policies
from .service import (
    LastRun,
    PolicyChange,
    PolicyCreate,
    PolicyCreated,
    PolicyItem,
    PolicyList,
    Preview,
    PreviewRequest,
)


class PolicyRun(msgspec.Struct):
    policy: PolicyItem
    run: LastRun


async def _policies_on(request: web.Request) -> None:
    settings = request.app[SETTINGS]
    if not settings.cleanup_policies:
        raise not_found(
            "Cleanup policies are turned off on this site (CLEANUP_POLICIES).",
            code=Code.POLICIES_OFF,
        )
    if not await policies.promotions_seen(request.app[DB_POOL], settings):
        raise not_found(
            "Cleanup policies are off on this site until the service can read the host's "
            "posts.promoted_at (a policy keeps every post the site promoted): the host's "
            "release of 2026-09-12 adds it, and `python -m pmd_service grants` lets the "
            "service read it.",
            code=Code.POLICIES_OFF,
        )


async def preview_policy(request: web.Request) -> web.Response:
    await _policies_on(request)
    body = await read_json(request, PreviewRequest)
    pool, principal = request.app[DB_POOL], await retarget(request, body.target_sqid)
    return json_response(await policies.preview(pool, principal, body, body.policy_id))


async def create_policy(request: web.Request) -> web.Response:
    await _policies_on(request)
    body = await read_json(request, PolicyCreate)
    pool, principal = request.app[DB_POOL], await retarget(request, body.target_sqid)
    made = await policies.create(pool, principal, body, request.app[SETTINGS].policies_per_user)
    return json_response(made, status=201, headers={"Location": f"/api/pmd/policies/{made.id}"})


async def list_policies(request: web.Request) -> web.Response:
    await _policies_on(request)
    pool, most = request.app[DB_POOL], request.app[SETTINGS].policies_per_user
    return json_response(await policies.list_policies(pool, request[PRINCIPAL], most))


async def get_policy(request: web.Request) -> web.Response:
    await _policies_on(request)
    pool, principal = request.app[DB_POOL], request[PRINCIPAL]
    return json_response(await policies.get(pool, principal, path_uuid(request)))


async def change_policy(request: web.Request) -> web.Response:
    await _policies_on(request)
    body = await read_json(request, PolicyChange)
    pool, principal = request.app[DB_POOL], await retarget(request, body.target_sqid)
    return json_response(await policies.change(pool, principal, path_uuid(request), body))


async def delete_policy(request: web.Request) -> web.Response:
    await _policies_on(request)
    await policies.delete(request.app[DB_POOL], request[PRINCIPAL], path_uuid(request))
    return web.Response(status=204)


async def run_policy(request: web.Request) -> web.Response:
    await _policies_on(request)
    pool, settings, principal = request.app[DB_POOL], request.app[SETTINGS], request[PRINCIPAL]
    # Paced as the owner's actions are.
    await take_turn(request.app[REDIS], principal.caller.id, settings.bulk_actions_per_minute)
    item, last = await policy_runs.run_now(pool, principal, path_uuid(request), settings)
    return json_response(PolicyRun(item, last))


_POLICY_ID = Param("id", {"type": "string", "format": "uuid"}, "The policy", "path")
_OFF = Code.POLICIES_OFF
_APPROVAL = (Code.COUNT_CHANGED, Code.SET_CHANGED, Code.POLICY_WIDENS)
_APPROVAL_NOTE = (
    "The set a run would change now is not the one approved: `count` and `match_digest` carry "
    "it (`policy_widens`: the change widens it and `expect_count` is missing)"
)

ENDPOINTS = (
    Endpoint(
        "post", "/api/pmd/policies/preview", preview_policy, "previewPolicy",
        "What a run of this cleanup policy would change now: its count, the oldest 20 and "
        "the set's digest (nothing is saved)", "policies",
        request=PreviewRequest, response=Preview,
        codes=(_OFF, Code.TARGET_MISMATCH, Code.INVALID_FILTER, Code.INVALID_TAGS,
               Code.POLICY_NOT_FOUND),
    ),
    Endpoint(
        "get", "/api/pmd/policies", list_policies, "listPolicies",
        "The target's cleanup policies, each with its last and next run", "policies",
        response=PolicyList, codes=(_OFF,),
    ),
    Endpoint(
        "post", "/api/pmd/policies", create_policy, "createPolicy",
        "Save a cleanup policy, bound to the count (and set) its preview showed; its first run "
        "comes within a minute (owner only)", "policies",
        request=PolicyCreate, response=PolicyCreated, ok_status=201,
        headers={"Location": "The policy's URL"},
        codes=(_OFF, Code.TARGET_MISMATCH, Code.INVALID_FILTER, Code.INVALID_TAGS,
               Code.POLICY_OWNER_ONLY, Code.TOO_MANY_POLICIES, Code.COUNT_CHANGED,
               Code.SET_CHANGED),
        problem_notes={409: _APPROVAL_NOTE + "; or the owner has as many policies as allowed"},
    ),
    Endpoint(
        "get", "/api/pmd/policies/{id}", get_policy, "getPolicy", "One cleanup policy",
        "policies", response=PolicyItem, params=(_POLICY_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.POLICY_NOT_FOUND),
    ),
    Endpoint(
        "patch", "/api/pmd/policies/{id}", change_policy, "changePolicy",
        "Change only the fields given: a change that widens what a run would change, turns it "
        "on or turns `hide` into `delete` needs the new count (and `expect_count` alone "
        "approves a held run); a moderator may only pause it, which binds until a moderator "
        "lifts it (`paused_by_moderator: false`); a pause always succeeds", "policies",
        request=PolicyChange, response=PolicyItem, params=(_POLICY_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.TARGET_MISMATCH, Code.INVALID_FILTER,
               Code.INVALID_TAGS, Code.POLICY_NOT_FOUND, Code.POLICY_OWNER_ONLY,
               Code.POLICY_PAUSED_BY_MODERATOR, *_APPROVAL),
        problem_notes={409: _APPROVAL_NOTE},
    ),
    Endpoint(
        "delete", "/api/pmd/policies/{id}", delete_policy, "deletePolicy",
        "Delete a cleanup policy (its runs stay in the history, undoable) (owner only)",
        "policies", ok_status=204, ok_description="Deleted", params=(_POLICY_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.POLICY_NOT_FOUND, Code.POLICY_OWNER_ONLY),
    ),
    Endpoint(
        "post", "/api/pmd/policies/{id}/run", run_policy, "runPolicy",
        "Run a cleanup policy now (owner only, paced as bulk actions are): one bulk action "
        "recorded as done by the policy, undoable for 24 hours; its schedule is unchanged",
        "policies",
        response=PolicyRun, params=(_POLICY_ID,),
        codes=(_OFF, Code.INVALID_ID, Code.POLICY_NOT_FOUND, Code.POLICY_OWNER_ONLY,
               Code.POLICY_PAUSED_BY_MODERATOR, Code.RATE_LIMITED, Code.SITE_BUDGET_EXCEEDED,
               Code.POLICY_RUN_TIMEOUT),
        problem_notes={429: "Too many actions this minute, or a concurrent write took the last "
                            "of the policies' share of the site's budget: nothing changed; run "
                            "it again after Retry-After",
                       503: "The run was cut off by its time bounds (a post it needed was "
                            "locked): nothing changed; run it again after Retry-After"},
    ),
)  # fmt: skip
