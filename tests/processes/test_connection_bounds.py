"""What bounds a connection to `python -m pmd_service serve` (web/connections.py): a head that
does not come, a body that does not come, connections past MAX_CONNECTIONS, a descriptor limit
of 1,024, and accepts that fail. The server is a real process; its clients raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from pmd_service.core.settings import Settings
from support.seeding import Factory
from support.stack import free_port, service_env
from tests.helpers import CHECKOUT
from tests.procs import HEALTHZ, SERVE, Proc, answered

HANG_GUARD = 30  # a bound on waits that would otherwise hang; never a timing assertion
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _limit(soft: int, hard: int | None = None) -> Callable[[], None]:
    def apply() -> None:
        top = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, top if hard is None else hard))

    return apply


@contextlib.asynccontextmanager
async def server(
    settings: Settings, tmp_path: Path, limit: Callable[[], None] | None = None, **env: str
) -> AsyncIterator[tuple[Proc, int]]:
    port = free_port()
    environ = service_env(settings, tmp_path, PORT=str(port), **env)
    proc = Proc(
        await asyncio.create_subprocess_exec(
            *SERVE,
            cwd=CHECKOUT,
            env=environ,
            preexec_fn=limit,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        ),
        "server",
    )
    try:
        await proc.line(lambda s: f"listening on http://127.0.0.1:{port}" in s)
        yield proc, port
    finally:
        await proc.stop()


async def connect(port: int) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed(conn: Conn, within: float = HANG_GUARD) -> bytes | None:
    """What the server sent before it closed the connection; None if it stayed open."""
    reader, writer = conn
    try:
        async with asyncio.timeout(within):
            return await reader.read()
    except TimeoutError:
        return None
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def healthz(port: int, within: float = 10) -> int:
    timeout = aiohttp.ClientTimeout(total=within)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        return resp.status


async def metric(port: int, name: str) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    return sum(float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_a_head_that_does_not_come_in_time_is_cut(settings: Settings, tmp_path: Path) -> None:
    """A connection that sends nothing, one that trickles its head (a byte every 0.2 s, as a
    slowloris does), and one that starts a second request after an idle keep-alive and stops:
    each is closed, unanswered, once HEADER_TIMEOUT_SECONDS (1 s here) has passed since its
    start or since that request's first byte. The keep-alive between requests is not the head's
    bound: a connection idle 2 s after an answer is answered again."""
    async with server(settings, tmp_path, HEADER_TIMEOUT_SECONDS="1") as (_, port):
        silent, trickling, second, idle = [await connect(port) for _ in range(4)]
        assert await answered(second, HEALTHZ) == b"HTTP/1.1 200 OK"
        assert await answered(idle, HEALTHZ) == b"HTTP/1.1 200 OK"

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: pmd\r\nX-Slow: " + b"a" * 500:
                    trickling[1].write(bytes([byte]))
                    await asyncio.sleep(0.2)

        dripping = asyncio.create_task(trickle())
        await asyncio.sleep(2)
        assert await answered(idle, HEALTHZ) == b"HTTP/1.1 200 OK"  # idle 2 s, still kept
        second[1].write(b"GET /healthz HTTP/1.1\r\nHo")
        results = await asyncio.gather(closed(silent), closed(trickling), closed(second))
        dripping.cancel()
        assert list(results) == [b"", b"", b""], results
        assert await metric(port, "pmd_connections_heads_late_total") == 3
        idle[1].close()


async def test_a_body_its_handler_left_unread_starts_no_head_deadline(
    settings: Settings, tmp_path: Path
) -> None:
    """A request answered without its body being read (401: no credentials), whose body comes
    after the answer: those bytes are that body's (aiohttp reads and drops them), not the first
    of a new request's head, so the connection, idle past HEADER_TIMEOUT_SECONDS after them,
    is kept and answers its next request."""
    async with server(settings, tmp_path, HEADER_TIMEOUT_SECONDS="1") as (_, port):
        conn = await connect(port)
        body = b'{"post_ids": [1]}'
        head = (
            b"POST /api/pmd/bdr HTTP/1.1\r\nHost: pmd\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        assert await answered(conn, head) == b"HTTP/1.1 401 Unauthorized"
        conn[1].write(body)
        await asyncio.sleep(2)  # idle past the head's deadline, were one running
        assert await answered(conn, HEALTHZ) == b"HTTP/1.1 200 OK"
        conn[1].close()


async def test_a_body_that_does_not_come_in_time_is_answered_408_and_closed(
    settings: Settings, factory: Factory, tmp_path: Path
) -> None:
    user = await factory.user()
    auth = user.auth["Authorization"].encode()
    async with server(settings, tmp_path, BODY_TIMEOUT_SECONDS="1") as (_, port):
        conn = await connect(port)
        writer = conn[1]
        writer.write(
            b"POST /api/pmd/bdr HTTP/1.1\r\nHost: pmd\r\nAuthorization: " + auth + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"post_ids": '
        )
        sent = await closed(conn)
        assert sent is not None, "the connection is still open"
        assert sent.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), sent
        assert b"did not arrive within 1 s" in sent and b'"reason":"body_timeout"' in sent


async def test_connections_past_max_connections_get_a_quick_503(
    settings: Settings, tmp_path: Path
) -> None:
    async with server(settings, tmp_path, MAX_CONNECTIONS="20") as (proc, port):
        held = [await connect(port) for _ in range(20)]
        assert await answered(held[0], HEALTHZ) == b"HTTP/1.1 200 OK"
        sent = await closed(await connect(port))
        assert sent is not None and sent.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"MAX_CONNECTIONS" in sent and b"Retry-After: 1\r\n" in sent
        held.pop()[1].close()  # one slot free again: the next connection is served

        async def served() -> bool:
            conn = await connect(port)
            try:
                return await answered(conn, HEALTHZ) == b"HTTP/1.1 200 OK"
            except (asyncio.IncompleteReadError, ConnectionError):
                return False
            finally:
                conn[1].close()

        for _ in range(50):
            if await served():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no connection served after one was closed")
        await proc.line(lambda s: "connection(s) refused in the last second: 20 open" in s)
        # At least the one above (a connection after the slot came free may have come first).
        assert await metric(port, "pmd_connections_refused_total") >= 1
        assert 19 <= await metric(port, "pmd_connections_open") <= 20  # 19 held, the scrape's
        for _, writer in held:
            writer.close()


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line")


def _accept_lines(proc: Proc) -> list[str]:
    """Lines about failed accepts: the service's, or asyncio's own (each with a traceback)."""
    return [line for line in proc.lines if "accept(s) failed" in line or "socket.accept" in line]


async def test_a_soft_limit_of_1024_does_not_stop_healthz_past_1100_idle_connections(
    settings: Settings, tmp_path: Path
) -> None:
    """A container's soft descriptor limit is 1,024 (its hard one far higher): the process
    raises it to the hard one, so 1,100 idle connections leave /healthz answering (they held
    every descriptor, and each accept failed with a traceback: ~1,500 lines a second)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard >= 4096, f"this machine's hard limit ({hard}) leaves nothing to raise to"
    limit = _limit(1024, hard)
    env = {"HEADER_TIMEOUT_SECONDS": "120"}  # the idle connections stay for the whole test
    async with server(settings, tmp_path, limit, **env) as (proc, port):
        idle = [await connect(port) for _ in range(1100)]
        await asyncio.sleep(1)
        assert await healthz(port) == 200
        assert _accept_lines(proc) == [], proc.log()[-3000:]
        assert proc.proc.pid is not None and _soft_limit(proc.proc.pid) == hard
        for _, writer in idle:
            writer.close()


async def test_failed_accepts_are_one_line_a_second_with_a_count(
    settings: Settings, tmp_path: Path
) -> None:
    """Where the descriptors do run out (a hard limit of 256 and a MAX_CONNECTIONS above it, as
    an operator may set it), each second's failed accepts are one warning with their count, no
    traceback; once connections close the server answers again."""
    env = {"HEADER_TIMEOUT_SECONDS": "120", "MAX_CONNECTIONS": "1000"}
    async with server(settings, tmp_path, _limit(256, 256), **env) as (proc, port):
        await proc.line(lambda s: "MAX_CONNECTIONS=1000 is more than the descriptor limit" in s)
        idle = [await connect(port) for _ in range(400)]
        await proc.line(lambda s: "accept(s) failed in the last second" in s)
        await asyncio.sleep(3)
        lines = _accept_lines(proc)
        for _, writer in idle:
            writer.close()
        assert 1 <= len(lines) <= 5, "\n".join(lines[:20])
        assert all("Too many open files" in line for line in lines), lines
        assert not any("Traceback" in line for line in proc.lines), proc.log()[-3000:]
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                if await healthz(port, within=2) == 200:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no answer once the connections closed\n{proc.log()[-3000:]}")
