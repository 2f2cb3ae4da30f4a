"""`arq worker.WorkerSettings` is arq's plain settings class, made of `worker_options`: arq reads
every option `python -m pmd_service worker` gets from it (each one a keyword of arq's Worker,
none dropped), each one the same."""

from __future__ import annotations

import os

from tests.helpers import run_python

COMPARE = """
import dataclasses, functools
import arq.worker
import worker
from pmd_service.worker import worker_options
from pmd_service.worker_settings import SETTINGS, WorkerSettings

assert worker.WorkerSettings is WorkerSettings and isinstance(WorkerSettings, type)
got = arq.worker.get_kwargs(WorkerSettings)
want = worker_options(SETTINGS, wait_for_services=True)
assert sorted(got) == sorted(want), (sorted(got), sorted(want))
for name, value in want.items():
    given = got[name]
    if isinstance(value, functools.partial):
        given, value = (given.func, given.keywords), (value.func, value.keywords)
    elif name == "redis_settings":  # its Retry is a new object each time
        assert type(given.retry) is type(value.retry)
        assert given.retry_on_error == value.retry_on_error
        given, value = dataclasses.replace(given, retry=None), dataclasses.replace(value, retry=None)
    assert given == value, (name, given, value)
print("same")
"""


def test_the_arq_command_s_class_holds_the_options_of_the_supported_form() -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": "postgresql://127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "JWT_SECRET_KEY": "k" * 32,
    }
    if "PYTHONPATH" in os.environ:  # a checkout run with its own path first
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = run_python("-c", COMPARE, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["same"]
