"""Several gateways, one truth: block changes reach every running gateway from the event log."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from gateway.simulator import Simulator
from gateway.smpp import status as st
from gateway.store import open_store
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory

MOBILE = "14155550123"
LONG_CODE = "14155550100"


async def refused_within(client: RawClient, seconds: float, dst: str = MOBILE) -> bool:
    """Submit until the gateway refuses (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while True:
        resp = await client.request(submit_sm(dst=dst, src=LONG_CODE))
        if resp.command_status == st.ESME_RINVDSTADR:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


async def test_cli_change_reaches_running_sqlite_gateway(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await make_gateway()
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    assert (await client.request(submit_sm(dst=MOBILE, src=LONG_CODE))).command_status == 0
    other = open_store(f"sqlite:///{tmp_path}/gateway.db")  # what `gateway blocks add` does
    await other.open()
    key = BlockKey("+" + MOBILE, "+" + LONG_CODE, "number")
    await other.record(AuditEvent(at=time.time(), op="admin_add", source="operator"),
                       BlockChange("add", Block(key, "admin", "operator", time.time())))
    assert await refused_within(client, 1.0)
    await other.record(AuditEvent(at=time.time(), op="admin_remove", source="operator"),
                       BlockChange("remove", Block(key, "admin", "operator", time.time())))
    deadline = time.monotonic() + 1.0
    while (await client.request(submit_sm(dst=MOBILE, src=LONG_CODE))).command_status != 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await other.close()
    await client.close()


async def _spawn(sim: Simulator, url: str) -> tuple[asyncio.subprocess.Process, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0", GATEWAY_CARRIER__PORT=str(sim.smpp_port),
               GATEWAY_ACCOUNTS=json.dumps([{"system_id": "acme", "password": "secret"}]),
               GATEWAY_DATABASE_URL=url)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "run", env=env,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise AssertionError("gateway exited before starting")
            if '"gateway_started"' in line:
                return proc, int(json.loads(line)["smpp_port"])


async def test_two_gateway_processes_share_blocks(sim: Simulator, pg_url: str) -> None:
    procs = []
    try:
        for _ in range(2):
            procs.append(await _spawn(sim, pg_url))
        await sim.wait_until(lambda: sim.bound_count >= 2, timeout=20)
        clients = []
        for _, port in procs:
            client = await RawClient.connect(port)
            client.auto_ack = True
            assert (await client.bind()).command_status == 0
            clients.append(client)
        assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
        first = 0 if clients[0].delivered else 1
        second = 1 - first
        assert await refused_within(clients[second], 1.0)  # STOP through one, refused by the other
        assert await sim.inject_mo(MOBILE, LONG_CODE, "START") == 0
        for client in clients:
            deadline = time.monotonic() + 1.0
            while (await client.request(submit_sm(dst=MOBILE, src=LONG_CODE))).command_status != 0:
                assert time.monotonic() < deadline, "START did not lift the block everywhere"
                await asyncio.sleep(0.02)
        for client in clients:
            await client.close()
    finally:
        for proc, _ in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc, _ in procs:
            await asyncio.wait_for(proc.communicate(), 20)
    assert [proc.returncode for proc, _ in procs] == [0, 0]
