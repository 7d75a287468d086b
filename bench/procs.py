"""Child processes for the bench: spawn, JSON lines from stdout, /proc CPU time, clean-up.

Children run in their own session so a Ctrl-C reaches only the parent, which then
stops them in order; `Children` terminates (then kills) whatever is still running
when the `with` block exits, whatever the reason.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Child:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str] | None, logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.stderr"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, env=env, start_new_session=True, text=True
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"{name}-stdout").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def json_line(self, timeout: float) -> dict[str, Any]:
        """The next JSON object the child prints (other lines are echoed to stderr)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no output within {timeout:.0f} s{self.tail()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait()
                raise RuntimeError(f"{self.name}: exited {self.proc.returncode}{self.tail()}")
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                print(f"[{self.name}] {line.rstrip()}", file=sys.stderr)
                continue
            if isinstance(value, dict):
                return value

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        value = self.json_line(timeout)
        if value.get("event") != event:
            raise RuntimeError(f"{self.name}: expected {event!r}, got {value}")
        return value

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return ("\n  " + "\n  ".join(lines)) if lines else ""

    def wait(self, timeout: float = 10.0) -> int | None:
        """Wait for a child that is finishing on its own; stop it if it does not."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.stop()
        self._log.close()
        return self.proc.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal, wait; kill after timeout. The exit code, or None when it had to be killed."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                return None
        self._log.close()
        return self.proc.returncode


class Children:
    """Every child started through it is stopped when the block exits."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[Child] = []
        self._old: dict[int, Any] = {}

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, cmd, env, self.logdir)
        self.children.append(child)
        return child

    def __enter__(self) -> Self:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, _raise_exit)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        for child in reversed(self.children):
            if child.alive():
                child.stop(signal.SIGTERM, timeout=5.0)
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def use_uvloop(prog: str | None = None) -> None:
    """Run the child's event loop on uvloop, as `gateway run` does; without it, plain asyncio
    (a line on stderr naming prog, when given)."""
    try:
        import uvloop
    except ImportError:
        if prog is not None:
            print(f"{prog}: uvloop not installed, using asyncio", file=sys.stderr)
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
