"""Application-side session rules over real sockets: binds, states, timers, bad input."""

from __future__ import annotations

import asyncio
import struct

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory


def _smpplib_bind_and_send(port: int) -> tuple[int, str]:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    results: list[tuple[int, str]] = []
    client.set_message_sent_handler(lambda pdu: results.append((pdu.status, pdu.message_id)))
    client.connect()
    try:
        client.bind_transceiver(system_id="acme", password="secret")
        client.send_message(
            source_addr_ton=1, source_addr_npi=1, source_addr="14155550100",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr="14155550123",
            short_message=b"from smpplib",
        )
        while not results:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    status, message_id = results[0]
    return status, message_id.decode() if isinstance(message_id, bytes) else message_id


async def test_third_party_client_submits(gateway: Gateway, sim: Simulator) -> None:
    status, message_id = await asyncio.to_thread(_smpplib_bind_and_send, gateway.smpp_port)
    assert status == 0 and message_id
    got = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM, timeout=5)
    assert b"from smpplib" in got.raw


def _smpplib_bad_bind(port: int) -> int:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transceiver(system_id="acme", password="wrong")
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        client.disconnect()
    return 0


async def test_third_party_client_wrong_password(gateway: Gateway) -> None:
    assert await asyncio.to_thread(_smpplib_bad_bind, gateway.smpp_port) == st.ESME_RINVPASWD


@pytest.mark.parametrize("system_id, password, status", [
    ("acme", "nope", st.ESME_RINVPASWD), ("ghost", "secret", st.ESME_RINVSYSID)])
async def test_failed_bind_closes(gateway: Gateway, system_id: str, password: str, status: int) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    resp = await client.bind(system_id, password)
    assert resp.command_status == status
    assert await client.closed()


async def test_second_bind_is_already_bound(gateway: Gateway) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    assert (await client.bind()).command_status == st.ESME_RALYBND
    await client.close()


async def test_requests_the_bind_state_does_not_allow(gateway: Gateway) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    assert (await client.request(submit_sm())).command_status == st.ESME_RINVBNDSTS
    await client.bind("acme", "secret", P.BIND_RECEIVER)
    assert (await client.request(submit_sm())).command_status == st.ESME_RINVBNDSTS
    await client.close()


async def test_enquire_link_answered_locally(gateway: Gateway, sim: Simulator) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    resp = await client.request(P.encode(P.ENQUIRE_LINK, 0, 1))
    assert resp.command_id == P.ENQUIRE_LINK_RESP and resp.command_status == 0
    assert not [p for p in sim.received if p.command_id == P.ENQUIRE_LINK and p.sequence_number == client.seq]
    await client.close()


async def test_unbind_from_application(gateway: Gateway) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    resp = await client.request(P.encode(P.UNBIND, 0, 1))
    assert resp.command_id == P.UNBIND_RESP and resp.command_status == 0
    assert await client.closed()


async def test_unknown_command_gets_generic_nack(gateway: Gateway) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    client.send(P.encode(0x00000077, 0, 55))
    nack = await client.read(lambda p: p.sequence_number == 55)
    assert nack.command_id == P.GENERIC_NACK and nack.command_status == st.ESME_RINVCMDID
    assert (await client.request(submit_sm())).command_status == 0  # session still fine
    await client.close()


@pytest.mark.parametrize("length", [0xFFFFFFFF, 4, 10 * 1024 * 1024])
async def test_impossible_length_nacks_and_closes_only_that_session(gateway: Gateway, length: int) -> None:
    good = await RawClient.connect(gateway.smpp_port)
    await good.bind()
    bad = await RawClient.connect(gateway.smpp_port)
    await bad.bind("other", "pw2")
    bad.send(struct.pack("!IIII", length, P.SUBMIT_SM, 0, 77))
    nack = await bad.read(lambda p: p.command_id == P.GENERIC_NACK)
    assert nack.command_status == st.ESME_RINVCMDLEN
    assert await bad.closed()
    assert (await good.request(submit_sm())).command_status == 0
    await good.close()


async def test_garbage_and_truncated_bodies_get_answers(gateway: Gateway) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    resp = await client.request(P.encode(P.BIND_TRANSMITTER, 0, 1, b"\xff" * 3))
    assert resp.command_status == st.ESME_RALYBND
    other = await RawClient.connect(gateway.smpp_port)
    resp = await other.request(P.encode(P.BIND_TRANSMITTER, 0, 1, b"\xff" * 40))
    assert resp.command_status != 0
    assert await other.closed()
    await client.close()


async def test_session_init_timeout(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"session_init_timeout": 0.3})
    client = await RawClient.connect(gateway.smpp_port)
    assert await client.closed(timeout=5)


async def test_inactivity_timeout_unbinds(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"inactivity_timeout": 0.4, "enquire_link_interval": 60})
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    unbind = await client.read(lambda p: p.command_id == P.UNBIND, timeout=5)
    assert unbind.command_id == P.UNBIND
    assert await client.closed()


async def test_concurrent_bind_limit(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(accounts=[{"system_id": "acme", "password": "secret", "max_binds": 1}])
    first = await RawClient.connect(gateway.smpp_port)
    assert (await first.bind()).command_status == 0
    second = await RawClient.connect(gateway.smpp_port)
    assert (await second.bind()).command_status == st.ESME_RBINDFAIL
    assert await second.closed()
    await first.close()


async def test_graceful_stop_unbinds_applications(gateway: Gateway) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    stopping = asyncio.create_task(gateway.stop())
    unbind = await client.read(lambda p: p.command_id == P.UNBIND)
    client.respond(unbind, body=b"")
    assert await client.closed()
    await stopping


async def test_unanswered_enquire_link_unbinds_once(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"enquire_link_interval": 0.3, "response_timeout": 0.6})
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    await client.read(lambda p: p.command_id == P.UNBIND, timeout=5)
    enquiries = [p for p in client.queue if p.command_id == P.ENQUIRE_LINK]
    assert len(enquiries) <= 1  # one probe, not one per tick
    assert await client.closed()


async def test_peer_that_never_reads_does_not_hurt_others(gateway: Gateway, sim: Simulator) -> None:
    flooder = await RawClient.connect(gateway.smpp_port)
    flooder._task.cancel()  # never read a byte of the answers
    burst = P.encode(P.ENQUIRE_LINK, 0, 1) * 65536  # 1 MiB of requests, 1 MiB of answers owed
    for _ in range(4):
        flooder.writer.write(burst)
    other = await RawClient.connect(gateway.smpp_port)
    await other.bind()
    assert (await other.request(submit_sm())).command_status == 0
    await other.close()
    flooder.writer.transport.abort()
    await flooder.close()
