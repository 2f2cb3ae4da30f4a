"""arq's settings class for the `arq` command: `arq worker.WorkerSettings` from a checkout or the
image (worker.py), `arq pmd_service.worker_settings.WorkerSettings` anywhere.

Importing it reads the settings (arq imports it to run it) and has the `arq` command run the
guarded `PmdWorker` with the options `python -m pmd_service worker`, the supported form, runs
(`worker_options`, pmd_service/worker.py).
"""

from __future__ import annotations

from .worker import arq_command_settings, worker_options

SETTINGS = arq_command_settings()

# arq reads a settings class's attributes as the Worker's keyword arguments: these are the
# supported form's options, made by the same call, with on_startup also waiting for PostgreSQL
# (which that form waits for before it starts the Worker).
WorkerSettings = type(
    "WorkerSettings",
    (),
    {
        "__doc__": "The options `worker_options` gives (a test holds arq's reading of them).",
        **worker_options(SETTINGS, wait_for_services=True),
    },
)
