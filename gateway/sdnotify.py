"""systemd's readiness protocol (sd_notify(3)) without libsystemd: datagrams to $NOTIFY_SOCKET.

Under `Type=notify` systemd passes NOTIFY_SOCKET (a path, or `@name` for an abstract socket)
and, with `WatchdogSec=`, WATCHDOG_USEC (and WATCHDOG_PID). `supervise()` sends READY=1 once
the gateway is ready (as `/readyz` would say), STATUS= whenever the status line changes, and
WATCHDOG=1 every half of WATCHDOG_USEC while the event loop runs; `run()` sends STOPPING=1 when
the shutdown begins. Without NOTIFY_SOCKET every call is a no-op and no task is started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)
POLL_INTERVAL = 0.25  # readiness and status are looked at this often (not on any message path)


def socket_address(value: str) -> str | None:
    """NOTIFY_SOCKET as an AF_UNIX address: '@name' is abstract ('\\0name'); None when unusable."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and relative paths are not supported


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Half of WATCHDOG_USEC in seconds, when it is set for this process (WATCHDOG_PID, if set)."""
    usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 1e6 / 2


class Notifier:
    """Sends state lines to systemd; never raises (a failed send is logged once)."""

    def __init__(self, address: str | None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address is not None else None
        self._sock: socket.socket | None = None
        self._warned = False
        self.ready_sent = False  # systemd knows the service as started (supervise sent READY=1)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("sd_notify_unsupported", extra={"notify_socket": raw})
        return cls(address, watchdog_interval(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify_failed", extra={"error": exc.strerror or str(exc)})
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def supervise(notifier: Notifier, ready: Callable[[], bool], status: Callable[[], str]) -> None:
    """Until cancelled: READY=1 once ready() is first true, STATUS= on change, WATCHDOG=1 on time."""
    loop = asyncio.get_running_loop()
    sent_ready = False
    last_status = ""
    next_watchdog = loop.time()
    while True:
        lines = []
        if not sent_ready and ready():
            sent_ready = notifier.ready_sent = True
            lines.append("READY=1")
        line = status()
        if line != last_status:
            last_status = line
            lines.append(f"STATUS={line}")
        now = loop.time()
        if notifier.watchdog is not None and now >= next_watchdog:
            next_watchdog = now + notifier.watchdog
            lines.append("WATCHDOG=1")
        if lines:
            notifier.notify(*lines)
        sleep = POLL_INTERVAL if notifier.watchdog is None else min(POLL_INTERVAL, notifier.watchdog)
        await asyncio.sleep(sleep)


def start(notifier: Notifier, ready: Callable[[], bool], status: Callable[[], str]) -> asyncio.Task[None] | None:
    """The supervise task when systemd listens, else None (nothing runs)."""
    if not notifier.enabled:
        return None
    return asyncio.create_task(supervise(notifier, ready, status), name="sd-notify")
