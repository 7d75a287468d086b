"""MT enforcement over sockets: destination formats, tenant sources, refusal accounting, receipts."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient
from tests.integration.conftest import ACCOUNTS, GatewayFactory

MOBILE = "14155550123"
LONG_CODE = "14155550100"  # acme's
MT_COMMANDS = (P.SUBMIT_SM, P.DATA_SM, P.SUBMIT_MULTI)

# after a STOP from +14155550123, every one of these is that mobile as a carrier reads it
FORMS = [
    ("0014155550123", 1), ("0014155550123", 0), ("01114155550123", 1), ("01114155550123", 0),
    ("+1 415 555 0123", 1), ("+1 415 555 0123", 0), ("+14155550123", 1),
    ("1-415-555-0123", 1), ("1-415-555-0123", 0), ("1-415-555-0123", 2),
    ("(415) 555-0123", 1), ("(415) 555-0123", 0), ("(415) 555-0123", 2),
    ("14155550123", 0), ("14155550123", 5), ("4155550123", 2), ("1.415.555.0123", 5),
]
# number-like, but no carrier reading we can be sure of: refused, never forwarded unchecked
UNREADABLE = [("+1 415 555 0123 ext 9", 1), ("00014155550123", 1), ("1415555012345678", 1),
              ("tel:+14155550123", 0), ("\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663", 0)]


def _addr(ton: int, addr: str) -> bytes:
    return bytes([ton, 1]) + addr.encode() + b"\x00"


def submit_sm(dst: str, dst_ton: int = 1, src: str = LONG_CODE, src_ton: int = 1, registered: int = 0) -> bytes:
    body = (b"\x00" + _addr(src_ton, src) + _addr(dst_ton, dst) + b"\x00\x00\x00" + b"\x00\x00"
            + bytes([registered]) + b"\x00\x00\x00" + b"\x02hi")
    return P.encode(P.SUBMIT_SM, 0, 1, body)


def data_sm(dst: str, dst_ton: int = 1, src: str = LONG_CODE, src_ton: int = 1) -> bytes:
    body = (b"\x00" + _addr(src_ton, src) + _addr(dst_ton, dst) + b"\x00\x00\x00"
            + struct.pack("!HH", P.TAG_MESSAGE_PAYLOAD, 2) + b"hi")
    return P.encode(P.DATA_SM, 0, 1, body)


def submit_multi(dests: list[tuple[str, int]], src: str = LONG_CODE, src_ton: int = 1) -> bytes:
    body = (b"\x00" + _addr(src_ton, src) + bytes([len(dests)])
            + b"".join(b"\x01" + _addr(ton, addr) for addr, ton in dests)
            + b"\x00\x00\x00" + b"\x00\x00" + b"\x00\x00\x00\x00" + b"\x02hi")
    return P.encode(P.SUBMIT_MULTI, 0, 1, body)


def mts_at_carrier(sim: Simulator) -> list[P.Pdu]:
    return [p for p in sim.received if p.command_id in MT_COMMANDS]


async def bound(gateway: Gateway, system_id: str = "acme", password: str = "secret") -> RawClient:
    client = await RawClient.connect(gateway.smpp_port)
    client.auto_ack = True
    assert (await client.bind(system_id, password)).command_status == 0
    return client


async def stopped(gateway: Gateway, sim: Simulator) -> RawClient:
    app = await bound(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await app.wait(lambda: len(app.delivered) == 1)
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) == 1)  # the STOP reply
    return app


def rejected(body: str) -> dict[str, float]:
    out = {}
    for line in body.splitlines():
        if line.startswith("gateway_mt_rejected_total{"):
            name, value = line.rsplit(" ", 1)
            out[name.split('reason="')[1].split('"')[0]] = float(value)
    return out


# --- item 1: destination formats ----------------------------------------------------------
@pytest.mark.parametrize("build", [submit_sm, data_sm], ids=["submit_sm", "data_sm"])
async def test_every_destination_form_is_refused_after_stop(gateway: Gateway, sim: Simulator, build: object) -> None:
    app = await stopped(gateway, sim)
    before = len(mts_at_carrier(sim))
    for addr, ton in FORMS:
        resp = await app.request(build(addr, ton))  # type: ignore[operator]
        assert resp.command_status == st.ESME_RINVDSTADR, (addr, ton)
    for addr, ton in UNREADABLE:
        resp = await app.request(build(addr, ton))  # type: ignore[operator]
        assert resp.command_status == st.ESME_RINVDSTADR, (addr, ton)
    assert len(mts_at_carrier(sim)) == before  # none reached the carrier
    assert (await app.request(build("1 415 555 0124", 1))).command_status == 0  # others still go
    from tests.integration.test_http import http_get
    counts = rejected((await http_get(gateway.http_port, "/metrics"))[1])
    assert counts["blocked"] == len(FORMS) and counts["invalid_destination"] == len(UNREADABLE)
    await app.close()


async def test_submit_multi_refuses_every_form(gateway: Gateway, sim: Simulator) -> None:
    app = await stopped(gateway, sim)
    unreadable = [(a, t) for a, t in UNREADABLE if len(a.encode()) <= 20]  # submit_multi: 21 with the NUL
    resp = await app.request(submit_multi([*FORMS, *unreadable, ("14155550124", 1)]))
    assert resp.command_status == 0
    _, unsuccess = F.parse_submit_multi_resp(resp.raw)
    assert len(unsuccess) == len(FORMS) + len(unreadable)
    assert {s for _, s in unsuccess} == {st.ESME_RINVDSTADR}
    forwarded = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_MULTI)
    dests, _, _ = F.submit_multi_dests(forwarded.raw)
    assert [d.address.text for d in dests if d.address] == ["14155550124"]
    await app.close()


async def test_submit_multi_all_refused_is_a_final_status(gateway: Gateway, sim: Simulator) -> None:
    app = await stopped(gateway, sim)
    before = len(mts_at_carrier(sim))
    resp = await app.request(submit_multi(FORMS[:3]))
    assert resp.command_status == st.ESME_RINVDSTADR  # nothing was submitted: no ESME_ROK
    message_id, unsuccess = F.parse_submit_multi_resp(resp.raw)
    assert message_id == b"" and [s for _, s in unsuccess] == [st.ESME_RINVDSTADR] * 3
    assert len(mts_at_carrier(sim)) == before
    await app.close()


async def test_mo_keys_the_mobile_as_mt_does(gateway: Gateway, sim: Simulator) -> None:
    app = await bound(gateway)
    assert await sim.inject_mo("+1 415 555 0123", LONG_CODE, "STOP", source_ton=0) == 0  # as a carrier might
    await app.wait(lambda: len(app.delivered) == 1)
    assert (await app.request(submit_sm(MOBILE))).command_status == st.ESME_RINVDSTADR
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"unsubscribed" in p.raw)  # and it was told
    await app.close()


# --- item 6: tenants send only from what they own --------------------------------------------
TENANTS = [
    {"system_id": "acme", "password": "secret", "numbers": ["+14155550100", "12345"], "senders": ["ACME"]},
    {"system_id": "beta", "password": "pw3", "numbers": ["+14155550200"]},
    {"system_id": "other", "password": "pw2"},
]


@pytest.mark.parametrize("system_id, password, src, src_ton, status", [
    ("acme", "secret", LONG_CODE, 1, 0),
    ("acme", "secret", "4155550100", 2, 0),  # the same number, national
    ("acme", "secret", "+1 (415) 555-0100", 0, 0),
    ("acme", "secret", "ACME", 5, 0),
    ("acme", "secret", "acme", 5, 0),  # names compare case-insensitively
    ("acme", "secret", "12-345", 3, 0),  # its short code
    ("acme", "secret", "14155550200", 1, st.ESME_RINVSRCADR),  # beta's number
    ("acme", "secret", "14155550177", 1, st.ESME_RINVSRCADR),  # nobody's, but acme has numbers
    ("acme", "secret", "BETA", 5, st.ESME_RINVSRCADR),  # a name acme does not list
    ("beta", "pw3", "14155550200", 1, 0),
    ("beta", "pw3", LONG_CODE, 1, st.ESME_RINVSRCADR),
    ("beta", "pw3", "+1 415 555 0100", 1, st.ESME_RINVSRCADR),  # acme's, however written
    ("beta", "pw3", "ACME", 5, st.ESME_RINVSRCADR),
    ("other", "pw2", "14155550177", 1, 0),  # no numbers: anything nobody owns
    ("other", "pw2", "Promo", 5, 0),
    ("other", "pw2", LONG_CODE, 1, st.ESME_RINVSRCADR),
    ("other", "pw2", "0014155550200", 1, st.ESME_RINVSRCADR),
    ("other", "pw2", "Acme", 5, st.ESME_RINVSRCADR),  # acme's listed sender
    ("other", "pw2", "12 345", 3, st.ESME_RINVSRCADR),  # acme's short code
    ("other", "pw2", "1+4155550100", 1, st.ESME_RINVSRCADR),  # number-like, unreadable
])
async def test_tenant_sources(make_gateway: GatewayFactory, sim: Simulator, system_id: str, password: str,
                              src: str, src_ton: int, status: int) -> None:
    gateway = await make_gateway(accounts=TENANTS)
    app = await bound(gateway, system_id, password)
    before = len(mts_at_carrier(sim))
    for raw in (submit_sm("14155550124", 1, src, src_ton), data_sm("14155550124", 1, src, src_ton),
                submit_multi([("14155550124", 1)], src, src_ton)):
        assert (await app.request(raw)).command_status == status, P.command_name(P.HEADER.unpack_from(raw)[1])
    assert len(mts_at_carrier(sim)) == before + (3 if status == 0 else 0)
    await app.close()


# --- item 7: refusals count against the window, are cheap and quiet -------------------------
async def test_refusals_occupy_the_window(make_gateway: GatewayFactory, sim: Simulator) -> None:
    accounts = [{**ACCOUNTS[0], "window": 5}, ACCOUNTS[1]]
    gateway = await make_gateway(accounts=accounts)
    app = await stopped(gateway, sim)
    conn = next(c for c in gateway.esme.connections if c.system_id == "acme")
    burst = b"".join(submit_sm(MOBILE)[:12] + struct.pack("!I", 1000 + i) + submit_sm(MOBILE)[16:]
                     for i in range(20))
    conn.data_received(burst)  # one read holding 20 requests: exactly what the socket would hand us
    answers = [await app.read(lambda p, i=i: p.sequence_number == 1000 + i) for i in range(20)]
    statuses = [a.command_status for a in answers]
    assert statuses.count(st.ESME_RINVDSTADR) == 5  # the window's worth
    assert statuses.count(st.ESME_RTHROTTLED) == 15
    assert (await app.request(submit_sm(MOBILE))).command_status == st.ESME_RINVDSTADR  # slots freed
    assert conn.outstanding == 0
    await app.close()


async def test_submit_multi_255_destinations_and_bounded_logs(gateway: Gateway, sim: Simulator,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    app = await stopped(gateway, sim)
    caplog.set_level(logging.INFO)
    caplog.clear()
    for _ in range(20):
        resp = await app.request(submit_multi([(MOBILE, 1)] * 255))
        assert resp.command_status == st.ESME_RINVDSTADR
        assert len(F.parse_submit_multi_resp(resp.raw)[1]) == 255
    for _ in range(100):
        assert (await app.request(submit_sm(MOBILE))).command_status == st.ESME_RINVDSTADR
    refusal_lines = [r for r in caplog.records if r.levelno >= logging.INFO and r.getMessage() == "mt_refused"]
    assert refusal_lines == []  # 5,200 refusals: no INFO line each; the summary comes per interval
    assert gateway.optout is not None
    gateway.optout.mt.flush_log()
    summary = [r for r in caplog.records if r.getMessage() == "mt_refused"]
    assert len(summary) == 1 and summary[0].__dict__["blocked"] == 20 * 255 + 100
    await app.close()


async def test_refusal_details_at_debug(gateway: Gateway, sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    app = await stopped(gateway, sim)
    caplog.set_level(logging.DEBUG, logger="gateway.enforcement")
    assert (await app.request(submit_sm(MOBILE))).command_status == st.ESME_RINVDSTADR
    details = [r for r in caplog.records if r.levelno == logging.DEBUG and r.getMessage() == "mt_refused"]
    assert len(details) == 1 and details[0].__dict__["reason"] == "blocked"
    await app.close()


# --- item 8: block_mode "receipt" is bounded ----------------------------------------------
async def test_rejected_receipts_are_capped_per_account(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(optout={"block_mode": "receipt", "rejected_receipt_queue_max": 3})
    receiver = await bound(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await receiver.wait(lambda: len(receiver.delivered) == 1)
    await receiver.close()
    sender = await RawClient.connect(gateway.smpp_port)  # transmitter only: no receiver bound
    assert (await sender.bind("acme", "secret", P.BIND_TRANSMITTER)).command_status == 0
    for _ in range(10):
        assert (await sender.request(submit_sm(MOBILE, registered=1))).command_status == 0
    assert gateway.store is not None and gateway.outbox is not None
    if gateway.outbox.tasks:  # the puts of the queued receipts
        await asyncio.wait(list(gateway.outbox.tasks), timeout=5)
    assert (await gateway.store.outbox_counts()).get("acme") == 3  # the cap, not ten rows
    receiver = await bound(gateway)
    await receiver.wait(lambda: sum(b"stat:REJECTD" in p.raw for p in receiver.delivered) == 3)
    assert (await sender.request(submit_sm(MOBILE, registered=1))).command_status == 0  # bound: delivered
    await receiver.wait(lambda: sum(b"stat:REJECTD" in p.raw for p in receiver.delivered) == 4)
    await sender.close()
    await receiver.close()


async def test_rejected_receipt_follows_its_answer(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(optout={"block_mode": "receipt"})
    app = await stopped(gateway, sim)
    app.auto_ack = False  # keep everything in arrival order
    app.send(submit_sm(MOBILE, registered=1))
    await app.wait(lambda: len(app.queue) >= 2)
    first, second = app.queue[:2]
    assert (first.command_id, first.command_status) == (P.SUBMIT_SM_RESP, 0)
    assert second.command_id == P.DELIVER_SM and b"id:" + F.response_message_id(first.raw) in second.raw
    await app.close()


async def test_short_code_block_holds_for_any_spelling(gateway: Gateway, sim: Simulator) -> None:
    app = await bound(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, "12345", "STOP", dest_ton=3, dest_npi=0) == 0
    await app.wait(lambda: len(app.delivered) == 1)
    for src in ("12345", "12-345", "12 345"):
        assert (await app.request(submit_sm(MOBILE, 1, src, 3))).command_status == st.ESME_RINVDSTADR, src
    await app.close()


# --- distribution lists (dest_flag 2) ----------------------------------------------------------
def submit_multi_with_list(dl_name: bytes, sme: str | None = "14155550124") -> bytes:
    dests = [b"\x02" + dl_name + b"\x00"] + ([b"\x01" + _addr(1, sme)] if sme else [])
    body = (b"\x00" + _addr(1, LONG_CODE) + bytes([len(dests)]) + b"".join(dests)
            + b"\x00\x00\x00" + b"\x00\x00" + b"\x00\x00\x00\x00" + b"\x02hi")
    return P.encode(P.SUBMIT_MULTI, 0, 1, body)


async def test_distribution_lists_are_refused_by_default(gateway: Gateway, sim: Simulator) -> None:
    app = await bound(gateway)
    resp = await app.request(submit_multi_with_list(b"customers"))
    assert resp.command_status == 0
    _, unsuccess = F.parse_submit_multi_resp(resp.raw)
    assert [(a.addr, s) for a, s in unsuccess] == [(b"customers", 0x40)]  # ESME_RINVDESTFLAG
    forwarded = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_MULTI)
    dests, _, _ = F.submit_multi_dests(forwarded.raw)
    assert [(d.flag, d.address.text if d.address else None) for d in dests] == [(1, "14155550124")]
    before = len(mts_at_carrier(sim))
    only = await app.request(submit_multi_with_list(b"customers", None))
    assert only.command_status == 0x40 and len(mts_at_carrier(sim)) == before
    from tests.integration.test_http import http_get
    assert rejected((await http_get(gateway.http_port, "/metrics"))[1])["distribution_list"] == 2
    await app.close()


async def test_distribution_lists_forwarded_when_configured(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(optout={"distribution_lists": "forward"})
    app = await bound(gateway)
    raw = submit_multi_with_list(b"customers")
    assert (await app.request(raw)).command_status == 0
    forwarded = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_MULTI)
    assert forwarded.raw[16:] == raw[16:]  # untouched
    await app.close()
