"""PostgreSQL goes away mid-traffic: lookups continue from memory, nothing is acked unstored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from bench.faultproxy import FaultProxy
from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.store import open_store
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.test_http import http_get
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

MOBILE = "14155550123"
LONG_CODE = "14155550100"


@pytest.fixture
async def pg() -> AsyncIterator[tuple[str, str, FaultProxy]]:
    dsn = await pg_dsn_or_skip()
    parts = urlsplit(dsn)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    schema = unique_schema("faults")
    via_proxy = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    yield f"{via_proxy}?schema={schema}", f"{dsn}?schema={schema}", proxy
    await proxy.stop()
    await drop_schema(dsn, schema)


async def test_database_outage(make_gateway: GatewayFactory, sim: Simulator,
                               pg: tuple[str, str, FaultProxy]) -> None:
    url, direct_url, proxy = pg
    gateway = await make_gateway(database_url=url, routing={"outbox_retry_interval": 0.05})
    app = await RawClient.connect(gateway.smpp_port)
    app.auto_ack = True
    await app.bind("acme", "secret", P.BIND_TRANSMITTER)  # no receiver: MOs go to the outbox
    assert await sim.inject_mo(MOBILE, LONG_CODE, "before") == 0  # stored, acked
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await proxy.stop()  # the database disappears

    assert await sim.inject_mo(MOBILE, "14155550199", "STOP") == st.ESME_RX_T_APPN
    assert await sim.inject_mo(MOBILE, LONG_CODE, "during") == st.ESME_RX_T_APPN
    blocked = await app.request(submit_sm(dst=MOBILE, src=LONG_CODE))
    assert blocked.command_status == st.ESME_RINVDSTADR  # lookups continue from memory
    other = await RawClient.connect(gateway.smpp_port)  # 14155550199 is nobody's: "other" may send from it
    await other.bind("other", "pw2", P.BIND_TRANSMITTER)
    assert (await other.request(submit_sm(dst=MOBILE, src="14155550199"))).command_status == 0
    await other.close()
    async with asyncio.timeout(5):
        while (await http_get(gateway.http_port, "/readyz"))[0] != 503:
            await asyncio.sleep(0.05)

    await proxy.start()  # back, same port
    async with asyncio.timeout(10):
        while await sim.inject_mo(MOBILE, LONG_CODE, "after") != 0:
            await asyncio.sleep(0.1)
    async with asyncio.timeout(10):
        while (await http_get(gateway.http_port, "/readyz"))[0] != 200:
            await asyncio.sleep(0.05)
    _, metrics = await http_get(gateway.http_port, "/metrics")
    assert "gateway_store_errors_total" in metrics and "gateway_store_latency_seconds_count" in metrics

    # every MO the carrier saw acked is durable: the receiver gets exactly those, in order
    receiver = await RawClient.connect(gateway.smpp_port)
    receiver.auto_ack = True
    await receiver.bind("acme", "secret", P.BIND_RECEIVER)
    await receiver.wait(lambda: len(receiver.delivered) == 3, timeout=10)
    texts = [F.parse_short_message(p.raw).short_message for p in receiver.delivered]
    assert texts == [b"before", b"STOP", b"after"]
    store = open_store(direct_url)
    await store.open()
    events = await store.events_after(0)
    assert [e.op for e in events if e.op == "stop"] == ["stop"]  # the refused STOP left no trace
    await store.close()
    await receiver.close()
    await app.close()


async def test_outbox_rows_a_failed_drain_held_are_released_when_the_store_is_back(
        make_gateway: GatewayFactory, sim: Simulator, pg: tuple[str, str, FaultProxy],
        caplog: pytest.LogCaptureFixture) -> None:
    """Found by the chaos soak: the store failing mid-drain left the claimed batch under this
    gateway's 60 s lease, and the account's whole queue waited behind it."""
    url, _, proxy = pg
    gateway = await make_gateway(database_url=url)
    for text in ("one", "two", "three"):
        assert await sim.inject_mo(MOBILE, LONG_CODE, text) == 0  # nobody bound: stored, acked
    receiver = await RawClient.connect(gateway.smpp_port)
    await receiver.bind("acme", "secret", P.BIND_RECEIVER)
    first = await receiver.read(lambda p: p.command_id == P.DELIVER_SM, timeout=10)
    await proxy.stop()  # the store goes away while the first row is with the application
    receiver.respond(first)  # its delete fails: the drain stops, holding the batch it claimed
    async with asyncio.timeout(10):
        while not any(r.getMessage() == "outbox_drain_failed" for r in caplog.records):
            await asyncio.sleep(0.05)
    await proxy.start()
    receiver.auto_ack = True
    await receiver.wait(lambda: len(receiver.delivered) >= 3, timeout=20)  # the lease is 60 s
    texts = [F.parse_short_message(p.raw).short_message for p in receiver.delivered]
    assert texts == [b"one", b"two", b"three"]  # the first again: its delete never happened
    await receiver.close()
