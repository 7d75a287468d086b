"""Durable outbox and persisted receipt routes, over real sockets and a real SQLite file."""

from __future__ import annotations

import asyncio

from gateway.simulator import Simulator
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
    texts = [P.parse_short_message(p.raw).short_message for p in client.delivered]
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
    resp = await sender.request(submit_sm(registered_delivery=1))
    message_id = P.response_message_id(resp.raw)
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
