"""Keyword MOs in flight together, redelivered, after a restart, on two gateways: a raw SMSC
writes the deliver_sm back-to-back, before the gateway answered any of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from bench.faultproxy import FaultProxy
from gateway.app import Gateway
from gateway.policy.text import decode_text
from gateway.simulator import Simulator
from gateway.simulator.codec import deliver_sm_body, encode_text, tlv
from gateway.simulator.records import address_octets
from gateway.simulator.session import SmscSession
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.smpp.fields import Address
from gateway.store import open_store
from gateway.store.base import AuditEvent
from tests.integration.conftest import GatewayFactory
from tests.integration.test_http import http_get
from tests.integration.test_optout import LONG_CODE, MOBILE, App, replies_to, submits_to
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema


def in_flight(session: SmscSession, *mos: tuple[str, bytes]) -> list[asyncio.Future[int]]:
    """Write each (text, tlvs) as a deliver_sm MOBILE -> LONG_CODE, all before any answer."""
    loop = asyncio.get_running_loop()
    futures = []
    for text, tlvs in mos:
        data_coding, octets = encode_text(text)
        body = deliver_sm_body(Address(1, 1, address_octets(MOBILE)), Address(1, 1, address_octets(LONG_CODE)),
                               data_coding, octets, tlvs=tlvs)
        future: asyncio.Future[int] = loop.create_future()
        session.send_request(P.DELIVER_SM, body, future)
        futures.append(future)
    return futures


def receiver(sim: Simulator) -> SmscSession:
    session = sim._receiver()
    assert session is not None
    return session


async def answers(futures: list[asyncio.Future[int]]) -> list[int]:
    async with asyncio.timeout(10):
        return list(await asyncio.gather(*futures))


async def events(url: str, op: str) -> list[AuditEvent]:
    store = open_store(url)
    await store.open()
    try:
        return [e for e in await store.events_after(0) if e.op == op]
    finally:
        await store.close()


async def blocked(app: App) -> bool:
    return (await app.submit()).command_status == st.ESME_RINVDSTADR


async def test_start_then_stop_in_flight_ends_blocked(make_gateway: GatewayFactory, sim: Simulator,
                                                       db_url: str) -> None:
    app = await App.bind(await make_gateway(database_url=db_url))
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    assert await blocked(app)
    assert await answers(in_flight(receiver(sim), ("START", b""), ("STOP", b""))) == [0, 0]
    assert await blocked(app)  # the last one wins
    assert [e.block_state for e in await events(db_url, "start")] == ["unblocked"]
    assert [e.block_state for e in await events(db_url, "stop")] == ["blocked", "blocked"]
    await app.close()


async def test_stop_start_stop_start_in_flight_ends_unblocked(make_gateway: GatewayFactory, sim: Simulator,
                                                              db_url: str) -> None:
    app = await App.bind(await make_gateway(database_url=db_url))
    mos = [("STOP", b""), ("START", b""), ("STOP", b""), ("START", b"")]
    assert await answers(in_flight(receiver(sim), *mos)) == [0] * 4
    assert not await blocked(app)
    assert len(await events(db_url, "stop")) == len(await events(db_url, "start")) == 2
    await app.close()


async def test_copy_in_flight_gets_the_first_ones_answer(make_gateway: GatewayFactory, sim: Simulator,
                                                         db_url: str) -> None:
    app = await App.bind(await make_gateway(database_url=db_url))
    assert await answers(in_flight(receiver(sim), ("STOP", b""), ("STOP", b""), ("HELP", b""),
                                   ("HELP", b""))) == [0] * 4
    assert await blocked(app)
    await replies_to(sim, MOBILE, b"Msg&data")
    assert len(await events(db_url, "stop")) == len(await events(db_url, "help")) == 1
    assert len(app.delivered) == 2  # each copy answered with the first's status, never forwarded again
    assert len([p for p in submits_to(sim, MOBILE) if b"unsubscribed" in p.raw]) == 1
    await app.close()


@pytest.fixture
async def pg_via_proxy() -> AsyncIterator[tuple[str, FaultProxy]]:
    dsn = await pg_dsn_or_skip()
    parts = urlsplit(dsn)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    schema = unique_schema("modup")
    via_proxy = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    yield f"{via_proxy}?schema={schema}", proxy
    await proxy.stop()
    await drop_schema(dsn, schema)


async def test_copy_of_a_stop_whose_write_fails_gets_the_same_failure(
        make_gateway: GatewayFactory, sim: Simulator, pg_via_proxy: tuple[str, FaultProxy]) -> None:
    url, proxy = pg_via_proxy
    app = await App.bind(await make_gateway(database_url=url))
    await proxy.stop()  # the database goes away: the first STOP's write fails
    assert await answers(in_flight(receiver(sim), ("STOP", b""), ("STOP", b""))) == [st.ESME_RX_T_APPN] * 2
    assert app.delivered == []  # the copy was never handed on (and acked) on its own
    await app.close()


async def test_sar_one_of_one_is_a_whole_stop(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    sar = tlv(P.TAG_SAR_MSG_REF_NUM, b"\x00\x07") + tlv(P.TAG_SAR_TOTAL_SEGMENTS, b"\x01") \
        + tlv(P.TAG_SAR_SEGMENT_SEQNUM, b"\x01")
    assert await answers(in_flight(receiver(sim), ("STOP", sar))) == [0]
    assert await blocked(app)
    await app.close()


async def test_redelivered_stop_after_restart_replies_once(make_gateway: GatewayFactory, sim: Simulator,
                                                           db_url: str) -> None:
    first = await make_gateway(database_url=db_url)
    app = await App.bind(first)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    await app.close()
    await first.stop()
    app = await App.bind(await make_gateway(database_url=db_url))
    assert await sim.inject_mo(MOBILE, LONG_CODE, "HELP") == 0  # no state: the next STOP is still a copy
    await replies_to(sim, MOBILE, b"Msg&data")
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0  # the carrier redelivers
    assert await sim.inject_mo(MOBILE, LONG_CODE, "HELP") == 0  # one carrier session: replies in order
    await sim.wait_until(lambda: len([p for p in submits_to(sim, MOBILE) if b"Msg&data" in p.raw]) == 2)
    assert len([p for p in submits_to(sim, MOBILE) if b"unsubscribed" in p.raw]) == 1
    assert len(await events(db_url, "stop")) == 1
    assert len(app.delivered) == 3  # the copy still reaches the application (at least once)
    await app.close()


async def test_every_help_after_the_last_was_answered_gets_a_reply(make_gateway: GatewayFactory,
                                                                   sim: Simulator, db_url: str) -> None:
    first = await make_gateway(database_url=db_url)
    for _ in range(2):
        assert await sim.inject_mo(MOBILE, LONG_CODE, "HELP") == 0
    await first.stop()
    await make_gateway(database_url=db_url)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "HELP") == 0
    await sim.wait_until(lambda: len([p for p in submits_to(sim, MOBILE) if b"Msg&data" in p.raw]) == 3)
    assert len(await events(db_url, "help")) == 3


async def test_same_stop_to_two_gateways_in_flight_counts_once(make_gateway: GatewayFactory, sim: Simulator,
                                                               db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("two gateways share a PostgreSQL store")
    one = await make_gateway(database_url=db_url)
    first = receiver(sim)
    two = await make_gateway(database_url=db_url)
    await sim.wait_until(lambda: sim.bound_count == 2)
    second = next(s for s in sim._sessions if s is not first and s.can_receive)
    apps = [await App.bind(one), await App.bind(two)]
    futures = in_flight(first, ("STOP", b"")) + in_flight(second, ("STOP", b""))
    assert await answers(futures) == [0, 0]
    assert len(await events(db_url, "stop")) == 1
    assert await sim.inject_mo(MOBILE, LONG_CODE, "HELP") == 0
    await replies_to(sim, MOBILE, b"Msg&data")
    assert len([p for p in submits_to(sim, MOBILE) if b"unsubscribed" in p.raw]) == 1
    for app in apps:
        await app.close()


async def test_nul_in_a_ucs2_stop_is_durable_on_postgres(make_gateway: GatewayFactory, sim: Simulator,
                                                        db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL text refuses NUL")
    gateway = await make_gateway(database_url=db_url, http={"port": 0})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP\x00", data_coding=8) == 0
    assert await blocked(app)
    [event] = await events(db_url, "stop")
    assert event.text == "STOP\\u0000"
    assert (await http_get(gateway.http_port, "/readyz"))[0] == 200
    assert gateway.store is not None and gateway.store.healthy
    await app.close()


async def test_plain_texts_queued_behind_a_stop_are_each_forwarded(make_gateway: GatewayFactory,
                                                                   sim: Simulator, db_url: str) -> None:
    app = await App.bind(await make_gateway(database_url=db_url))
    assert await answers(in_flight(receiver(sim), ("STOP", b""), ("ok", b""), ("ok", b""))) == [0] * 3
    texts = [decode_text(sm.data_coding, sm.esm_class, sm.payload).text
             for sm in (F.parse_any_sm(p) for p in app.delivered)]
    assert texts == ["STOP", "ok", "ok"]  # in arrival order, the copy-looking one too
    await app.close()
