"""Gateways on one PostgreSQL split every limit: heartbeats, the share hook, /metrics, outages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from bench.faultproxy import FaultProxy
from gateway.app import Gateway
from gateway.config import load_settings
from gateway.simulator import Simulator
from gateway.smpp import status as st
from tests.integration.conftest import ACCOUNTS
from tests.integration.test_http import http_get
from tests.integration.test_mt_enforcement import bound, submit_sm
from tests.integration.test_shaping import burst
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

INTERVAL = 0.25
MISSING = 4  # a gateway silent for 1 s no longer counts: loaded CI machines stall for less


class Pg:
    """One schema, reachable directly and through a proxy the test can cut."""

    def __init__(self, dsn: str, schema: str, proxy: FaultProxy) -> None:
        self.dsn, self.schema, self.proxy = dsn, schema, proxy
        parts = urlsplit(dsn)
        via = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        self.direct_url = f"{dsn}?schema={schema}"
        self.proxied_url = f"{via}?schema={schema}"

    async def instance_ids(self) -> set[str]:
        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})
        try:
            return {str(r[0]) for r in await conn.fetch("SELECT id FROM instances")}
        finally:
            await conn.close()


@pytest.fixture
async def pg() -> AsyncIterator[Pg]:
    dsn = await pg_dsn_or_skip()
    parts = urlsplit(dsn)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    schema = unique_schema("cluster")
    yield Pg(dsn, schema, proxy)
    await proxy.stop()
    await drop_schema(dsn, schema)


Started = Callable[..., Any]


@pytest.fixture
async def gateways(sim: Simulator, tmp_path: Path) -> AsyncIterator[Started]:
    """start(url) -> (gateway, the shares its on_share hook received); stopped at the end."""
    started: list[Gateway] = []

    async def start(url: str, accounts: list[dict[str, Any]] = ACCOUNTS) -> tuple[Gateway, list[float]]:
        settings = load_settings(
            None, listen={"host": "127.0.0.1", "port": 0}, http={"host": "127.0.0.1", "port": 0},
            carrier={"host": "127.0.0.1", "port": sim.smpp_port, "system_id": "gw", "password": "gwpw"},
            accounts=accounts, database_url=url, drain_timeout=0.5,
            cluster={"heartbeat_interval": INTERVAL, "missing_heartbeats": MISSING},
        )
        gateway = Gateway(settings)
        shares: list[float] = []
        limits = gateway.cluster.on_share  # app wires it to every limit: keep that, and record

        def record(share: float) -> None:
            shares.append(share)
            limits(share)

        gateway.cluster.on_share = record
        await gateway.start()
        started.append(gateway)
        return gateway, shares

    yield start
    for gateway in started:
        if not gateway.stopped.is_set():
            await gateway.stop()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def metric(gateway: Gateway, name: str) -> float:
    _, body = await http_get(gateway.http_port, "/metrics")
    return next(float(line.split()[1]) for line in body.splitlines() if line.startswith(name + " "))


async def test_two_gateways_take_half_and_the_survivor_of_a_clean_stop_takes_all(
        gateways: Started, pg: Pg) -> None:
    a, a_shares = await gateways(pg.direct_url)
    assert a_shares == [1.0]  # alone: the whole limit, reported at start
    b, b_shares = await gateways(pg.direct_url)
    assert b_shares == [0.5]  # B saw A's row in its first heartbeat, before its first bind
    await until(lambda: a_shares[-1] == 0.5)  # A sees B at its next heartbeat
    assert (a.cluster.live, await metric(a, "gateway_cluster_instances")) == (2, 2.0)
    assert await metric(a, "gateway_cluster_share") == 0.5
    await b.stop()
    assert await pg.instance_ids() == {a.cluster.instance_id}  # B deleted its row on the way out
    await until(lambda: a_shares[-1] == 1.0)
    assert await metric(a, "gateway_cluster_share") == 1.0
    assert await metric(a, "gateway_cluster_instances") == 1.0


async def test_two_gateways_split_an_account_limit_and_the_survivor_takes_it_whole(
        gateways: Started, pg: Pg) -> None:
    accounts = [{**ACCOUNTS[0], "max_tps": 20}, ACCOUNTS[1]]  # burst: one second's worth
    a, a_shares = await gateways(pg.direct_url, accounts)
    b, _ = await gateways(pg.direct_url, accounts)
    await until(lambda: a_shares[-1] == 0.5)
    for gateway in (a, b):
        assert await metric(gateway, 'gateway_limit_rate{limit="account:acme"}') == 10.0
    app = await bound(a)
    started = asyncio.get_running_loop().time()
    answers = await burst(app, [submit_sm(f"1415556{i:04d}") for i in range(100)])
    elapsed = asyncio.get_running_loop().time() - started
    ok = sum(1 for p in answers if p.command_status == 0)
    assert 10 <= ok <= 10 + 10 * elapsed + 1  # this gateway's half: burst 10, 10/s
    assert all(p.command_status in (0, st.ESME_RTHROTTLED) for p in answers)
    await app.close()
    await b.stop()
    await until(lambda: a_shares[-1] == 1.0)
    assert await metric(a, 'gateway_limit_rate{limit="account:acme"}') == 20.0


async def test_a_gateway_that_stops_heartbeating_drops_out(gateways: Started, pg: Pg) -> None:
    a, a_shares = await gateways(pg.direct_url)
    b, _ = await gateways(pg.direct_url)
    await until(lambda: a_shares[-1] == 0.5)
    assert b.cluster.task is not None
    b.cluster.task.cancel()  # B hangs or was killed: its row stays, it just goes stale
    await until(lambda: a_shares[-1] == 1.0)
    assert a.cluster.live == 1 and b.cluster.instance_id in await pg.instance_ids()


async def test_store_outage_freezes_the_shares(gateways: Started, pg: Pg) -> None:
    """Never 0, and never the whole limit because the rows could not be read; when the store is
    back the other gateway's stale row is not taken for a departure."""
    a, a_shares = await gateways(pg.proxied_url)
    b, b_shares = await gateways(pg.proxied_url)
    await until(lambda: a_shares[-1] == b_shares[-1] == 0.5)
    seen = len(a_shares), len(b_shares)
    await pg.proxy.stop()  # the store goes away for both

    def failures(gateway: Gateway) -> float:
        return gateway.metrics.registry.get_sample_value("gateway_cluster_heartbeat_failures_total") or 0.0

    await until(lambda: failures(a) > MISSING + 2 and failures(b) > MISSING + 2)
    assert (await metric(a, "gateway_cluster_share"), await metric(b, "gateway_cluster_share")) == (0.5, 0.5)
    assert (a.cluster.live, b.cluster.live) == (2, 2)
    await pg.proxy.start()  # back, same port: each finds the other's row stale (it could not write either)
    answered = a.cluster.answered, b.cluster.answered
    await until(lambda: a.cluster.answered > answered[0] + MISSING + 2
                and b.cluster.answered > answered[1] + MISSING + 2)
    assert (a_shares[seen[0]:], b_shares[seen[1]:]) == ([], [])  # the hook was never called: 0.5 throughout
    assert (await metric(a, "gateway_cluster_share"), await metric(b, "gateway_cluster_share")) == (0.5, 0.5)


async def test_on_sqlite_one_gateway_takes_the_whole(gateways: Started, tmp_path: Path) -> None:
    gateway, shares = await gateways(f"sqlite:///{tmp_path}/gateway.db")
    assert shares == [1.0] and gateway.cluster.task is None  # no heartbeats on a file
    assert await metric(gateway, "gateway_cluster_instances") == 1.0
    assert await metric(gateway, "gateway_cluster_share") == 1.0


async def _spawn(sim: Simulator, url: str) -> tuple[asyncio.subprocess.Process, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0", GATEWAY_CARRIER__PORT=str(sim.smpp_port),
               GATEWAY_ACCOUNTS=json.dumps([{"system_id": "acme", "password": "secret"}]),
               GATEWAY_DATABASE_URL=url, GATEWAY_CLUSTER__HEARTBEAT_INTERVAL=str(INTERVAL),
               GATEWAY_CLUSTER__MISSING_HEARTBEATS=str(MISSING))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "run", env=env,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise AssertionError("gateway exited before starting")
            if '"gateway_started"' in line:
                return proc, int(json.loads(line)["http_port"])


async def _share(http_port: int) -> float:
    _, body = await http_get(http_port, "/metrics")
    return next(float(line.split()[1]) for line in body.splitlines() if line.startswith("gateway_cluster_share "))


async def test_two_processes_split_and_the_survivor_of_sigkill_takes_all(sim: Simulator, pg: Pg) -> None:
    procs = [await _spawn(sim, pg.direct_url) for _ in range(2)]
    try:
        async with asyncio.timeout(10):
            while [await _share(port) for _, port in procs] != [0.5, 0.5]:
                await asyncio.sleep(0.05)
        procs[1][0].send_signal(signal.SIGKILL)  # no clean stop: its row stays until it goes stale
        await procs[1][0].wait()
        async with asyncio.timeout(10):
            while await _share(procs[0][1]) != 1.0:
                await asyncio.sleep(0.05)
        assert len(await pg.instance_ids()) == 2
    finally:
        for proc, _ in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc, _ in procs:
            await asyncio.wait_for(proc.communicate(), 20)
    assert procs[0][0].returncode == 0
    assert len(await pg.instance_ids()) == 1  # the clean stop deleted its row; the killed one's stays
