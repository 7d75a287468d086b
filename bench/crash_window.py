"""How many receipt routes a crash loses: submits acked to the application but not yet persisted.

The gateway keeps message_id -> account in memory on the submit path and writes them to the
store in batches off the hot path. This kills it with SIGKILL mid-traffic and counts the acked
message ids that have no stored route.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time

from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.store import open_store
from tests.integration.client import RawClient, submit_sm


async def _spawn(sim_port: int, db: str) -> tuple[asyncio.subprocess.Process, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0", GATEWAY_CARRIER__PORT=str(sim_port),
               GATEWAY_ACCOUNTS=json.dumps([{"system_id": "bench", "password": "bench", "window": 200}]),
               GATEWAY_DATABASE_URL=f"sqlite:///{db}", GATEWAY_LOG_LEVEL="INFO")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "run", env=env,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode()
        if not line:
            raise RuntimeError("gateway exited before starting")
        if '"gateway_started"' in line:
            return proc, int(json.loads(line)["smpp_port"])


async def measure(rate: float = 5000.0, seconds: float = 2.0) -> dict[str, float]:
    sim = Simulator(http_port=None, receipt_delay=3600.0, keep_records=False)
    await sim.start()
    db = os.path.join(tempfile.mkdtemp(prefix="gw-crash-"), "gw.db")
    proc, port = await _spawn(sim.smpp_port, db)
    await sim.wait_until(lambda: sim.bound_count >= 1, timeout=20)
    client = await RawClient.connect(port)
    await client.bind("bench", "bench")
    acked: list[bytes] = []
    raw = submit_sm(registered_delivery=1)
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            client.send(raw[:12] + sent.to_bytes(4, "big") + raw[16:])
            sent += 1
        await asyncio.sleep(0.001)
        acked += [F.response_message_id(p.raw) for p in client.queue if p.command_id == P.SUBMIT_SM_RESP]
        client.queue.clear()
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    await client.close()
    await sim.stop()
    store = open_store(f"sqlite:///{db}")
    await store.open()
    missing = sum([1 for mid in acked if await store.get_receipt_route(mid.decode()) is None])
    await store.close()
    return {"acked": len(acked), "lost_routes": missing, "lost_ms": 1000.0 * missing / rate}


def main() -> None:
    result = asyncio.run(measure())
    print(f"receipt routes after SIGKILL: {result['acked']:,} acked, {result['lost_routes']:,} not persisted "
          f"(≈ {result['lost_ms']:.0f} ms of submits at 5,000/s)")


if __name__ == "__main__":
    main()
