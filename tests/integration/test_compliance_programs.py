"""Programs, revoke-all and quiet hours over real sockets (clock injected, never the real one)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.conftest import GatewayFactory
from tests.integration.test_mt_enforcement import bound, mts_at_carrier, submit_sm

ALERTS, PROMO = "14155550100", "14155550101"
MOBILE, OTHER = "14155550123", "14155550124"
NOON_PST = dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.UTC).timestamp()  # 12:00 in California


def accounts(quiet: str = "off") -> list[dict[str, Any]]:
    return [{"system_id": "acme", "password": "secret", "numbers": [f"+{ALERTS}", f"+{PROMO}"],
             "programs": [{"name": "alerts", "category": "transactional", "numbers": [f"+{ALERTS}"]},
                          {"name": "promo", "category": "marketing", "numbers": [f"+{PROMO}"],
                           "quiet_hours": quiet}]},
            {"system_id": "other", "password": "pw2"}]


OPTOUT = {"programs": {"keywords": [{"program": "promo", "stop": ["STOP PROMO"], "start": ["PROMO"],
                                     "stop_reply": "You will get no more promo messages. STOP ends all."}]}}


async def start(make_gateway: GatewayFactory, at: float = NOON_PST, quiet: str = "off",
                **optout: Any) -> Gateway:
    gateway = await make_gateway(accounts=accounts(quiet), optout={**OPTOUT, **optout})
    assert gateway.optout is not None
    gateway.optout.clock = lambda: at
    return gateway


async def mo(sim: Simulator, app: Any, mobile: str, to: str, text: str) -> None:
    before = len(app.delivered)
    assert await sim.inject_mo(mobile, to, text) == 0
    await app.wait(lambda: len(app.delivered) == before + 1)  # forwarded after it was recorded


async def test_program_keyword_stops_one_program_stop_stops_the_number(make_gateway: GatewayFactory,
                                                                        sim: Simulator) -> None:
    gateway = await start(make_gateway)
    app = await bound(gateway)
    await mo(sim, app, MOBILE, ALERTS, "stop promo")
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"no more promo" in p.raw)
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == 0  # alerts still go
    assert (await app.request(submit_sm(OTHER, src=PROMO))).command_status == 0  # other mobiles too
    await mo(sim, app, MOBILE, ALERTS, "PROMO")  # the program's opt-in
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == 0
    await mo(sim, app, MOBILE, ALERTS, "STOP")  # the standard STOP: the number it answered, confirmed
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"unsubscribed" in p.raw)
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == st.ESME_RINVDSTADR
    events = [e for e in await gateway.store.events_after(0) if e.number == f"+{MOBILE}" and e.block_state]
    assert [(e.op, e.scope, e.account, e.rule) for e in events] == [
        ("program_stop", "program", "acme/promo", "program:promo:STOP PROMO"),  # the audit names the program
        ("program_start", "program", "acme/promo", "program:promo:PROMO"),
        ("stop", "number", "acme", "stop:STOP")]
    await app.close()


async def test_program_opt_in_never_lifts_a_stop(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await start(make_gateway)
    app = await bound(gateway)
    await mo(sim, app, MOBILE, PROMO, "STOP")
    await mo(sim, app, MOBILE, PROMO, "PROMO")
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_revoke_all_follows_its_effective_date(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await start(make_gateway)  # 2026-12-01: before 2027-01-31, off
    assert gateway.optout is not None
    app = await bound(gateway)
    await mo(sim, app, MOBILE, ALERTS, "STOP")
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == 0  # another number: not revoked
    on_the_day = dt.datetime(2027, 1, 31, 0, 0, tzinfo=dt.UTC).timestamp()
    gateway.optout.clock = lambda: on_the_day
    await mo(sim, app, OTHER, ALERTS, "STOP")
    assert (await app.request(submit_sm(OTHER, src=ALERTS))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(OTHER, src=PROMO))).command_status == st.ESME_RINVDSTADR  # all numbers
    await mo(sim, app, OTHER, PROMO, "START")  # START lifts every liftable key of the pair
    assert (await app.request(submit_sm(OTHER, src=PROMO))).command_status == 0
    await app.close()


async def test_revoke_all_switched_off(make_gateway: GatewayFactory, sim: Simulator) -> None:
    after = dt.datetime(2027, 3, 1, 20, 0, tzinfo=dt.UTC).timestamp()
    gateway = await start(make_gateway, at=after, revoke_all={"enabled": False})
    app = await bound(gateway)
    await mo(sim, app, MOBILE, ALERTS, "STOP")
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == 0
    await app.close()


async def test_quiet_hours_reject_with_vendor_status(make_gateway: GatewayFactory, sim: Simulator) -> None:
    night = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC).timestamp()  # 22:00 in California
    gateway = await make_gateway(accounts=[{**accounts("reject")[0], "programs": [
        {"name": "alerts", "category": "transactional", "numbers": [f"+{ALERTS}"]},
        {"name": "promo", "category": "marketing", "numbers": [f"+{PROMO}"], "quiet_status": 0x401}]}])
    assert gateway.optout is not None
    gateway.optout.clock = lambda: night
    app = await bound(gateway)
    before = len(mts_at_carrier(sim))
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == 0x401
    assert len(mts_at_carrier(sim)) == before
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == 0  # transactional: never held
    await app.close()


async def test_defer_rewrites_only_schedule_delivery_time(make_gateway: GatewayFactory, sim: Simulator) -> None:
    night = dt.datetime(2026, 12, 1, 5, 0, tzinfo=dt.UTC).timestamp()  # 21:00 PST: closed until 8:00 PST
    gateway = await start(make_gateway, at=night, quiet="defer")
    app = await bound(gateway)
    raw = submit_sm(MOBILE, src=PROMO)
    assert (await app.request(raw)).command_status == 0
    sent = mts_at_carrier(sim)[-1].raw
    stamp = b"261201160000000+"  # 2026-12-01 16:00 UTC, SMPP 3.4 7.1.1 absolute format
    head = 16 + 1 + 2 + len(PROMO) + 1 + 2 + len(MOBILE) + 1 + 3  # service_type .. priority_flag
    assert sent[head:head + 17] == stamp + b"\x00"
    assert sent[16:head] == raw[16:head] and sent[head + 17:] == raw[head + 1:]  # the rest byte-identical
    assert P.HEADER.unpack_from(sent)[0] == len(sent) == len(raw) + 16
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == 0
    assert mts_at_carrier(sim)[-1].raw[16:] == submit_sm(MOBILE, src=ALERTS)[16:]  # transactional untouched
    await app.close()


CLARIFY = "You are unsubscribed from all Acme messages. Reply ALERTS within 5 minutes to keep account alerts."


async def test_revoke_all_clarification(make_gateway: GatewayFactory, sim: Simulator) -> None:
    on = dt.datetime(2027, 2, 1, 20, 0, tzinfo=dt.UTC).timestamp()
    keywords = {"keywords": [*OPTOUT["programs"]["keywords"], {"program": "alerts", "start": ["ALERTS"]}]}
    gateway = await start(make_gateway, at=on, programs=keywords, revoke_all={"clarify_reply": CLARIFY})
    assert gateway.optout is not None
    app = await bound(gateway)
    await mo(sim, app, MOBILE, PROMO, "STOP")
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"Reply ALERTS within 5 minutes" in p.raw)
    for src in (ALERTS, PROMO):  # until the mobile answers, everything stays revoked
        assert (await app.request(submit_sm(MOBILE, src=src))).command_status == st.ESME_RINVDSTADR
    gateway.optout.clock = lambda: on + 299
    await mo(sim, app, MOBILE, PROMO, "ALERTS")  # the one clarification: keep alerts
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == 0
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == st.ESME_RINVDSTADR
    # a second mobile answers too late: everything stays revoked
    gateway.optout.clock = lambda: on + 1000
    await mo(sim, app, OTHER, PROMO, "STOP")
    gateway.optout.clock = lambda: on + 1301
    await mo(sim, app, OTHER, PROMO, "ALERTS")
    assert (await app.request(submit_sm(OTHER, src=ALERTS))).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_submit_multi_destinations_checked_per_program(make_gateway: GatewayFactory, sim: Simulator) -> None:
    from gateway.smpp import fields as F
    from tests.integration.test_mt_enforcement import submit_multi

    night = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC).timestamp()  # 22:00 in California
    gateway = await start(make_gateway, quiet="defer")
    assert gateway.optout is not None
    app = await bound(gateway)
    await mo(sim, app, MOBILE, ALERTS, "STOP PROMO")
    resp = await app.request(submit_multi([(MOBILE, 1), (OTHER, 1)], src=PROMO))
    assert resp.command_status == 0
    _, unsuccess = F.parse_submit_multi_resp(resp.raw)
    assert [(a.text, s) for a, s in unsuccess] == [(MOBILE, st.ESME_RINVDSTADR)]  # the program's opt-out
    forwarded = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_MULTI)
    assert [d.address.text for d in F.submit_multi_dests(forwarded.raw)[0] if d.address] == [OTHER]
    gateway.optout.clock = lambda: night  # held: one schedule cannot suit every destination, so refused
    resp = await app.request(submit_multi([(OTHER, 1)], src=PROMO))
    assert resp.command_status == 0x45
    assert (await app.request(submit_multi([(OTHER, 1)], src=ALERTS))).command_status == 0  # transactional
    await app.close()
