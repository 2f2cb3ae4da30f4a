"""Every way the worker starts runs the guarded worker (jobs/arq_adapter.py's PmdWorker): a try
count of text beside a valid job, which arq's own Worker raised on out of its poll loop, ends
neither `python -m pmd_service worker` nor the `arq` command under either settings path; each
removes that job with one line, builds the valid one, answers `arq --check` and stops cleanly."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from arq.constants import retry_key_prefix

from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import enqueue_bdr, job_id
from support.seeding import Factory, bdr_row
from support.stack import WORKER, eventually, service_env
from tests.procs import ARQ_WORKER, Proc, run

FORMS = {
    "python -m pmd_service worker": WORKER,
    "arq worker.WorkerSettings": ARQ_WORKER,
    "arq pmd_service.worker_settings.WorkerSettings": [
        ARQ_WORKER[0],
        "pmd_service.worker_settings.WorkerSettings",
    ],
}


@pytest.mark.parametrize("form", FORMS)
async def test_a_try_count_of_text_ends_no_form_of_the_worker(
    factory: Factory,
    pool: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
    redis_clean: None,
    form: str,
) -> None:
    owner = await factory.user()
    good, bad = [await bdr_row(pool, owner.id, [(await factory.post(owner)).id]) for _ in range(2)]
    bad_job = job_id(bad)
    assert settings.redis_url
    async with create_redis(settings.redis_url) as redis:
        for bdr in (good, bad):
            assert await enqueue_bdr(redis, bdr)
        await redis.set(retry_key_prefix + bad_job, "abc")  # arq INCRBYs it when it claims

    env = service_env(settings, tmp_path)
    worker = await Proc.start(FORMS[form], env, form)
    try:
        await worker.line(lambda s: f"job {bad_job} removed from the queue" in s)

        async def built() -> bool:
            status = await pool.fetchval(
                "SELECT status FROM batch_download_requests WHERE id = $1::uuid", good
            )
            return bool(status == "ready")

        await eventually(built, 60, worker.log)
        assert worker.proc.returncode is None, worker.log()
        code, check = await run([ARQ_WORKER[0], "--check", ARQ_WORKER[1]], env)
        assert code == 0, check.log()  # the image's health check, of this worker's heartbeat
        assert await worker.stop() == 0, worker.log()
    finally:
        await worker.kill()
    assert "Traceback" not in worker.log()
    assert sum(f"job {bad_job} removed" in line for line in worker.lines) == 1, worker.log()
