"""What the real processes print: with LOG_FORMAT=json every line of the server, the worker
(both `python -m pmd_service worker` and `arq worker.WorkerSettings`) and the CLI, stdout and
stderr alike, is one JSON object; in text mode every line is one of the service's log lines, and
none is written twice (arq's own handler used to write each arq line a second time)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from pmd_service.core.settings import Settings
from support.seeding import Factory
from support.stack import WORKER, free_port, service_env
from tests.helpers import eventually
from tests.procs import ARQ_WORKER, CLI, SERVE, TEXT_LINE, Proc, run


def _objects(proc: Proc) -> list[dict[str, Any]]:
    objects = []
    for line in proc.lines:
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\n{proc.log()}") from None
        assert isinstance(value, dict), line
        assert {"ts", "level", "logger", "msg"} <= value.keys(), line
        objects.append(value)
    return objects


async def _a_bdr_built_by_the_processes(
    settings: Settings, factory: Factory, pool: asyncpg.Pool, tmp_path: Path, log_format: str
) -> tuple[list[Proc], int]:
    """Server and both kinds of worker started, a BDR requested over HTTP and built, all
    stopped with SIGTERM: their output, each process's own."""
    port = free_port()
    env = service_env(settings, tmp_path, LOG_FORMAT=log_format, PORT=str(port))
    procs = [
        await Proc.start(SERVE, env, "server"),
        await Proc.start(WORKER, env, "worker"),
        await Proc.start(ARQ_WORKER, env, "arq worker"),
    ]
    try:
        server, worker, arq_worker = procs
        await server.line(lambda s: "listening on http://127.0.0.1:" in s)
        await worker.line(lambda s: "worker ready" in s)
        await arq_worker.line(lambda s: "worker ready" in s)
        user = await factory.user()
        post = await factory.post(user)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/api/pmd/bdr"
            async with http.post(url, json={"post_ids": [post.id]}, headers=user.auth) as resp:
                assert resp.status == 202, await resp.text()
                bdr = (await resp.json())["id"]
            async with http.get(f"http://127.0.0.1:{port}/nowhere") as resp:
                assert resp.status == 404

        async def ready() -> bool:
            status = await pool.fetchval(
                "SELECT status FROM batch_download_requests WHERE id = $1::uuid", bdr
            )
            return bool(status == "ready")

        await eventually(ready, 60, lambda: "\n".join(p.log() for p in procs))
        for proc in procs:
            assert await proc.stop() == 0, proc.log()
        return procs, port
    finally:
        for proc in procs:
            await proc.kill()


async def test_json_mode_every_line_of_every_process_is_one_object(
    settings: Settings, factory: Factory, pool: asyncpg.Pool, tmp_path: Path, redis_clean: None
) -> None:
    procs, port = await _a_bdr_built_by_the_processes(settings, factory, pool, tmp_path, "json")
    server, worker, arq_worker = (_objects(p) for p in procs)
    listening = [o["msg"] for o in server if o["msg"].startswith("listening")]
    assert listening == [f"listening on http://127.0.0.1:{port}"]
    reference = [o["msg"] for o in server if o["msg"].startswith("API reference")]
    assert reference == [f"API reference at http://127.0.0.1:{port}/api/pmd/docs"]
    for lines in (worker, arq_worker):
        assert any(o["logger"] == "arq.worker" for o in lines)  # arq's lines, as JSON
        ready = [o["msg"] for o in lines if o["msg"].startswith("worker ready")]
        assert ready == ["worker ready: queue arq:queue, up to 4 jobs at once, metrics off"]
    built = [o for o in worker + arq_worker if o["logger"] == "pmd_service.features.bdr.job"]
    assert any("ready" in o["msg"] for o in built)

    env = service_env(settings, tmp_path, LOG_FORMAT="json")
    for argv in (["stats"], ["cleanup"], ["token", "nobody"]):
        code, cli = await run([*CLI, *argv], env)
        objects = _objects(cli)
        if argv == ["stats"]:
            assert code == 0
            assert [o["result"]["processing_now"] for o in objects if "result" in o] == [0]
        elif argv == ["cleanup"]:
            assert code == 0
            assert sum(o["msg"].startswith("cleanup: ") for o in objects) >= 3  # its progress
            assert "purged" in next(o["result"] for o in objects if "result" in o)
        else:
            assert code == 2
            assert [o["msg"] for o in objects] == ["no user has the public id 'nobody'"]


async def test_json_mode_setup_errors_uncaught_exceptions_and_warnings_are_objects(
    settings: Settings, tmp_path: Path
) -> None:
    env = service_env(settings, tmp_path, LOG_FORMAT="json", PORT="eighty")
    for argv in (SERVE, WORKER, [*CLI, "stats"]):
        code, proc = await run(argv, env)
        assert code == 2
        objects = _objects(proc)
        assert len(objects) == 1, proc.log()
        assert objects[0]["level"] == "error"
        assert "PORT" in objects[0]["msg"] and "eighty" in objects[0]["msg"]

    script = (
        "import warnings\n"
        "from pmd_service.core import logs\n"
        "logs.configure(logs.format_from_env())\n"
        "warnings.warn('careful')\n"
        "raise LookupError('nothing here')\n"
    )
    code, proc = await run([sys.executable, "-c", script], env)
    assert code == 1
    warning, uncaught = _objects(proc)
    assert warning["logger"] == "py.warnings" and "careful" in warning["msg"]
    assert uncaught["level"] == "critical"
    assert "LookupError: nothing here" in uncaught["exc"]


async def test_text_mode_every_line_once_in_the_services_format(
    settings: Settings, factory: Factory, pool: asyncpg.Pool, tmp_path: Path, redis_clean: None
) -> None:
    procs, _ = await _a_bdr_built_by_the_processes(settings, factory, pool, tmp_path, "text")
    for proc in procs:
        # arq's own handler wrote `HH:MM:SS: message` beside each of the service's lines.
        assert all(TEXT_LINE.match(line) for line in proc.lines), proc.log()
        messages = Counter(line.split("]: ", 1)[1] for line in proc.lines)
        assert messages[
            "Starting worker for 5 functions: process_bdr, process_export, "
            "cron:sweep, cron:cleanup_expired_bdrs, cron:cleanup_policies"
        ] == (proc.name != "server")
        twice = [line for line, n in Counter(proc.lines).items() if n > 1]
        assert not twice, proc.log()
