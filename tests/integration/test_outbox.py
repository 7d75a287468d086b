"""Durable outbox and persisted receipt routes, over real sockets and a real SQLite file."""

from __future__ import annotations

import asyncio

from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory

FAST = {"outbox_retry_interval": 0.05}


async def test_mo_kept_until_a_receiver_binds_then_delivered_in_order(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(routing=FAST)
    for n in range(5):
        assert await sim.inject_mo("14155550123", "14155550100", f"queued {n}") == st.ESME_ROK
    client = await RawClient.connect(gateway.smpp_port)
    client.auto_ack = True
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    await client.wait(lambda: len(client.delivered) == 5)
    texts = [F.parse_short_message(p.raw).short_message for p in client.delivered]
    assert texts == [f"queued {n}".encode() for n in range(5)]
    assert gateway.store is not None
    async with asyncio.timeout(5):  # the row is deleted right after the application's answer
        while await gateway.store.outbox_counts():
            await asyncio.sleep(0.01)
    await client.close()


async def test_temporary_status_from_application_is_retried(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(routing=FAST)
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    # the application says "not now": the carrier still gets ESME_ROK, the gateway keeps it
    first_status = asyncio.create_task(sim.inject_mo("14155550123", "14155550100", "retry me"))
    first = await client.read(lambda p: p.command_id == P.DELIVER_SM)
    client.respond(first, st.ESME_RX_T_APPN)
    assert await first_status == st.ESME_ROK
    again = await client.read(lambda p: p.command_id == P.DELIVER_SM)
    assert again.raw[16:] == first.raw[16:]
    client.respond(again)
    await client.close()


async def test_reject_mode_answers_carrier_with_temporary_status(make_gateway: GatewayFactory,
                                                                  sim: Simulator) -> None:
    await make_gateway(routing={"unbound": "reject", "unbound_status": 0x58})
    assert await sim.inject_mo("14155550123", "14155550100", "nobody") == 0x58


async def test_receipt_after_restart_reaches_sender(make_gateway: GatewayFactory, sim: Simulator) -> None:
    sim.receipt_delay = 3600  # hold receipts; we send it by hand after the restart
    first = await make_gateway(routing=FAST)
    sender = await RawClient.connect(first.smpp_port)
    await sender.bind("other", "pw2")
    resp = await sender.request(submit_sm(src="14155550177", registered_delivery=1))
    message_id = F.response_message_id(resp.raw)
    await sender.close()
    await first.stop()  # flushes the route batch
    second = await make_gateway(routing=FAST)
    other = await RawClient.connect(second.smpp_port)
    other.auto_ack = True
    await other.bind("other", "pw2", P.BIND_RECEIVER)
    acme = await RawClient.connect(second.smpp_port)
    acme.auto_ack = True
    await acme.bind("acme", "secret", P.BIND_RECEIVER)
    text = f"id:{message_id.decode()} sub:001 dlvrd:001 submit date:2611270000 done date:2611270000 stat:DELIVRD err:000"
    status = await sim.inject_mo("14155550123", "14155550100", text, esm_class=P.ESM_RECEIPT)
    assert status == 0
    await other.wait(lambda: len(other.delivered) == 1)
    assert acme.delivered == []  # 14155550100 is acme's number, but the receipt belongs to "other"
    await other.close()
    await acme.close()


async def test_two_gateways_deliver_each_queued_mo_once(make_gateway: GatewayFactory, sim: Simulator) -> None:
    from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

    dsn = await pg_dsn_or_skip()
    schema = unique_schema("outbox2")
    url = f"{dsn}?schema={schema}"
    try:
        gateways = [await make_gateway(database_url=url, routing=FAST) for _ in range(2)]
        await sim.wait_until(lambda: sim.bound_count == 2)
        texts = [f"mo {n:04d}" for n in range(1000)]
        for start in range(0, len(texts), 50):  # 50 in flight at a time
            statuses = await asyncio.gather(
                *(sim.inject_mo("14155550123", "14155550100", t) for t in texts[start : start + 50]))
            assert set(statuses) == {st.ESME_ROK}
        receivers = [await RawClient.connect(gateway.smpp_port) for gateway in gateways]
        for client in receivers:
            client.auto_ack = True
        # the application binds to both at once: one bound alone first could drain the whole queue
        await asyncio.gather(*(client.bind("acme", "secret", P.BIND_RECEIVER) for client in receivers))

        def total() -> int:
            return sum(len(c.delivered) for c in receivers)

        # each client wakes on its own traffic: wait on both, the last delivery ends it
        waits = [asyncio.create_task(c.wait(lambda: total() >= 1000, timeout=60)) for c in receivers]
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*done)
        got = [F.parse_short_message(p.raw).short_message.decode() for c in receivers for p in c.delivered]
        assert sorted(got) == texts  # every one, and none twice
        assert all(c.delivered for c in receivers)  # both gateways took part
        for client in receivers:
            await client.close()
    finally:
        await drop_schema(dsn, schema)


async def test_routes_persist_on_postgres_including_auto_replies(make_gateway: GatewayFactory,
                                                                 sim: Simulator) -> None:
    from gateway.proxy import OWN
    from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

    dsn = await pg_dsn_or_skip()
    schema = unique_schema("routes")
    try:
        gateway = await make_gateway(database_url=f"{dsn}?schema={schema}")
        client = await RawClient.connect(gateway.smpp_port)
        client.auto_ack = True
        await client.bind()
        assert await sim.inject_mo("14155550123", "14155550100", "HELP") == 0
        reply = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM)
        reply_id = next(s.message_id for s in sim.submissions if s.pdu is reply)
        resp = await client.request(submit_sm(dst="14155550124", registered_delivery=1))
        message_id = F.response_message_id(resp.raw).decode()
        await client.close()
        await gateway.stop()  # the final flush
        assert gateway.store is not None
        store = gateway.store
        await store.open()
        assert await store.get_receipt_route(message_id) == "acme"
        assert await store.get_receipt_route(reply_id or "") == OWN
        await store.close()
    finally:
        await drop_schema(dsn, schema)


async def test_outbox_rows_expire_with_an_event(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(routing={"outbox_ttl": 0.2, "outbox_retry_interval": 0.05})
    assert await sim.inject_mo("14155550123", "14155550100", "too late") == st.ESME_ROK
    assert gateway.store is not None
    async with asyncio.timeout(5):
        while not [e for e in await gateway.store.events_after(0) if e.op == "outbox_expired"]:
            await asyncio.sleep(0.02)
    assert await gateway.store.outbox_counts() == {}
    client = await RawClient.connect(gateway.smpp_port)  # a receiver binding later gets nothing
    client.auto_ack = True
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    assert (await client.request(P.encode(P.ENQUIRE_LINK, 0, 1))).command_status == 0
    assert client.delivered == []
    await client.close()


async def test_live_mo_waits_behind_a_queued_retry(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(routing={"outbox_retry_interval": 0.3})
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    first = asyncio.create_task(sim.inject_mo("14155550123", "14155550100", "m1"))
    pdu = await client.read(lambda p: p.command_id == P.DELIVER_SM)
    client.respond(pdu, st.ESME_RX_T_APPN)  # not now: m1 is queued for a retry
    assert await first == 0
    second = asyncio.create_task(sim.inject_mo("14155550123", "14155550100", "m2"))
    third = asyncio.create_task(sim.inject_mo("14155550123", "14155550100", "m3"))
    assert await second == 0 and await third == 0
    order: list[bytes] = []
    while len(order) < 3:
        pdu = await client.read(lambda p: p.command_id == P.DELIVER_SM, timeout=10)
        client.respond(pdu)
        text = F.parse_short_message(pdu.raw).short_message
        if not order or order[-1] != text:
            order.append(text)
    assert order == [b"m1", b"m2", b"m3"]
    await client.close()


async def test_backlog_gauges_show_rows_and_oldest_age(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(routing=FAST)
    assert gateway.outbox is not None
    gateway.outbox.poll_interval = gateway.outbox.summary_interval = 0.05
    registry = gateway.metrics.registry

    def backlog(account: str) -> float | None:
        return registry.get_sample_value("gateway_outbox_backlog", {"account": account})

    async with asyncio.timeout(5):  # every configured account shows, 0 when it has nothing queued
        while backlog("other") != 0 or backlog("acme") != 0:
            await asyncio.sleep(0.01)
    for n in range(3):
        assert await sim.inject_mo("14155550123", "14155550100", f"queued {n}") == st.ESME_ROK
    async with asyncio.timeout(5):
        while backlog("acme") != 3:
            await asyncio.sleep(0.01)
    age = registry.get_sample_value("gateway_outbox_oldest_age_seconds", {"account": "acme"})
    assert age is not None and age >= 0
    client = await RawClient.connect(gateway.smpp_port)
    client.auto_ack = True
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    async with asyncio.timeout(5):
        while backlog("acme") != 0:
            await asyncio.sleep(0.01)
    assert registry.get_sample_value("gateway_outbox_oldest_age_seconds", {"account": "acme"}) == 0
    await client.close()


async def test_a_receiver_that_drops_before_answering_does_not_delay_the_queue(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Found by the chaos soak: each session that closed with a queued MO unanswered counted as
    a failed attempt, so an application that reconnected often waited 2, 4, 8 ... 300 s."""
    gateway = await make_gateway()  # outbox_retry_interval 2 s, doubling
    assert await sim.inject_mo("14155550123", "14155550100", "queued") == st.ESME_ROK
    for _ in range(4):
        client = await RawClient.connect(gateway.smpp_port)
        await client.bind("acme", "secret", P.BIND_RECEIVER)
        pdu = await client.read(lambda p: p.command_id == P.DELIVER_SM, timeout=3)
        assert F.parse_short_message(pdu.raw).short_message == b"queued"
        client.writer.transport.abort()  # gone without an answer
        await client.close()
    client = await RawClient.connect(gateway.smpp_port)
    client.auto_ack = True
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    await client.wait(lambda: len(client.delivered) == 1, timeout=3)
    await client.close()


async def test_deliver_on_a_session_that_closed_meanwhile_is_answered(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Found by the chaos soak: the outbox picks a receiver, awaits the store, then delivers; a
    session that closed in between took the request and never answered it (no timer runs on a
    closed session), so that account's outbox on this gateway stalled for good."""
    gateway = await make_gateway()
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    session = gateway.proxy.accounts["acme"].receiver()
    assert session is not None
    await client.close()
    async with asyncio.timeout(5):
        while gateway.proxy.accounts["acme"].sessions:
            await asyncio.sleep(0.01)
    answered: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    raw = P.encode(P.DELIVER_SM, 0, 1, b"\x00" * 40)
    session.deliver(P.Pdu(P.DELIVER_SM, 0, 1, raw), raw, lambda status, resp: answered.set_result(status))
    assert await asyncio.wait_for(answered, 5) == st.ESME_RX_T_APPN
