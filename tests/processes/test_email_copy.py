"""A copy file in EMAIL_COPY_DIR that the emails cannot use stops every process at start, with
one line naming the file and the key: nothing is ever sent half-translated.

Each case runs an entry point as an operator would, with PostgreSQL and Redis URLs where nothing
listens: a check that came later than the start, or not at all, would end in a line about an
unreachable server instead (or a traceback)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import msgspec
import pytest

from pmd_service.core.settings import Settings
from support.stack import free_port
from tests.helpers import SECRET
from tests.procs import ARQ_WORKER, CLI, run

CLOSED_PORT = free_port()


def _env(folder: Path, data: Path) -> dict[str, str]:
    fields = msgspec.inspect.type_info(Settings)
    assert isinstance(fields, msgspec.inspect.StructType)
    names = {f.encode_name for f in fields.fields}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("PMD_")}
    return env | {
        "DATABASE_URL": f"postgresql://pmd@127.0.0.1:{CLOSED_PORT}/pmd",
        "REDIS_URL": f"redis://127.0.0.1:{CLOSED_PORT}/0",
        "JWT_SECRET_KEY": SECRET,
        "PMD_DATA_DIR": str(data),
        "STARTUP_WAIT_SECONDS": "0",
        "PORT": str(free_port()),
        "METRICS_PORT": "0",
        "AUTO_MIGRATE": "false",
        "LOG_FORMAT": "text",
        "EMAIL_COPY_DIR": str(folder),
    }


BAD_JSON = ('{"bdr_ready": "Listo",\n "bdr_count": "Contiene {count} obras."\n', "line 3")
BAD_PLACEHOLDER = ('{"bdr_expiry": "Caduca el {expiry}."}', "key bdr_expiry: {expiry}")
ENTRIES = {
    "serve": [*CLI, "serve"],
    "server.py": [sys.executable, "server.py"],
    "worker": [*CLI, "worker"],
    "arq worker.WorkerSettings": ARQ_WORKER,
    "sweep": [*CLI, "sweep"],
}
CASES = [
    ("serve", BAD_JSON),
    ("server.py", BAD_PLACEHOLDER),
    ("worker", BAD_PLACEHOLDER),
    ("arq worker.WorkerSettings", BAD_JSON),
    ("sweep", BAD_PLACEHOLDER),
]


@pytest.mark.parametrize(("entry", "bad"), CASES, ids=[f"{e}-{b[1]}" for e, b in CASES])
async def test_a_bad_copy_file_is_one_line_at_start(
    entry: str, bad: tuple[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "de.json").write_text(json.dumps({"bdr_button": "Herunterladen"}))  # fine
    text, named = bad
    (folder / "es.json").write_text(text)
    status, proc = await run(ENTRIES[entry], _env(folder, tmp_path), 60)
    shown = f"status {status}\n{proc.log()}"
    lines = [line for line in proc.err if line.strip()]
    assert status == 2, shown
    assert not any("Traceback" in line for line in proc.err) and proc.out == [], shown
    assert len(lines) == 1, shown
    assert "configuration error: EMAIL_COPY_DIR" in lines[0], shown
    assert f"{folder / 'es.json'}: " in lines[0] and named in lines[0], shown
