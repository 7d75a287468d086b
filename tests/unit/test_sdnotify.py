"""sd_notify over a real unix datagram socket: addresses, the watchdog interval, the no-op."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from gateway import sdnotify


@pytest.mark.parametrize("value, expected", [
    ("/run/systemd/notify", "/run/systemd/notify"), ("@gw/notify", "\0gw/notify"),
    ("@", None), ("relative/path", None), ("vsock:2:1234", None)])
def test_socket_address(value: str, expected: str | None) -> None:
    assert sdnotify.socket_address(value) == expected


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0), ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None), ({"WATCHDOG_USEC": "x"}, None), ({}, None)])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert sdnotify.watchdog_interval(env, 7) == expected


def test_unset_is_a_no_op() -> None:
    notifier = sdnotify.Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled and notifier.watchdog is None
    assert notifier.notify("READY=1") is False


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as sock:
        notifier = sdnotify.Notifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000",
                                                       "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog == 1.0
        assert notifier.notify("READY=1", "STATUS=ready")
        assert sock.recv(4096) == b"READY=1\nSTATUS=ready"
        notifier.close()


def test_abstract_socket() -> None:
    name = f"gateway-test-{uuid.uuid4().hex}"
    with _receiver("\0" + name) as sock:
        notifier = sdnotify.Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_a_socket_that_went_away_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = sdnotify.Notifier(str(tmp_path / "gone"))
    assert notifier.notify("READY=1") is False
    assert notifier.notify("READY=1") is False
    assert [r.message for r in caplog.records] == ["sd_notify_failed"]  # once
    notifier.close()
