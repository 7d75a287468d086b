"""Run the simulator in the foreground until cancelled (Ctrl-C, SIGTERM, or the caller)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

from gateway.simulator.smsc import Simulator
from gateway.tls import ServerFiles, build_server_context

EXAMPLE_MO = {"from": "15551230000", "to": "15550001111", "text": "STOP"}


def usage_line(host: str, smpp_port: int, http_port: int | None) -> str:
    line = f"carrier simulator: SMPP on {host}:{smpp_port}"
    if http_port is not None:
        line += (
            f"; inject an MO with: curl -s -X POST http://{host}:{http_port}/mo"
            f" -H 'Content-Type: application/json' -d '{json.dumps(EXAMPLE_MO)}'"
        )
    return line


async def serve(
    host: str = "127.0.0.1",
    port: int = 2776,
    http_port: int = 2780,
    *,
    system_id: str | None = None,
    password: str | None = None,
    receipt_delay: float = 0.0,
    handle_sigterm: bool = True,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
) -> None:
    """Run a Simulator until this task is cancelled, or SIGTERM (when enabled) returns normally.

    asyncio.run() turns Ctrl-C into cancellation of the main task (then KeyboardInterrupt);
    either way the `finally` unbinds and closes every session before we leave.
    """
    tls = None
    if tls_cert_file and tls_key_file:
        tls = build_server_context(ServerFiles("simulator", Path(tls_cert_file), Path(tls_key_file)))
    sim = Simulator(host, port, http_port, system_id, password, receipt_delay, tls=tls)
    await sim.start()
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    installed = False
    if handle_sigterm:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, terminated.set)
            installed = True
    try:
        print(usage_line(host, sim.smpp_port, sim.http_port), flush=True)
        await terminated.wait()
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)
        await sim.stop()
