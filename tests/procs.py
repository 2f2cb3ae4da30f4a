"""The service's real processes, for tests of what they print."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from support.stack import CHECKOUT

SERVE = [sys.executable, "-m", "pmd_service", "serve"]
ARQ_WORKER = [str(Path(sys.executable).with_name("arq")), "worker.WorkerSettings"]
CLI = [sys.executable, "-m", "pmd_service"]

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ \[[^\]]*\]: ")


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = asyncio.Event()
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.out)),
            asyncio.create_task(self._read(proc.stderr, self.err)),
        ]

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str], name: str = "") -> Proc:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=CHECKOUT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, name or " ".join(argv[-2:]))

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode("utf-8", "replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def lines(self) -> list[str]:
        return self.out + self.err

    def log(self) -> str:
        return "\n".join([f"--- {self.name} stdout:", *self.out, "--- stderr:", *self.err])

    async def line(self, match: Callable[[str], bool], within: float = 60) -> str:
        async def found() -> str:
            while True:
                for line in self.lines:
                    if match(line):
                        return line
                if self.proc.returncode is not None and all(r.done() for r in self._readers):
                    raise AssertionError(f"{self.name} exited first\n{self.log()}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(found(), within)
        except TimeoutError:
            raise AssertionError(f"no such line within {within} s\n{self.log()}") from None

    async def stop(self, sig: int = signal.SIGTERM, within: float = 30) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.wait(within)

    async def wait(self, within: float = 60) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"{self.name} did not exit within {within} s\n{self.log()}"
            ) from None
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def run(argv: list[str], env: dict[str, str], within: float = 120) -> tuple[int, Proc]:
    proc = await Proc.start(argv, env)
    return await proc.wait(within), proc


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: pmd\r\n\r\n"


async def answered(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes, within: float = 30
) -> bytes:
    """The status line of the answer to `request` on `conn`, its body read."""
    reader, writer = conn
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head.split(b"\r\n")[0]
