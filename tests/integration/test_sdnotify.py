"""`gateway run` under a real NOTIFY_SOCKET, as systemd's Type=notify runs it: READY=1 only once
the carrier is bound and the store open, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import Simulator
from tests.integration.test_cli import _env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """(NOTIFY_SOCKET's value, the bound datagram socket systemd would hold)."""
    if request.param == "path":
        value = address = str(tmp_path / "notify")
    else:
        value = "@gateway-test-" + uuid.uuid4().hex
        address = "\0" + value[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    yield value, sock
    sock.close()


class Messages:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[str] = []  # every line, in order

    async def until(self, line: str, after: int = 0, timeout: float = 20) -> int:
        """The index of the first `line` at or after `after`, waiting for it."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while line not in self.seen[after:]:
                data = await loop.sock_recv(self.sock, 4096)
                self.seen.extend(data.decode().split("\n"))
        return self.seen.index(line, after)


async def test_ready_watchdog_stopping(notify_socket: tuple[str, socket.socket], tmp_path: Path) -> None:
    value, sock = notify_socket
    carrier_port = free_port()  # no carrier yet: started, but not ready
    env = _env(
        NOTIFY_SOCKET=value, WATCHDOG_USEC="400000",  # WATCHDOG=1 every 0.2 s
        GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0", GATEWAY_CARRIER__PORT=str(carrier_port),
        GATEWAY_CARRIER__RECONNECT_MIN_INTERVAL="0.05", GATEWAY_CARRIER__RECONNECT_MAX_INTERVAL="0.2",
        GATEWAY_ACCOUNTS=json.dumps([{"system_id": "acme", "password": "secret"}]),
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/gw.db", GATEWAY_DRAIN_TIMEOUT="1",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    messages = Messages(sock)
    try:
        await messages.until("WATCHDOG=1")
        status = [line for line in messages.seen if line.startswith("STATUS=")]
        assert status and status[0].startswith("STATUS=not ready: no carrier session bound")
        assert "READY=1" not in messages.seen  # alive, not ready: systemd keeps it "activating"
        async with Simulator(smpp_port=carrier_port, http_port=None) as sim:
            ready_at = await messages.until("READY=1")
            assert sim.bound_count == 1
            assert messages.seen[ready_at + 1] == "STATUS=ready: 1 carrier session(s) bound"
            await messages.until("WATCHDOG=1", after=ready_at)
            proc.send_signal(signal.SIGHUP)  # systemctl reload: announced, then ready again
            reloading = await messages.until("RELOADING=1", after=ready_at)
            assert messages.seen[reloading + 1].startswith("MONOTONIC_USEC=")
            again = await messages.until("READY=1", after=reloading)
            assert messages.seen[again + 1] == "STATUS=reload applied"
            proc.send_signal(signal.SIGTERM)
            stopping = await messages.until("STOPPING=1", after=again)
            assert messages.seen.count("READY=1") == 2
            assert proc.stderr is not None
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0, err.decode()[-2000:]
            assert ready_at < stopping and "WATCHDOG=1" in messages.seen[ready_at:stopping]
            assert messages.seen[stopping + 1] == "STATUS=stopping: draining sessions"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
