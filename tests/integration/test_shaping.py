"""Traffic shaping over real sockets: account max_tps, carrier pacing, auto-replies first,
the carrier's own throttling, and the bad limits check-config refuses."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.carrier import CarrierConnection
from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient
from tests.integration.client import submit_sm as text_sm
from tests.integration.conftest import ACCOUNTS, GatewayFactory
from tests.integration.test_cli import _env, _gateway
from tests.integration.test_http import http_get
from tests.integration.test_mt_enforcement import (
    LONG_CODE,
    MOBILE,
    bound,
    mts_at_carrier,
    rejected,
    submit_sm,
)

SLOW = 0.001  # a rate so low (one token per 1000 s) that no test sees a refill


def seq(raw: bytes, n: int) -> bytes:
    return raw[:12] + struct.pack("!I", n) + raw[16:]


def payload_sm(octets: int) -> bytes:
    """submit_sm with an empty short_message and a message_payload of `octets` GSM characters."""
    raw = submit_sm("14155550124")
    body = raw[16:-3] + b"\x00" + struct.pack("!HH", P.TAG_MESSAGE_PAYLOAD, octets) + b"a" * octets
    return P.encode(P.SUBMIT_SM, 0, 1, body)


async def burst(app: RawClient, raws: list[bytes], first: int = 1000) -> list[P.Pdu]:
    """All of raws in one write; the answers in the order sent."""
    app.send(b"".join(seq(raw, first + i) for i, raw in enumerate(raws)))
    return [await app.read(lambda p, n=first + i: p.is_response and p.sequence_number == n, 15)
            for i in range(len(raws))]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def metric(body: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(prefix))


def carrier_link(gateway: Gateway) -> CarrierConnection:
    link = gateway.proxy.carriers[0]
    assert isinstance(link, CarrierConnection)
    return link


# --- item 1: account max_tps ----------------------------------------------------------------
async def test_account_limit_of_20_per_second(make_gateway: GatewayFactory, sim: Simulator) -> None:
    rate = burst_size = 20
    gateway = await make_gateway(accounts=[{**ACCOUNTS[0], "max_tps": rate, "window": 200}, ACCOUNTS[1]])
    app = await bound(gateway)
    before = len(mts_at_carrier(sim))
    loop = asyncio.get_running_loop()
    started = loop.time()
    answers = await burst(app, [submit_sm(f"1415555{i:04d}") for i in range(100)])
    elapsed = loop.time() - started
    ok = [a for a in answers if a.command_status == 0]
    assert burst_size <= len(ok) <= burst_size + rate * elapsed  # the bucket starts full
    assert all(a.command_status == st.ESME_RTHROTTLED for a in answers if a.command_status)
    # every forwarded one was answered before its OK reached us: the carrier saw exactly the OKs
    assert len(mts_at_carrier(sim)) - before == len(ok)
    body = (await http_get(gateway.http_port, "/metrics"))[1]
    assert rejected(body)["throttled"] == 100 - len(ok)
    assert 'gateway_limit_rate{limit="account:acme"} 20.0' in body
    await app.close()


async def test_refusals_draw_from_the_account_rate(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=[{**ACCOUNTS[0], "max_tps": SLOW, "burst": 3}, ACCOUNTS[1]])
    app = await bound(gateway)
    before = len(mts_at_carrier(sim))
    answers = await burst(app, [submit_sm("00014155550123")] * 5)  # an unreadable destination
    assert [a.command_status for a in answers] == [st.ESME_RINVDSTADR] * 3 + [st.ESME_RTHROTTLED] * 2
    assert (await app.request(submit_sm("14155550124"))).command_status == st.ESME_RTHROTTLED
    assert len(mts_at_carrier(sim)) == before
    await app.close()


async def test_segments_count_and_binds_share_the_bucket(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=[{**ACCOUNTS[0], "max_tps": SLOW, "burst": 6}, ACCOUNTS[1]])
    first, second = await bound(gateway), await bound(gateway)
    assert (await first.request(payload_sm(400))).command_status == 0  # three segments: 3 left
    assert (await second.request(payload_sm(400))).command_status == 0  # 0 left
    assert (await first.request(submit_sm("14155550124"))).command_status == st.ESME_RTHROTTLED
    assert (await second.request(submit_sm("14155550124"))).command_status == st.ESME_RTHROTTLED
    other = await bound(gateway, "other", "pw2")  # another account: its own (no) limit
    assert (await other.request(submit_sm("14155550124", src="14155550177"))).command_status == 0
    for app in (first, second, other):
        await app.close()


async def test_a_partly_spent_bucket_refuses_a_long_message(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=[{**ACCOUNTS[0], "max_tps": SLOW, "burst": 5}, ACCOUNTS[1]])
    app = await bound(gateway)
    assert (await app.request(payload_sm(400))).command_status == 0  # 3 of 5
    assert (await app.request(payload_sm(400))).command_status == st.ESME_RTHROTTLED  # 2 left: refused
    assert [(await app.request(submit_sm("14155550124"))).command_status for _ in range(3)] == [
        0, 0, st.ESME_RTHROTTLED]
    await app.close()


# --- item 2: carrier max_tps -------------------------------------------------------------------
async def test_carrier_limit_of_50_per_second(make_gateway: GatewayFactory, sim: Simulator) -> None:
    rate, burst_size = 50, 5  # burst: the default, a tenth
    gateway = await make_gateway(carrier={"max_tps": rate})
    acme, other = await bound(gateway), await bound(gateway, "other", "pw2")
    before = len(sim.submissions)
    runs = [asyncio.create_task(burst(acme, [text_sm(text=f"acme-{i:03d}") for i in range(60)])),
            asyncio.create_task(burst(other, [text_sm(src="14155550177", text=f"other-{i:03d}")
                                              for i in range(60)]))]
    answers = [a for run in await asyncio.gather(*runs) for a in run]
    assert [a.command_status for a in answers] == [0] * 120
    arrivals = sim.arrivals[before:]
    assert len(arrivals) == 120
    for i, start in enumerate(arrivals):  # every one-second interval that starts at an arrival
        assert sum(1 for t in arrivals[i:] if t <= start + 1.0) <= rate + burst_size
    texts = [s.message.short_message.decode() for s in sim.submissions[before:]]
    for name in ("acme", "other"):
        assert [t for t in texts if t.startswith(name)] == [f"{name}-{i:03d}" for i in range(60)]
    await acme.close()
    await other.close()


async def test_auto_reply_overtakes_a_queued_burst(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(carrier={"max_tps": 20, "burst": 1})
    app = await bound(gateway)
    before = len(mts_at_carrier(sim))
    run = asyncio.create_task(burst(app, [submit_sm(f"1415555{i:04d}") for i in range(40)]))
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) >= before + 2)  # the rest are queued
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    assert [a.command_status for a in await run] == [0] * 40
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) == before + 41)
    mts = mts_at_carrier(sim)[before:]
    reply = next(i for i, p in enumerate(mts) if b"unsubscribed" in p.raw)
    assert len(mts) - reply - 1 >= 20  # it went out ahead of most of the burst
    await app.close()


async def test_a_stop_while_requests_wait_for_the_carrier_rate_refuses_them(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    """Queued MT to a mobile is checked again when released: a STOP that landed meanwhile wins."""
    gateway = await make_gateway(carrier={"max_tps": SLOW, "burst": 1})
    app = await bound(gateway)
    before = len(mts_at_carrier(sim))
    run = asyncio.create_task(burst(app, [submit_sm(MOBILE) for _ in range(3)]))
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) == before + 1)  # the other two wait
    pacer = gateway.proxy.pacer
    assert pacer is not None and len(pacer.queue) == 2
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0  # durable before this answer
    now = asyncio.get_running_loop().time()
    pacer.bucket.set_rate(1000, 10, now)  # the carrier rate frees up only now
    pacer.drain(now)
    assert [a.command_status for a in await run] == [0, st.ESME_RINVDSTADR, st.ESME_RINVDSTADR]
    mts = mts_at_carrier(sim)[before:]
    assert len(mts) == 2 and b"unsubscribed" in mts[1].raw  # the first MT and the STOP reply only
    await app.close()


async def test_a_request_that_waited_too_long_gets_0x58_and_is_never_sent(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(carrier={"max_tps": 2, "burst": 1, "max_queue_delay": 0.2})
    app = await bound(gateway)
    before = len(mts_at_carrier(sim))
    answers = await burst(app, [submit_sm(f"1415555{i:04d}") for i in range(5)])
    assert [a.command_status for a in answers] == [0] + [st.ESME_RTHROTTLED] * 4  # next token: 0.5 s
    pacer = gateway.proxy.pacer
    assert pacer is not None and not pacer.queue
    await until(lambda: pacer.bucket.delay(asyncio.get_running_loop().time()) == 0)
    assert (await app.request(submit_sm("14155559999"))).command_status == 0
    dests = [F.submit_addresses(p.raw)[1].addr for p in mts_at_carrier(sim)[before:]]
    assert dests == [b"14155550000", b"14155559999"]  # the expired ones never went
    body = (await http_get(gateway.http_port, "/metrics"))[1]
    assert rejected(body)["queue_delay"] == 4
    await app.close()


# --- item 3: the carrier's own throttling ----------------------------------------------------
async def test_a_carrier_0x58_pauses_the_link(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(carrier={"throttle_pause": 60})
    app = await bound(gateway)
    sim.max_tps, sim.throttle_burst = SLOW, 1
    before = len(mts_at_carrier(sim))
    assert (await app.request(submit_sm("14155550124"))).command_status == 0
    assert (await app.request(submit_sm("14155550125"))).command_status == st.ESME_RTHROTTLED  # the carrier's
    assert len(mts_at_carrier(sim)) == before + 2
    sim.max_tps = None
    assert (await app.request(submit_sm("14155550126"))).command_status == st.ESME_RTHROTTLED  # paused: ours
    assert len(mts_at_carrier(sim)) == before + 2  # not sent
    body = (await http_get(gateway.http_port, "/metrics"))[1]
    assert metric(body, 'gateway_carrier_throttled_total{status="0x58"}') == 1
    await app.close()


async def test_after_the_pause_the_link_resumes_gradually(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(carrier={"throttle_pause": 0.2})
    app = await bound(gateway)
    sim.submit_status = st.ESME_RMSGQFUL
    assert (await app.request(submit_sm("14155550124"))).command_status == st.ESME_RMSGQFUL  # unchanged
    link = carrier_link(gateway)
    assert link.window == 0
    sim.submit_status = st.ESME_ROK
    await until(lambda: link.window == 1)
    sim.respond = False  # hold the answers: what the window lets through stays outstanding
    before = len(mts_at_carrier(sim))
    app.send(b"".join(seq(submit_sm(f"1415555{i:04d}"), 2000 + i) for i in range(3)))
    for n in (2001, 2002):  # a window of one: the first is at the carrier, these two are not
        answer = await app.read(lambda p, n=n: p.is_response and p.sequence_number == n)
        assert answer.command_status == st.ESME_RTHROTTLED
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) == before + 1)
    sim.respond = True
    link.window = link.full_window - 1
    assert (await app.request(submit_sm("14155550199"))).command_status == 0
    assert link.window == link.full_window  # each success widens it by one, up to the full window
    body = (await http_get(gateway.http_port, "/metrics"))[1]
    assert metric(body, 'gateway_carrier_throttled_total{status="0x14"}') == 1
    await app.close()


# --- cluster shares (issue 10 item 4 calls this) ----------------------------------------------
async def test_apply_share_scales_every_limit(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=[{**ACCOUNTS[0], "max_tps": 20, "window": 200}, ACCOUNTS[1]],
                                 carrier={"max_tps": 1000})
    gateway.proxy.apply_share(0.5)
    body = (await http_get(gateway.http_port, "/metrics"))[1]
    assert 'gateway_limit_rate{limit="account:acme"} 10.0' in body
    assert 'gateway_limit_rate{limit="carrier"} 500.0' in body
    app = await bound(gateway)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answers = await burst(app, [submit_sm(f"1415555{i:04d}") for i in range(40)])
    ok = sum(1 for a in answers if a.command_status == 0)
    assert 10 <= ok <= 10 + 10 * (loop.time() - started)  # half the rate, half the burst
    gateway.proxy.apply_share(1.0)
    body = (await http_get(gateway.http_port, "/metrics"))[1]
    assert 'gateway_limit_rate{limit="account:acme"} 20.0' in body
    await app.close()


# --- bad input -----------------------------------------------------------------------------------
POSITIVE, AT_LEAST_1, LONGER = "a positive number", "at least 1", "longer than response_timeout"


@pytest.mark.parametrize("toml, where, why", [
    ("[carrier]\nmax_tps = 0\n", "carrier.max_tps", POSITIVE),
    ("[carrier]\nmax_tps = -5\n", "carrier.max_tps", POSITIVE),
    ("[carrier]\nmax_tps = nan\n", "carrier.max_tps", POSITIVE),
    ("[carrier]\nmax_tps = 50\nburst = 0.5\n", "carrier.burst", AT_LEAST_1),
    ("[carrier]\nmax_queue_delay = 11\n", "carrier: max_queue_delay", LONGER),
    ("[carrier]\nresponse_timeout = 2\nmax_queue_delay = 3\n", "carrier: max_queue_delay", LONGER),
    ('[[accounts]]\nsystem_id = "a"\npassword = "b"\nmax_tps = 0\n', "accounts.0.max_tps", POSITIVE),
    ('[[accounts]]\nsystem_id = "a"\npassword = "b"\nmax_tps = nan\n', "accounts.0.max_tps", POSITIVE),
    ('[[accounts]]\nsystem_id = "a"\npassword = "b"\nmax_tps = 10\nburst = 0\n', "accounts.0.burst", AT_LEAST_1),
])
async def test_check_config_rejects_bad_limits(tmp_path: Path, toml: str, where: str, why: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(toml)
    code, _, err = await _gateway("check-config", "--config", str(path), env=_env())
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and where in lines[0] and why in lines[0], err


async def test_check_config_accepts_limits(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[carrier]\nmax_tps = 50\nresponse_timeout = 3\n'
                    '[[accounts]]\nsystem_id = "a"\npassword = "b"\nmax_tps = 20\n')
    code, out, err = await _gateway("check-config", "--config", str(path), env=_env())
    assert code == 0, err
    assert '"max_queue_delay": 3.0' in out  # the default never exceeds the response timeout
