"""`gateway run --pid-file` writes the process id; `gateway reload` sends SIGHUP to it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

DEFAULT_NAME = "gateway.pid"


class PidFileError(Exception):
    """A pid file that cannot be used: missing, unreadable, or naming no running gateway."""


def default_path() -> Path:
    """$RUNTIME_DIRECTORY/gateway.pid under systemd (RuntimeDirectory=), else ./gateway.pid."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / DEFAULT_NAME if runtime else Path(DEFAULT_NAME)


def write(path: Path) -> None:
    """Our pid, written whole (a temporary file renamed over it): a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


def remove(path: Path) -> None:
    """Remove the pid file if it still names us (another gateway may have taken it over)."""
    try:
        if read(path) == os.getpid():
            path.unlink()
    except (PidFileError, OSError):
        pass


def read(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise PidFileError(f"pid file {path} not found: is the gateway running with --pid-file {path}?") from None
    except OSError as exc:
        raise PidFileError(f"pid file {path}: {exc.strerror or exc}") from None
    if not text.isdigit() or int(text) < 1:
        raise PidFileError(f"pid file {path} holds {text[:20]!r}, not a process id")
    return int(text)


def send_reload(path: Path) -> int:
    """SIGHUP to the gateway the pid file names; its pid. PidFileError when the file is missing or
    stale (no such process, or one that is no gateway: never signalled)."""
    pid = read(path)
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        words = cmdline.read_bytes().split(b"\0")
    except FileNotFoundError:
        raise PidFileError(f"pid file {path} is stale: process {pid} is not running") from None
    except OSError:
        words = []  # no /proc (not Linux): the kill below still checks the process exists
    if words and not any(b"gateway" in w for w in words):
        raise PidFileError(f"pid file {path} is stale: process {pid} is not a gateway")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise PidFileError(f"pid file {path} is stale: process {pid} is not running") from None
    except PermissionError:
        raise PidFileError(f"not allowed to signal process {pid} (pid file {path}): run as its user") from None
    return pid
