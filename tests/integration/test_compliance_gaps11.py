"""Issue 11, second review: program keywords under ambiguous alphabets, quiet hours under both
readings of an ambiguous destination, the durable revoke-all clarification (real sockets, clock
injected)."""

from __future__ import annotations

from typing import Any

from gateway.simulator import Simulator
from gateway.smpp import status as st
from tests.integration.conftest import GatewayFactory
from tests.integration.test_compliance_programs import ALERTS, MOBILE, PROMO, start
from tests.integration.test_mt_enforcement import bound, submit_sm

UNDERSCORE = {"keywords": [{"program": "promo", "stop": ["PROMO_OFF"], "start": ["PROMO_ON"]}]}


async def _events(gateway: Any, op: str) -> list[Any]:
    return [e for e in await gateway.store.events_after(0) if e.op == op]


async def test_program_keyword_counts_under_any_alphabet(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """b'PROMO_OFF' is 'PROMO§OFF' in GSM 03.38 (0x5F) and 'PROMO_OFF' in ASCII: the program
    opt-out must win over the first candidate, as a STOP does."""
    gateway = await start(make_gateway, programs=UNDERSCORE, smsc_default_alphabets=["gsm0338", "ascii"])
    app = await bound(gateway)
    before = len(app.delivered)
    assert await sim.inject_mo(MOBILE, ALERTS, "", data_coding=0, raw_short_message=b"PROMO_OFF") == 0
    await app.wait(lambda: len(app.delivered) == before + 1)
    stops = await _events(gateway, "program_stop")
    assert [(e.account, e.alphabet) for e in stops] == [("acme/promo", "ascii")]
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == 0
    await app.close()
