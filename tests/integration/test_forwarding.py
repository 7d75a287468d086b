"""MT forwarding, MO routing and receipts end to end: application -> gateway -> simulator."""

from __future__ import annotations

import asyncio
import struct

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import ACCOUNTS, GatewayFactory


async def test_submit_sm_reaches_carrier_byte_identical(gateway: Gateway, sim: Simulator) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    assert (await client.bind()).command_status == 0
    raw = submit_sm(text="hello world", registered_delivery=0)
    resp = await client.request(raw)
    assert resp.command_id == P.SUBMIT_SM_RESP and resp.command_status == 0
    got = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM, timeout=5)
    assert got.raw[:12] == raw[:12] and got.raw[16:] == raw[16:]
    assert F.response_message_id(resp.raw)  # the carrier's id, unchanged
    await client.close()


async def test_carrier_status_passes_through(gateway: Gateway, sim: Simulator) -> None:
    sim.submit_status = 0x45  # ESME_RSUBMITFAIL
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    resp = await client.request(submit_sm())
    assert resp.command_status == 0x45
    await client.close()


async def test_other_forwarded_commands(gateway: Gateway, sim: Simulator) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    sent = await client.request(submit_sm(registered_delivery=1))  # query_sm only for its own messages
    query = P.encode(P.QUERY_SM, 0, 1, F.response_message_id(sent.raw) + b"\x00\x01\x01" + b"14155550100\x00")
    resp = await client.request(query)
    assert resp.command_id == P.QUERY_SM_RESP
    got = await sim.wait_for(lambda p: p.command_id == P.QUERY_SM, timeout=5)
    assert got.raw[16:] == query[16:]
    await client.close()


async def test_no_carrier_bound_is_temporary(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(wait_bound=False, carrier={"port": 1})
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    resp = await client.request(submit_sm())
    assert resp.command_status in (st.ESME_RMSGQFUL, st.ESME_RTHROTTLED)
    await client.close()


async def test_carrier_silence_answers_application(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(carrier={"response_timeout": 0.5})
    sim.respond = False
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    resp = await client.request(submit_sm(), timeout=5)
    assert resp.command_status == gateway.settings.carrier.timeout_status
    await client.close()


async def test_window_throttles(make_gateway: GatewayFactory, sim: Simulator) -> None:
    accounts = [{"system_id": "acme", "password": "secret", "window": 2}]
    gateway = await make_gateway(accounts=accounts)
    sim.respond = False
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    for seq in (1, 2, 3):
        client.send(submit_sm(seq=seq))
    resp = await client.read(lambda p: p.sequence_number == 3)
    assert resp.command_status == st.ESME_RTHROTTLED
    await client.close()


async def test_mo_routed_by_number_and_status_returned(gateway: Gateway, sim: Simulator) -> None:
    acme = await RawClient.connect(gateway.smpp_port)
    await acme.bind("acme", "secret", P.BIND_RECEIVER)
    other = await RawClient.connect(gateway.smpp_port)
    await other.bind("other", "pw2", P.BIND_RECEIVER)

    async def answer(client: RawClient, status: int) -> P.Pdu:
        pdu = await client.read(lambda p: p.command_id == P.DELIVER_SM)
        client.respond(pdu, status)
        return pdu

    task = asyncio.create_task(answer(acme, 0x08))
    status = await sim.inject_mo("14155550123", "14155550100", "hello there")
    got = await task
    assert status == 0x08  # the application's own status reaches the carrier
    assert b"hello there" in got.raw
    task = asyncio.create_task(answer(other, 0))
    assert await sim.inject_mo("14155550123", "14155559999", "default route") == 0
    await task
    await acme.close()
    await other.close()


async def test_mo_without_receiver_gets_temporary_status(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(routing={"unbound": "reject"})
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind("acme", "secret", P.BIND_TRANSMITTER)
    assert await sim.inject_mo("14155550123", "14155550100", "nobody home") == 0x64
    await client.close()


async def test_receipt_goes_to_sending_account(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=[*ACCOUNTS, {"system_id": "third", "password": "pw3"}])
    sender = await RawClient.connect(gateway.smpp_port)
    await sender.bind("other", "pw2")
    bystander = await RawClient.connect(gateway.smpp_port)  # also on the default route
    await bystander.bind("third", "pw3", P.BIND_RECEIVER)
    resp = await sender.request(submit_sm(src="14155550177", registered_delivery=1))
    message_id = F.response_message_id(resp.raw)
    receipt = await sender.read(lambda p: p.command_id == P.DELIVER_SM)
    sender.respond(receipt)
    assert b"id:" + message_id in receipt.raw
    await sim.wait_for(lambda p: p.command_id == P.DELIVER_SM_RESP, timeout=5)
    assert not bystander.queue
    await sender.close()
    await bystander.close()


async def test_carrier_reconnects(gateway: Gateway, sim: Simulator) -> None:
    gateway.proxy.carrier_ready.clear()
    sim.drop_all()
    await asyncio.wait_for(gateway.proxy.carrier_ready.wait(), 5)
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    assert (await client.request(submit_sm())).command_status == 0
    await client.close()


async def test_sequence_numbers_are_remapped(gateway: Gateway, sim: Simulator) -> None:
    a = await RawClient.connect(gateway.smpp_port)
    b = await RawClient.connect(gateway.smpp_port)
    await a.bind()
    await b.bind("other", "pw2")
    ra, rb = await asyncio.gather(a.request(submit_sm()), b.request(submit_sm(src="14155550177")))
    assert ra.command_status == rb.command_status == 0
    assert a.seq == b.seq  # both used the same sequence number...
    seqs = [struct.unpack("!I", p.raw[12:16])[0] for p in sim.received if p.command_id == P.SUBMIT_SM]
    assert len(set(seqs)) == len(seqs)  # ...and the carrier saw distinct ones
    await a.close()
    await b.close()
