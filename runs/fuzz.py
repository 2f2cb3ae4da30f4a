"""Fuzzing from the contract: `python -m runs.fuzz [--cases 1200]`: Schemathesis's requests for
every operation of /openapi.json against `python server.py`; exits 1 on any violation."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import math
import os
import tempfile
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from pmd_service.core.settings import Settings
from pmd_service.dev.embedded import EmbeddedRedis
from pmd_service.host.tokens import mint_token
from support.seeding import Factory, bdr_row
from support.stack import connected, free_port, fresh_stack, service_env, start_server, stop

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
STREAM_PATH = "/api/pmd/bdr/sse"
SEED_POSTS = 200
BDR_ENTRIES = {
    "metadata.json": b'{"fuzz": true}',
    "artworks/fz1.png": b"\x89PNG" + bytes(range(256)) * 8,
}


@dataclass
class Scope:
    sqid: str
    user_id: int
    post_ids: list[int]
    bdr_ids: list[str]  # a ready one (its ZIP on disk), a pending one, a failed one
    export_ids: list[str]  # two ready exports with their one part on disk
    action_ids: list[str] = field(default_factory=list)  # bulk actions to undo, one post each
    policy_ids: list[str] = field(default_factory=list)  # cleanup policies, the last to delete


@dataclass
class Seed:
    token: str
    own: Scope
    other: Scope
    license_id: int  # the seeded license: a relicense aimed at it can succeed


@dataclass
class Report:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    server_errors: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def count(self, label: str, status: int) -> None:
        self.statuses.setdefault(label, Counter())[status] += 1
        self.server_errors += status >= 500

    def lines(self) -> Iterator[str]:
        width = max((len(k) for k in self.cases), default=0)
        for label, n in sorted(self.cases.items()):
            statuses = " ".join(f"{s}×{c}" for s, c in sorted(self.statuses.get(label, {}).items()))
            yield f"  {label:<{width}}  {n:5d} cases  {statuses}"
        yield f"cases: {self.total}  5xx: {self.server_errors}  violations: {len(self.violations)}"
        for v in self.violations[:20]:
            yield f"  VIOLATION {v}"


def aim(seed: Seed, case: Any) -> Any:
    """A valid generated case pointed at seeded rows, deterministically."""

    def pick(values: list[Any], key: object) -> Any:
        return values[len(str(key)) % len(values)]

    body = case.body if isinstance(case.body, dict) else {}
    query = case.query if isinstance(case.query, dict) else {}
    generated = query.get("target_sqid", body.get("target_sqid"))
    scope = seed.own if generated is None or len(str(generated)) % 2 else seed.other
    for container in (query, body):
        if "target_sqid" in container:
            container["target_sqid"] = scope.sqid
    # The schema cannot say "post_ids, or filter": a body with neither gets ids.
    bare = "post_ids" not in body and "filter" not in body
    if bare and case.path in ("/api/pmd/action", "/api/pmd/license"):
        body["post_ids"] = scope.post_ids[:1]
    if case.path == "/api/pmd/license":
        # Generated ids and filters fail: the aimed relicense is of a seeded post to a real one.
        cleared = "license_id" in body and body["license_id"] is None
        target = {"target_sqid": body["target_sqid"]} if "target_sqid" in body else {}
        body.clear()
        body.update(license_id=None if cleared else seed.license_id, **target)
        # The last seeded post, which no aimed delete picks.
        body["post_ids"] = scope.post_ids[-1:]
    if isinstance(body.get("post_ids"), list) and case.path != "/api/pmd/license":
        ids = [pick(scope.post_ids, i) if isinstance(i, int) else i for i in body["post_ids"]]
        body["post_ids"] = list(dict.fromkeys(ids))
    if case.path == "/api/pmd/policies" and case.method.upper() == "POST":
        # The seeded posts are new: a policy (at least a day's age) would change none of them.
        body["expect_count"] = 0
        body.pop("expect_digest", None)
    headers = case.headers if isinstance(case.headers, dict) else {}
    if "Range" in headers:  # a byte range (some past the end of the ZIP) instead of noise
        start = len(str(headers["Range"])) * 331 % 4000
        headers["Range"] = f"bytes={start}-{start + len(scope.bdr_ids) * 100}"
    params = case.path_parameters or {}
    if "id" in params and "/exports/" in case.path:
        # A removal takes the second export: the first stays for the reads and downloads.
        params["id"] = scope.export_ids[-1 if case.method.upper() == "DELETE" else 0]
    elif "id" in params and "/actions/" in case.path:
        params["id"] = pick(scope.action_ids, params["id"])
    elif "id" in params and "/policies/" in case.path:
        params["id"] = scope.policy_ids[-1 if case.method.upper() == "DELETE" else 0]
    elif "id" in params:
        params["id"] = pick(scope.bdr_ids, params["id"])
    if "n" in params:
        params["n"] = 1  # the seeded exports' one part
    return case


def fuzz(
    base_url: str, seed: Seed, *, cases: int, on_operation: Callable[[str, int], None] | None = None
) -> Report:
    """About `cases` generated requests spread over every operation, each failed check counted."""
    schema = schemathesis.openapi.from_dict(
        requests.get(f"{base_url}/openapi.json", timeout=10).json()
    )
    report = Report()
    operations: list[Any] = []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:  # the document itself is broken: that is a violation too
            report.violations.append(f"invalid operation in /openapi.json: {result.err()}")
    # Removals last: the other operations should find the seeded BDRs still there.
    operations.sort(key=lambda op: op.method.lower() == "delete")
    # An operation without parameters or body has one possible request: one case.
    fixed = [op for op in operations if not _has_inputs(op)]
    per_op = max(3, math.ceil((cases - len(fixed)) / max(1, len(operations) - len(fixed))))
    session = requests.Session()
    for op in operations:
        label = f"{op.method.upper()} {op.path}"
        positive = op.as_strategy(generation_mode=GenerationMode.POSITIVE)
        plans: list[tuple[Any, int]] = [(positive, 1)]
        if _has_inputs(op):  # a third as generated, a third aimed at seeded rows, a third not
            negative = op.as_strategy(generation_mode=GenerationMode.NEGATIVE)
            plans = [
                (positive, per_op // 3),
                (positive.map(lambda c: aim(seed, c)), per_op // 3),
                (negative, per_op - 2 * (per_op // 3)),
            ]
        test = functools.partial(_one, base_url, session, seed.token, label, report)
        for strategy, n in plans:
            _run(strategy, n, test)
        if on_operation is not None:
            on_operation(label, report.cases[label])
    session.close()
    return report


def _run(strategy: Any, n: int, test: Callable[[Any], None]) -> None:
    """`test` on the same `n` cases of `strategy` every run."""

    @hypothesis.settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(strategy)
    def run(case: Any) -> None:
        test(case)

    run()


def _has_inputs(op: Any) -> bool:
    return bool(op.definition.raw.get("parameters") or op.definition.raw.get("requestBody"))


def _one(
    base_url: str, session: requests.Session, token: str, label: str, report: Report, case: Any
) -> None:
    report.cases[label] += 1
    headers = {"Authorization": f"Bearer {token}"}
    if case.operation.schema.is_security_param_negated(case):
        headers = {}  # a negative case without (valid) credentials: sent as generated
    try:
        if case.operation.path == STREAM_PATH:
            # The stream never ends by itself: take the headers, then look at its first bytes.
            kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
            raw = session.request(**kwargs, timeout=10, stream=True)
            report.count(label, raw.status_code)
            if raw.status_code == 200:
                first = next(raw.iter_content(64), b"")
                raw.close()
                if not (
                    raw.headers.get("Content-Type", "").startswith("text/event-stream")
                    and first.startswith(b"retry:")
                ):
                    report.violations.append(f"{label}: stream opened without event-stream/retry")
                return
            response = schemathesis.Response.from_requests(raw, verify=False)
        else:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=10)
            report.count(label, response.status_code)
    except requests.RequestException as exc:
        report.violations.append(
            f"{label}: no response ({type(exc).__name__}: {exc}) for {_curl(case)}"
        )
        return
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines()[:6] if line.strip()]
        why = " | ".join(lines)
        report.violations.append(f"{label}: {response.status_code}: {why} for {_curl(case)}")


def _curl(case: Any) -> str:
    with contextlib.suppress(Exception):
        return str(case.as_curl_command())
    return repr(case)


async def seed_database(settings: Settings, database_url: str | None = None) -> Seed:
    async with connected(database_url or settings.database_url, "pmd-bench") as conn:
        seeder = Factory(conn, settings)
        license_id = await seeder.license("CC0")
        own = await _seed_user(seeder, "fuzzer", ["user", "moderator"])
        other = await _seed_user(seeder, "fuzzed", ["user"])
        own.action_ids = await _seed_actions(seeder, own, None)
        other.action_ids = await _seed_actions(seeder, other, own)
    token = mint_token(
        settings.jwt_secret_key, own.sqid, ttl_seconds=3600, roles=["user", "moderator"]
    )
    return Seed(token=token, own=own, other=other, license_id=license_id)


async def _seed_user(seeder: Factory, handle: str, roles: list[str]) -> Scope:
    user = await seeder.user(handle, roles)
    post_ids = await seeder.posts_bulk(user, SEED_POSTS, title=f"{handle} art")
    ready = uuid.uuid4()
    zipped = _zip(seeder.settings.zip_path, f"{user.sqid}/pmd-{ready}.zip", BDR_ENTRIES)
    del zipped["sha256"]  # a BDR's is file_sha256, which the seeded one goes without
    await bdr_row(seeder.pool, user.id, post_ids[:1], id=ready, **zipped, **_ready())
    bdrs = [str(ready)]
    for ids, status in ((post_ids[:1], "pending"), (post_ids[:2], "failed")):
        bdrs.append(str(await bdr_row(seeder.pool, user.id, ids, status=status)))
    exports = [await _seed_export(seeder, user.id, user.sqid) for _ in range(2)]
    # A recurring schedule (due in a month), so that cancelling one can succeed.
    await seeder.row(
        "export_schedules",
        "user_id",
        user_id=user.id,
        user_sqid=user.sqid,
        every_days=30,
        remaining=2,
        next_at=datetime.now(UTC) + timedelta(days=30),
        part_bytes=2**30,
        include_comments=True,
        include_reactions=True,
        include_upscaled=False,
        send_email=False,
    )
    policies = [
        str(
            await seeder.row(
                "cleanup_policies",
                owner_id=user.id,
                name=f"Rule {n}",
                action="hide",
                older_than_days=365,
                every="week",
                next_run_at=datetime.now(UTC) + timedelta(days=7),
            )
        )
        for n in range(2)
    ]
    return Scope(user.sqid, user.id, post_ids, bdrs, exports, policy_ids=policies)


def _ready() -> dict[str, Any]:
    """The columns of a BDR or an export that became ready now, for a week."""
    now = datetime.now(UTC)
    return {
        "status": "ready",
        "progress_done": 1,
        "started_at": now,
        "completed_at": now,
        "expires_at": now + timedelta(days=7),
    }


async def _seed_actions(seeder: Factory, owner: Scope, actor: Scope | None) -> list[str]:
    """Bulk actions to undo, a hide of one post each, by the owner or by `actor`."""
    out = []
    for post_id in owner.post_ids[:8]:
        action = await seeder.row(
            "bulk_actions",
            owner_id=owner.user_id,
            action="hide",
            actor_id=actor and actor.user_id,
            changed_count=1,
            post_ids=[post_id],
            wrote_flag=True,
        )
        out.append(str(action))
    return out


def _zip(zip_path: Path, name: str, entries: dict[str, bytes]) -> dict[str, Any]:
    """A ZIP of `entries` at `name` under `zip_path`: the columns a row records of it."""
    path = zip_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for entry, data in entries.items():
            zf.writestr(entry, data)
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    return {"file_path": f"bdr/{name}", "file_size_bytes": len(data), "sha256": sha256}


async def _seed_export(seeder: Factory, user_id: int, sqid: str) -> str:
    ready = uuid.uuid4()
    part = {f"makapix-export-{str(ready)[:8]}-part-1/bagit.txt": b"BagIt-Version: 1.0\n"}
    zipped = _zip(seeder.settings.zip_path, f"pmd-exports/{ready}/part-1.zip", part)
    await seeder.row(
        "exports",
        id=ready,
        user_id=user_id,
        user_sqid=sqid,
        part_bytes=2**30,
        artwork_count=1,
        created_at=datetime.now(UTC) - timedelta(days=30),
        **_ready(),
    )
    await seeder.row(
        "export_parts",
        "export_id",
        export_id=ready,
        number=1,
        status="ready",
        post_ids=[1],
        artwork_count=1,
        estimated_bytes=100,
        **zipped,
    )
    return str(ready)


async def bench(cases: int) -> int:
    redis = None
    if not os.environ.get("REDIS_URL"):
        # A Redis of its own: the shared one stops when whichever benchmark exits first.
        redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="pmd-fuzz-redis-")))
        os.environ["REDIS_URL"] = await asyncio.to_thread(redis.start)
    try:
        async with fresh_stack() as settings:
            seed = await seed_database(settings)
            port = free_port()
            # A daily limit no run reaches, so BDR creation keeps exercising its happy path.
            env = service_env(settings, BDR_DAILY_LIMIT="10000", SSE_MAX_PER_USER="1000")
            server = await asyncio.to_thread(start_server, env, port)
            try:
                started = time.monotonic()
                report = await asyncio.to_thread(
                    fuzz,
                    f"http://127.0.0.1:{port}",
                    seed,
                    cases=cases,
                    on_operation=lambda label, n: print(f"  ... {label}: {n}", flush=True),
                )
                elapsed = time.monotonic() - started
                alive = server.poll() is None
            finally:
                stop(server)
    finally:
        if redis is not None:
            redis.stop()
            del os.environ["REDIS_URL"]
    print(f"fuzzed {report.total} cases over {len(report.cases)} operations in {elapsed:.1f} s")
    print("\n".join(report.lines()))
    print(f"server still running at the end: {alive}")
    ok = report.total >= cases and not report.violations and not report.server_errors and alive
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1200, help="about this many, in all")
    raise SystemExit(asyncio.run(bench(parser.parse_args().cases)))
