"""Issue 11, second review: program keywords under ambiguous alphabets, quiet hours under both
readings of an ambiguous destination, the durable revoke-all clarification (real sockets, clock
injected)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration import test_compliance_review11 as R
from tests.integration.conftest import GatewayFactory
from tests.integration.test_compliance import _refused, _until
from tests.integration.test_compliance_programs import ALERTS, MOBILE, PROMO, mo, start
from tests.integration.test_mt_enforcement import (
    _addr,
    bound,
    mts_at_carrier,
    submit_multi,
    submit_sm,
)
from tests.integration.test_quiet_review11 import schedule_of, scheduled

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


SG = "6581234567"  # TON 0: +16581234567 (Jamaica, by its length) or Singapore +6581234567


async def test_quiet_hours_under_both_readings_reject(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """20:00 UTC: 15:00 in Jamaica (open), 04:00 in Singapore (closed): the ambiguous destination
    takes the window open under both readings; written as international, only its own."""
    gateway = await start(make_gateway, quiet="reject")
    app = await bound(gateway)
    assert (await app.request(submit_sm(SG, dst_ton=0, src=PROMO))).command_status == 0x45
    assert (await app.request(submit_multi([(SG, 0)], src=PROMO))).command_status == 0x45
    assert (await app.request(submit_sm(f"1{SG}", src=PROMO))).command_status == 0  # TON 1: Jamaica alone
    assert (await app.request(submit_sm(SG, dst_ton=0, src=ALERTS))).command_status == 0  # transactional
    await app.close()


async def test_quiet_hours_under_both_readings_defer(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await start(make_gateway, quiet="defer")
    app = await bound(gateway)
    assert (await app.request(submit_sm(SG, dst_ton=0, src=PROMO))).command_status == 0
    assert schedule_of(mts_at_carrier(sim)[-1].raw, PROMO, SG) == b"261202000000000+"  # 08:00 in Singapore
    assert (await app.request(scheduled(SG, PROMO, b"261201210000000+", dst_ton=0))).command_status == 0
    assert schedule_of(mts_at_carrier(sim)[-1].raw, PROMO, SG) == b"261202000000000+"  # asked at 05:00 SGT
    await _until(lambda: _refused(gateway, "quiet_hours_deferred") == 2)  # counted, once per loop turn
    assert _refused(gateway, "quiet_hours") == 0
    await app.close()


# -- revoke-all's clarification: durable, and under each scope -----------------------------------


async def _acme(make_gateway: GatewayFactory, **db: Any) -> Any:
    g = await make_gateway(accounts=R.accounts(), optout={"programs": R.KEYWORDS,
                                                          "revoke_all": {"clarify_reply": R.CLARIFY}}, **db)
    assert g.optout is not None
    g.optout.clock = lambda: R.ON
    return g


async def _offer_then_answer_elsewhere(make_gateway: GatewayFactory, sim: Simulator, **db: Any) -> Any:
    """STOP through one gateway, which then stops; the answer reaches a fresh one on the same store."""
    first = await _acme(make_gateway, **db)
    app = await bound(first)
    await mo(sim, app, R.MOBILE, R.B, "STOP")
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"Reply ALERTS" in p.raw)
    await app.close()
    await first.stop()
    second = await _acme(make_gateway, **db)
    assert second.optout is not None
    second.optout.clock = lambda: R.ON + 240  # within the 5 minutes
    app = await bound(second)
    assert [await R.status(app, n) for n in (R.A, R.B, R.C)] == [st.ESME_RINVDSTADR] * 3  # until it answers
    await mo(sim, app, R.MOBILE, R.B, "ALERTS")
    assert [await R.status(app, n) for n in (R.A, R.B, R.C)] == [0, st.ESME_RINVDSTADR, st.ESME_RINVDSTADR]
    assert [e.rule for e in await _events(second, "clarify")][:1] == ["clarify:alerts:ALERTS"]
    await mo(sim, app, R.MOBILE, R.B, "STOP")  # a new STOP offers a new choice; a late answer is ordinary
    second.optout.clock = lambda: R.ON + 600
    await mo(sim, app, R.MOBILE, R.B, "ALERTS")
    assert await R.status(app, R.A) == st.ESME_RINVDSTADR
    await app.close()
    return second


async def test_clarification_survives_a_restart(make_gateway: GatewayFactory, sim: Simulator) -> None:
    await _offer_then_answer_elsewhere(make_gateway, sim)


async def test_clarification_honoured_by_another_gateway_on_postgres(make_gateway: GatewayFactory, sim: Simulator,
                                                                    pg_url: str) -> None:
    await _offer_then_answer_elsewhere(make_gateway, sim, database_url=pg_url)


async def test_clarification_offered_under_scope_account(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Scope account: the STOP's own block is the account's; its confirmation offers the choice too."""
    g = await R._gateway(make_gateway, scope="account", revoke_all={"clarify_reply": R.CLARIFY})
    app = await bound(g)
    await mo(sim, app, R.MOBILE, R.B, "STOP")
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"Reply ALERTS" in p.raw)
    assert [await R.status(app, n) for n in (R.A, R.B, R.C)] == [st.ESME_RINVDSTADR] * 3
    await mo(sim, app, R.MOBILE, R.B, "ALERTS")
    assert [await R.status(app, n) for n in (R.A, R.B, R.C)] == [0, st.ESME_RINVDSTADR, st.ESME_RINVDSTADR]
    await app.close()


async def test_no_clarification_before_revoke_all_is_in_force(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Scope account before the effective date: the ordinary STOP reply, a later keyword is ordinary."""
    g = await R._gateway(make_gateway, scope="account", revoke_all={"clarify_reply": R.CLARIFY,
                                                                    "effective": "2027-06-01"})
    app = await bound(g)
    await mo(sim, app, R.MOBILE, R.B, "STOP")
    reply = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and R.MOBILE.encode() in p.raw)
    assert b"Reply ALERTS" not in reply.raw
    await mo(sim, app, R.MOBILE, R.B, "ALERTS")
    assert await R.status(app, R.A) == st.ESME_RINVDSTADR
    await app.close()


def with_validity(dst: str, src: str, schedule: bytes, validity: bytes) -> bytes:
    body = (b"\x00" + _addr(1, src) + _addr(1, dst) + b"\x00\x00\x00" + schedule + b"\x00" + validity + b"\x00"
            + b"\x00\x00\x00\x00" + b"\x02hi")
    return P.encode(P.SUBMIT_SM, 0, 1, body)


async def test_defer_never_past_the_validity_period(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """22:00 PST, held until 08:00: a message valid for 2 hours would expire at the SMSC before it
    may be sent; refused with quiet_status instead of accepted and silently lost. One valid
    longer is deferred with its validity_period untouched."""
    night = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC).timestamp()
    gateway = await start(make_gateway, at=night, quiet="defer")
    app = await bound(gateway)
    before = len(mts_at_carrier(sim))
    for validity in (b"000000020000000R", b"261202080000000+"):  # 2 h relative; 00:00 PST absolute
        resp = await app.request(with_validity(MOBILE, PROMO, b"", validity))
        assert resp.command_status == 0x45
    assert len(mts_at_carrier(sim)) == before
    raw = with_validity(MOBILE, PROMO, b"", b"000001000000000R")  # a day: deferred
    assert (await app.request(raw)).command_status == 0
    sent = mts_at_carrier(sim)[-1].raw
    assert schedule_of(sent, PROMO, MOBILE) == b"261202160000000+" and b"000001000000000R" in sent
    scheduled_raw = with_validity(MOBILE, PROMO, b"261202070000000+", b"261202090000000+")  # 23:00-01:00 PST
    assert (await app.request(scheduled_raw)).command_status == 0x45
    await _until(lambda: _refused(gateway, "quiet_hours") == 3)
    await app.close()


TOLL_FREE = "18005550100"


async def test_revoke_all_covers_a_toll_free_stop(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """The network's STOP on the business's toll-free number is the consumer's revocation too: under
    revoke-all every number of the business stops (the mirror stays per number, the account's key is
    the gateway's own opt-out, lifted by a START to any of its numbers)."""
    accounts = [{"system_id": "acme", "password": "secret", "numbers": [f"+{ALERTS}", f"+{TOLL_FREE}"]}]
    gateway = await make_gateway(accounts=accounts)
    assert gateway.optout is not None
    gateway.optout.clock = lambda: R.ON
    app = await bound(gateway)
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "STOP") == 0
    await _until(lambda: bool(gateway.optout and gateway.optout.index.is_blocked(int(MOBILE), f"+{TOLL_FREE}",
                                                                                   "acme")))
    assert (await app.request(submit_sm(MOBILE, src=TOLL_FREE))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == st.ESME_RINVDSTADR
    stops = [(e.scope, e.kind) for e in await _events(gateway, "stop")]
    assert stops == [("number", "carrier"), ("account", "optout")]  # as other gateways replay them
    await mo(sim, app, MOBILE, ALERTS, "START")  # the business's own opt-in: the network's block stays
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == 0
    assert (await app.request(submit_sm(MOBILE, src=TOLL_FREE))).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_deactivated_number_configurable_per_program(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Issue 11 item 4: the refusal after a deactivation is configurable per program; a program's own
    `deactivated` wins over optout.deactivated_action, the others follow it."""
    accounts = R.accounts()
    programs = accounts[0]["programs"]
    programs[0] = {**programs[0], "deactivated": "refuse"}  # alerts: transactional, still refused
    programs[1] = {**programs[1], "deactivated": "allow"}  # promo: marketing, allowed
    g = await make_gateway(accounts=accounts, optout={"deactivated_action": "marketing"})
    assert g.optout is not None
    g.optout.clock = lambda: R.ON  # noon in California: quiet hours stay out of it
    app = await bound(g)
    await R._deactivate(g)
    assert [await R.status(app, n) for n in (R.A, R.B, R.C)] == [st.ESME_RINVDSTADR, 0, st.ESME_RINVDSTADR]
    await app.close()


async def test_report_counts_one_revoke_all_stop_once(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Under revoke-all one STOP writes two events (its number's key and the account's): the report
    honours one STOP, confirmed once, not two with one "without a confirmation"."""
    from gateway.evidence import summarise

    g = await R._gateway(make_gateway)
    app = await bound(g)
    await mo(sim, app, R.MOBILE, R.B, "STOP")
    await _until_events(g, lambda events: any(e.op == "stop_reply" for e in events))
    events = await g.store.events_after(0)
    assert [e.scope for e in events if e.op == "stop"] == ["number", "account"]
    summary = summarise(events, 0.0, 4e9)
    assert (summary.stops, len(summary.confirmations), summary.unconfirmed) == (1, 1, 0)
    await mo(sim, app, R.MOBILE, R.B, "START")
    await mo(sim, app, R.MOBILE, R.B, "STOP")  # the same text again: a second STOP (its reply rate-limited)
    summary = summarise(await g.store.events_after(0), 0.0, 4e9)
    assert (summary.stops, len(summary.confirmations), summary.unconfirmed) == (2, 1, 1)
    await app.close()


async def _until_events(g: Any, condition: Any) -> None:
    async def events() -> list[Any]:
        return list(await g.store.events_after(0))

    async with asyncio.timeout(5):
        while not condition(await events()):
            await asyncio.sleep(0.01)


async def test_clarification_under_scope_account_keeps_numbers_outside_programs_revoked(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Scope account: the number texted (in no program) has no block of its own to keep it revoked;
    the clarification gives it one, as every other number outside the programs."""
    g = await R._gateway(make_gateway, scope="account", revoke_all={"clarify_reply": R.CLARIFY})
    app = await bound(g)
    await mo(sim, app, R.MOBILE, R.C, "STOP")
    await mo(sim, app, R.MOBILE, R.C, "ALERTS")
    assert [await R.status(app, n) for n in (R.A, R.B, R.C)] == [0, st.ESME_RINVDSTADR, st.ESME_RINVDSTADR]
    await app.close()


async def test_program_opt_out_under_block_mode_receipt(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """A program opt-out is a block (scope program): block_mode "receipt" accepts it with a gateway
    message id and a REJECTD receipt, as for a STOP, instead of a status the application never reads."""
    from gateway.smpp import fields as F

    gateway = await start(make_gateway, block_mode="receipt")
    app = await bound(gateway)
    await mo(sim, app, MOBILE, ALERTS, "STOP PROMO")
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"no more promo" in p.raw)  # its reply
    before = len(mts_at_carrier(sim))
    resp = await app.request(submit_sm(MOBILE, src=PROMO, registered=1))
    assert resp.command_status == 0
    message_id = F.response_message_id(resp.raw)
    await app.wait(lambda: any(b"stat:REJECTD" in p.raw and message_id in p.raw for p in app.delivered))
    assert len(mts_at_carrier(sim)) == before
    assert _refused(gateway, "program") == 1
    await app.close()
