"""Compliance over the wire (issue 11): admin-blocked contacts, ambiguous alphabets, deactivations."""

from __future__ import annotations

import time

import pytest
from aiosmpplib.codec import find_codec_info

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey
from tests.integration.conftest import GatewayFactory
from tests.integration.test_optout import LONG_CODE, MOBILE, App, replies_to


async def _events(gateway: Gateway, op: str) -> list[AuditEvent]:
    assert gateway.store is not None
    return [e for e in await gateway.store.events_after(0, 10_000) if e.op == op]


async def _admin_block(gateway: Gateway) -> None:
    assert gateway.store is not None and gateway.sync is not None
    now = time.time()
    key = BlockKey("+" + MOBILE, "", "global")
    await gateway.store.record(AuditEvent(at=now, op="admin_add", source="operator"),
                               BlockChange("add", Block(key, "admin", "operator", now)))
    await gateway.sync.catch_up()


async def test_admin_blocked_mobile_mo_is_dropped_with_an_event(make_gateway: GatewayFactory,
                                                                sim: Simulator) -> None:
    gateway = await make_gateway(optout={"admin_block_drops_mo": True})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "before the block") == 0
    assert len(app.delivered) == 1
    await _admin_block(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "hello again, it's me") == 0  # the carrier gets ESME_ROK
    dropped = await _events(gateway, "admin_dropped")
    assert [(e.number, e.text, e.rule, e.source) for e in dropped] == [
        ("+" + MOBILE, "hello again, it's me", "admin_block", "operator")]
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0  # a STOP still counts, and is not forwarded
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert [e.text for e in await _events(gateway, "stop")] == ["STOP"]
    assert await sim.inject_mo("14155550999", LONG_CODE, "another mobile") == 0  # not blocked: forwarded
    assert len(app.delivered) == 2
    texts = [p.raw for p in app.delivered]
    assert any(b"before the block" in raw for raw in texts) and any(b"another mobile" in raw for raw in texts)
    assert not any(b"hello again" in raw or b"STOP" in raw for raw in texts)
    await app.close()


async def test_admin_block_forwards_mo_by_default(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    await _admin_block(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "hello, still here") == 0
    assert len(app.delivered) == 1
    assert await _events(gateway, "admin_dropped") == []
    await app.close()


ALPHABETS = ["gsm0338", "ascii", "latin-1"]
VARIANTS = ["STOP\t", "{STOP}", "@STOP", "STOP $", "Arrête"]


def _readings(octets: bytes) -> list[str]:
    """The candidates under which octets (data_coding 0) are a STOP keyword, in configured order."""
    from gateway.policy.keywords import KeywordTable
    from gateway.policy.settings import OptoutSettings
    from gateway.policy.text import decode_text

    table = KeywordTable(OptoutSettings())
    out = []
    for alphabet in ALPHABETS:
        text = decode_text(0, 0, octets, alphabet).text
        match = table.classify(text.replace("\x00", ""), "US") if text is not None else None
        if match is not None and match.op == "stop":
            out.append(alphabet)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sent_as", ALPHABETS)
async def test_data_coding_0_stop_under_every_candidate_alphabet(make_gateway: GatewayFactory, sim: Simulator,
                                                                 variant: str, sent_as: str) -> None:
    """A STOP written in any candidate alphabet counts, and the event says which reading matched."""
    try:
        octets = bytes(find_codec_info(sent_as).encode(variant, "strict")[0])
    except (UnicodeError, ValueError):
        pytest.skip(f"{variant!r} has no {sent_as} encoding")
    readings = _readings(octets)
    assert sent_as in readings  # the text as sent is a keyword in the alphabet it was written in
    gateway = await make_gateway(optout={"smsc_default_alphabets": ALPHABETS})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "", data_coding=0, raw_short_message=octets) == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    stops = await _events(gateway, "stop")
    assert [e.alphabet for e in stops] == [readings[0]]
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_data_coding_0_single_alphabet_misses_an_ascii_stop(gateway: Gateway, sim: Simulator) -> None:
    """The default (GSM 03.38 only) reads an ASCII tab as 'Ç': why the candidates matter."""
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "", data_coding=0, raw_short_message=b"STOP\t") == 0
    assert await _events(gateway, "stop") == []
    assert (await app.submit()).command_status == 0
    await app.close()
