"""Garbage, truncated frames and slow senders: one session suffers, every other keeps working."""

from __future__ import annotations

import random
import struct

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory


def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 200))
    if kind == 1:  # a plausible header with a random command and a short random body
        body = rng.randbytes(rng.randrange(0, 60))
        return struct.pack("!IIII", 16 + len(body), rng.choice(list(P.COMMAND_NAMES) + [7, 0x1234]),
                           rng.randrange(3), rng.randrange(1 << 31)) + body
    if kind == 2:  # a valid submit_sm with bytes flipped inside its body
        raw = bytearray(submit_sm())
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(16, len(raw))] = rng.randrange(256)
        return bytes(raw)
    return struct.pack("!I", rng.choice([0, 3, 15, 1 << 31, 0xFFFFFFFF])) + rng.randbytes(12)


UNOWNED = "14155550177"  # "other" owns no number: it may send from any number nobody owns


async def test_garbage_never_hurts_other_sessions(gateway: Gateway, sim: Simulator) -> None:
    rng = random.Random(20261127)
    healthy = await RawClient.connect(gateway.smpp_port)
    await healthy.bind("other", "pw2")
    for _ in range(40):
        victim = await RawClient.connect(gateway.smpp_port)
        await victim.bind()
        victim.send(_garbage(rng))
        victim.send(P.encode(P.ENQUIRE_LINK, 0, 999))
        try:  # either it still answers, or it closed the session per SMPP
            resp = await victim.read(lambda p: p.sequence_number == 999, timeout=2)
            assert resp.command_id == P.ENQUIRE_LINK_RESP
        except (ConnectionError, TimeoutError):
            pass
        await victim.close()
        assert (await healthy.request(submit_sm(src=UNOWNED))).command_status == 0
    await healthy.close()


async def test_malformed_submit_gets_an_answer_and_is_not_forwarded(gateway: Gateway, sim: Simulator) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    resp = await client.request(P.encode(P.SUBMIT_SM, 0, 1, b"\x00\x01\x01123"))  # no NUL: truncated
    assert resp.command_id == P.SUBMIT_SM_RESP and resp.command_status != 0
    assert not [p for p in sim.received if p.command_id == P.SUBMIT_SM]
    await client.close()


async def test_slow_sender_with_half_a_pdu_is_dropped(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"inactivity_timeout": 0.4})
    slow = await RawClient.connect(gateway.smpp_port)
    await slow.bind()
    slow.send(submit_sm()[:10])  # and then nothing
    unbind = await slow.read(lambda p: p.command_id == P.UNBIND)
    assert unbind.command_id == P.UNBIND
    assert await slow.closed()
    fresh = await RawClient.connect(gateway.smpp_port)
    assert (await fresh.bind()).command_status == 0
    await fresh.close()
