"""arq's settings class for `arq pmd_service.worker_settings.WorkerSettings`; reads settings."""

from __future__ import annotations

from .worker import arq_command_settings, worker_options

SETTINGS = arq_command_settings()

# arq reads its attributes as the Worker's keyword arguments: the supported form's options.
WorkerSettings = type(
    "WorkerSettings",
    (),
    {
        "__doc__": "The options `worker_options` gives (a test holds arq's reading of them).",
        **worker_options(SETTINGS, wait_for_services=True),
    },
)
