"""Quiet hours per recipient number and at the requested delivery time; program opt-outs under
both readings of an ambiguous destination. Real sockets, injected clock."""

from __future__ import annotations

import datetime as dt

from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.conftest import GatewayFactory
from tests.integration.test_compliance_programs import ALERTS, MOBILE, PROMO, mo, start
from tests.integration.test_mt_enforcement import (
    _addr,
    bound,
    mts_at_carrier,
    submit_multi,
    submit_sm,
)

NOON_PST = dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.UTC).timestamp()


def scheduled(dst: str, src: str, schedule: bytes, dst_ton: int = 1) -> bytes:
    body = (b"\x00" + _addr(1, src) + _addr(dst_ton, dst) + b"\x00\x00\x00" + schedule + b"\x00" + b"\x00"
            + b"\x00\x00\x00\x00" + b"\x02hi")
    return P.encode(P.SUBMIT_SM, 0, 1, body)


def schedule_of(raw: bytes, src: str, dst: str) -> bytes:
    head = 16 + 1 + 2 + len(src) + 1 + 2 + len(dst) + 1 + 3
    return raw[head:raw.index(b"\x00", head)]


async def test_quiet_hours_per_zone_within_one_area_code(make_gateway: GatewayFactory, sim: Simulator) -> None:
    # 01:30 UTC: 19:30 in Pensacola (850-200, Central), 20:30 in Tallahassee (850-222, Eastern);
    # Florida closes at 20:00. The first answer must not be reused for the whole area code.
    at = dt.datetime(2026, 12, 2, 1, 30, tzinfo=dt.UTC).timestamp()
    gateway = await start(make_gateway, at=at, quiet="reject")
    app = await bound(gateway)
    assert (await app.request(submit_sm("18502001234", src=PROMO))).command_status == 0
    assert (await app.request(submit_sm("18502220100", src=PROMO))).command_status == 0x45
    assert (await app.request(submit_sm("18502001234", src=PROMO))).command_status == 0  # still open
    await app.close()


async def test_quiet_hours_judged_at_the_requested_delivery_time(make_gateway: GatewayFactory,
                                                                sim: Simulator) -> None:
    gateway = await start(make_gateway, at=NOON_PST, quiet="reject")
    app = await bound(gateway)
    night = b"261202110000000+"  # 2026-12-02 11:00 UTC = 03:00 PST
    assert (await app.request(scheduled(MOBILE, PROMO, night))).command_status == 0x45
    local = b"261202030000032-"  # the same instant written in PST (-8 h = 32 quarter hours)
    assert (await app.request(scheduled(MOBILE, PROMO, local))).command_status == 0x45
    before = len(mts_at_carrier(sim))
    day = b"261202180000000+"  # 10:00 PST: open, forwarded unchanged
    assert (await app.request(scheduled(MOBILE, PROMO, day))).command_status == 0
    assert len(mts_at_carrier(sim)) == before + 1
    assert (await app.request(scheduled(MOBILE, PROMO, b"000000150000000R"))).command_status == 0x45  # 03:00
    assert (await app.request(scheduled(MOBILE, ALERTS, night))).command_status == 0  # transactional
    await app.close()


async def test_defer_never_schedules_earlier_than_asked(make_gateway: GatewayFactory, sim: Simulator) -> None:
    night = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC).timestamp()  # 22:00 PST: closed until 08:00
    gateway = await start(make_gateway, at=NOON_PST, quiet="defer")
    assert gateway.optout is not None
    app = await bound(gateway)
    # open now, scheduled for 03:00 local: moved to 08:00 PST that morning
    assert (await app.request(scheduled(MOBILE, PROMO, b"261202110000000+"))).command_status == 0
    assert schedule_of(mts_at_carrier(sim)[-1].raw, PROMO, MOBILE) == b"261202160000000+"
    gateway.optout.clock = lambda: night
    # closed now; the application asks for 02:00 PST the night after: moved to 08:00 PST then
    assert (await app.request(scheduled(MOBILE, PROMO, b"261203100000000+"))).command_status == 0
    assert schedule_of(mts_at_carrier(sim)[-1].raw, PROMO, MOBILE) == b"261203160000000+"
    # relative two days (2026-12-04 06:00 UTC = 22:00 PST): moved to 08:00 PST on 12-04, not earlier
    assert (await app.request(scheduled(MOBILE, PROMO, b"000002000000000R"))).command_status == 0
    assert schedule_of(mts_at_carrier(sim)[-1].raw, PROMO, MOBILE) == b"261204160000000+"
    # relative into an open time: left as the application wrote it
    raw = scheduled(MOBILE, PROMO, b"000000120000000R")  # 10:00 PST
    assert (await app.request(raw)).command_status == 0
    assert mts_at_carrier(sim)[-1].raw[16:] == raw[16:]
    # unreadable: judged now and replaced by the next allowed minute
    assert (await app.request(scheduled(MOBILE, PROMO, b"2612XX1000000000"))).command_status == 0
    assert schedule_of(mts_at_carrier(sim)[-1].raw, PROMO, MOBILE) == b"261202160000000+"
    await app.close()


async def test_submit_multi_quiet_hours_at_its_schedule(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await start(make_gateway, at=NOON_PST, quiet="reject")
    app = await bound(gateway)
    plain = submit_multi([(MOBILE, 1)], src=PROMO)
    at = plain.index(b"\x00", plain.index(MOBILE.encode())) + 4  # after the dest, esm_class .. priority
    raw = plain[:at] + b"261202110000000+" + plain[at:]
    raw = len(raw).to_bytes(4, "big") + raw[4:]
    assert (await app.request(plain)).command_status == 0
    assert (await app.request(raw)).command_status == 0x45
    await app.close()


async def test_program_opt_out_under_both_readings(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await start(make_gateway)
    app = await bound(gateway)
    sg = "6581234567"  # TON 0: +16581234567 by length, or Singapore +6581234567
    await mo(sim, app, sg, ALERTS, "STOP PROMO")
    assert (await app.request(submit_sm(sg, src=PROMO))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(sg, dst_ton=0, src=PROMO))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_multi([(sg, 0)], src=PROMO))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(sg, dst_ton=0, src=ALERTS))).command_status == 0  # other program
    await app.close()
