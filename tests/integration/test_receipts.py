"""Receipt routing against a scriptable SMSC: receipts that overtake their submit_sm_resp,
message_id formats, and cancel_sm / query_sm / replace_sm only for the sender's own messages.

Accounts (conftest): acme owns +14155550100, other has no numbers. Messages here are sent by
other from a number nobody owns, and the SMSC's receipts name acme's number as their
destination, so a receipt that lost its route would go to acme: a bystander bound as acme sees
any misrouted receipt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.rawsmsc import RawSmsc, deliver_sm, receipt, submit_sm_resp

UNOWNED = "14155550199"  # other may send from it (tenant rules); a lost receipt would go to acme


@pytest.fixture
async def smsc() -> AsyncIterator[RawSmsc]:
    server = RawSmsc()
    await server.start()
    yield server
    await server.stop()


async def _gateway(make_gateway: GatewayFactory, smsc: RawSmsc, **overrides: Any) -> Gateway:
    carrier = {"port": smsc.port, **overrides.pop("carrier", {})}
    gateway = await make_gateway(carrier=carrier, **overrides)
    await smsc.bound()
    return gateway


async def _clients(gateway: Gateway) -> tuple[RawClient, RawClient]:
    sender = await RawClient.connect(gateway.smpp_port)
    assert (await sender.bind("other", "pw2")).command_status == 0
    bystander = await RawClient.connect(gateway.smpp_port)
    assert (await bystander.bind("acme", "secret", P.BIND_RECEIVER)).command_status == 0
    bystander.auto_ack = True
    return sender, bystander


def _is_receipt(pdu: P.Pdu) -> bool:
    return pdu.command_id == P.DELIVER_SM and F.parse_short_message(pdu.raw).is_receipt


async def _submit_and_answer(sender: RawClient, smsc: RawSmsc, resp_id: bytes, receipt_raw: bytes,
                             receipt_first: bool = False) -> None:
    """The sender submits; the SMSC answers with resp_id and sends receipt_raw (one write)."""
    sender.send(submit_sm(src=UNOWNED, registered_delivery=1, seq=7))
    got = await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)
    resp = submit_sm_resp(got.sequence_number, resp_id)
    smsc.write(receipt_raw + resp if receipt_first else resp + receipt_raw)
    answer = await sender.read(lambda p: p.command_id == P.SUBMIT_SM_RESP)
    assert answer.command_status == 0 and F.response_message_id(answer.raw) == resp_id


async def _receipt_reaches_sender(sender: RawClient, bystander: RawClient, smsc: RawSmsc, seq: int) -> None:
    delivered = await sender.read(lambda p: p.command_id == P.DELIVER_SM)
    sender.respond(delivered)
    carrier_resp = await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == seq)
    assert carrier_resp.command_status == 0
    assert not [p for p in bystander.delivered if _is_receipt(p)]


# --- item 4: a receipt before its submit_sm_resp ----------------------------------------------
async def test_receipt_before_resp_in_one_write_goes_to_submitter(make_gateway: GatewayFactory,
                                                                  smsc: RawSmsc) -> None:
    gateway = await _gateway(make_gateway, smsc, routing={"receipt_hold": 30.0})
    sender, bystander = await _clients(gateway)
    await _submit_and_answer(sender, smsc, b"m-1", receipt(900, b"m-1"), receipt_first=True)
    await _receipt_reaches_sender(sender, bystander, smsc, 900)
    await sender.close()
    await bystander.close()


async def test_help_reply_receipt_before_resp_goes_to_nobody(make_gateway: GatewayFactory, smsc: RawSmsc) -> None:
    gateway = await _gateway(make_gateway, smsc, routing={"receipt_hold": 30.0})
    app = await RawClient.connect(gateway.smpp_port)
    assert (await app.bind("acme", "secret", P.BIND_RECEIVER)).command_status == 0
    app.auto_ack = True
    smsc.write(deliver_sm(800, b"14155550123", b"14155550100", b"HELP"))
    reply = await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)
    smsc.write(receipt(801, b"own-1") + submit_sm_resp(reply.sequence_number, b"own-1"))
    answer = await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == 801)
    assert answer.command_status == 0
    mo = await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == 800)
    assert mo.command_status == 0
    assert [p for p in app.delivered if not _is_receipt(p)]  # the HELP itself reached acme
    assert not [p for p in app.delivered if _is_receipt(p)]  # its reply's receipt did not
    await app.close()


async def test_receipt_on_another_bind_before_resp_goes_to_submitter(make_gateway: GatewayFactory,
                                                                     smsc: RawSmsc) -> None:
    gateway = await _gateway(make_gateway, smsc, carrier={"sessions": 2}, routing={"receipt_hold": 30.0})
    await smsc.bound(2)
    await asyncio.wait_for(_until(lambda: len(gateway.proxy.carriers) == 2), 5)
    sender, bystander = await _clients(gateway)
    sender.send(submit_sm(src=UNOWNED, registered_delivery=1, seq=7))
    got = await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)
    other = 1 - smsc.session_of(got)
    smsc.write(receipt(903, b"m-3"), session=other)
    receipts = getattr(gateway.proxy, "receipts", None)  # the receipt is in: held, or (before the fix) misrouted
    await asyncio.wait_for(_until(lambda: bool(receipts and receipts.parked)
                                  or any(_is_receipt(p) for p in bystander.delivered)), 5)
    smsc.write(submit_sm_resp(got.sequence_number, b"m-3"), session=1 - other)
    answer = await sender.read(lambda p: p.command_id == P.SUBMIT_SM_RESP)
    assert F.response_message_id(answer.raw) == b"m-3"
    await _receipt_reaches_sender(sender, bystander, smsc, 903)
    await sender.close()
    await bystander.close()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


async def test_held_receipt_released_when_older_requests_are_answered(make_gateway: GatewayFactory,
                                                                      smsc: RawSmsc) -> None:
    """An id no pending submit turns out to have: released once the submit is answered, not
    after the (here very long) hold, and routed as an unknown receipt (the number's owner)."""
    gateway = await _gateway(make_gateway, smsc, routing={"receipt_hold": 30.0})
    sender, bystander = await _clients(gateway)
    await _submit_and_answer(sender, smsc, b"m-2", receipt(901, b"someone-else"), receipt_first=True)
    answer = await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == 901)
    assert answer.command_status == 0
    assert [p for p in bystander.delivered if _is_receipt(p)]
    assert not sender.queue
    await sender.close()
    await bystander.close()


async def test_held_receipt_released_by_an_answer_that_wants_no_receipt(make_gateway: GatewayFactory,
                                                                        smsc: RawSmsc) -> None:
    """The same release when the older request asked for no receipt: its answer takes the fused hot
    path (gateway/hotpath.py), which must still let the held receipt go."""
    gateway = await _gateway(make_gateway, smsc, routing={"receipt_hold": 30.0})
    sender, bystander = await _clients(gateway)
    for seq in (5, 6):  # the first judges the sender (then cached): the second is the hot path's
        sender.send(submit_sm(src=UNOWNED, seq=seq))
        got = await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)
        if seq == 6:
            smsc.write(receipt(902, b"someone-else"))  # no route: held until the submit is answered
            await asyncio.sleep(0.2)
            assert not [p for p in bystander.delivered if _is_receipt(p)]
        smsc.write(submit_sm_resp(got.sequence_number, b"m-%d" % seq))
        assert (await sender.read(lambda p, s=seq: p.sequence_number == s)).command_status == 0
    answer = await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == 902)
    assert answer.command_status == 0
    await bystander.wait(lambda: any(_is_receipt(p) for p in bystander.delivered))
    assert gateway.metrics.registry.get_sample_value("gateway_receipts_held_total", {"outcome": "answered"}) == 1
    await sender.close()
    await bystander.close()


async def test_hold_is_bounded_when_the_carrier_never_answers(make_gateway: GatewayFactory, smsc: RawSmsc) -> None:
    gateway = await _gateway(make_gateway, smsc, routing={"receipt_hold": 0.2})
    sender, bystander = await _clients(gateway)
    sender.send(submit_sm(src=UNOWNED, registered_delivery=1, seq=7))
    await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)
    smsc.write(receipt(902, b"unknown"))  # the submit stays unanswered
    answer = await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == 902)
    assert answer.command_status == 0
    assert [p for p in bystander.delivered if _is_receipt(p)]
    await sender.close()
    await bystander.close()


# --- item 5: carrier.message_id_format ------------------------------------------------------
@pytest.mark.parametrize("fmt, resp_id, text_id, tlv_id", [
    ("exact", b"Ab12", b"Ab12", None),
    ("hex", b"1001", b"0000004097", None),  # hex resp, decimal receipt text (Appendix B)
    ("hex", b"00ff1A", b"ff1a", None),  # letters: the text id is hex too; case, zeros
    ("hex", b"1001", b"0000004097", b"00001001"),  # TLV in the resp's format
    ("decimal", b"4097", b"0000004097", None),
    ("decimal", b"0042", b"42", b"000042"),
])
async def test_message_id_formats(make_gateway: GatewayFactory, smsc: RawSmsc, fmt: str, resp_id: bytes,
                                  text_id: bytes, tlv_id: bytes | None) -> None:
    gateway = await _gateway(make_gateway, smsc, carrier={"message_id_format": fmt})
    sender, bystander = await _clients(gateway)
    await _submit_and_answer(sender, smsc, resp_id, receipt(910, text_id, tlv_id=tlv_id))
    await _receipt_reaches_sender(sender, bystander, smsc, 910)
    await sender.close()
    await bystander.close()


async def test_exact_format_does_not_fold_case(make_gateway: GatewayFactory, smsc: RawSmsc) -> None:
    gateway = await _gateway(make_gateway, smsc)
    sender, bystander = await _clients(gateway)
    await _submit_and_answer(sender, smsc, b"Ab12", receipt(911, b"ab12"))
    await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == 911)
    assert [p for p in bystander.delivered if _is_receipt(p)]  # another message: not the sender's
    assert not sender.queue
    await sender.close()
    await bystander.close()


@pytest.mark.parametrize("fmt, rid", [("hex", b"f" * 5000), ("decimal", b"9" * 5000), ("exact", b"f" * 66)])
async def test_oversized_receipt_id_is_an_unknown_id(make_gateway: GatewayFactory, smsc: RawSmsc, fmt: str,
                                                     rid: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """Longer than SMPP's 65 octets: no id a carrier assigned, routed like a receipt without one
    (the number's owner), answered 0, no traceback."""
    gateway = await _gateway(make_gateway, smsc, carrier={"message_id_format": fmt})
    sender, bystander = await _clients(gateway)
    smsc.write(receipt(920, b"1", tlv_id=rid))
    answer = await smsc.read(lambda p: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == 920)
    assert answer.command_status == 0
    assert [p for p in bystander.delivered if _is_receipt(p)]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    await sender.close()
    await bystander.close()


# --- item 6: cancel_sm, query_sm, replace_sm --------------------------------------------------
def _control(command_id: int, message_id: bytes) -> bytes:
    source = b"\x01\x01" + b"14155550100\x00"
    if command_id == P.CANCEL_SM:
        body = b"\x00" + message_id + b"\x00" + source + b"\x01\x01" + b"14155550123\x00"
    elif command_id == P.QUERY_SM:
        body = message_id + b"\x00" + source
    else:
        body = message_id + b"\x00" + source + b"\x00\x00" + b"\x00\x00" + b"\x03new"
    return P.encode(command_id, 0, 1, body)


async def _check_control(gateway: Gateway, smsc: RawSmsc, message_id: bytes) -> None:
    owner = await RawClient.connect(gateway.smpp_port)
    assert (await owner.bind("other", "pw2")).command_status == 0
    intruder = await RawClient.connect(gateway.smpp_port)
    assert (await intruder.bind("acme", "secret")).command_status == 0
    for command_id in (P.CANCEL_SM, P.QUERY_SM, P.REPLACE_SM):
        refused = await intruder.request(_control(command_id, message_id))
        assert refused.command_id == command_id | P.RESPONSE_BIT
        assert refused.command_status == st.ESME_RINVMSGID
        unknown = await owner.request(_control(command_id, b"not-sent"))
        assert unknown.command_status == st.ESME_RINVMSGID
        raw = _control(command_id, message_id)
        owner.send(raw[:12] + b"\x00\x00\x00\x33" + raw[16:])
        got = await smsc.read(lambda p: p.command_id in (P.CANCEL_SM, P.QUERY_SM, P.REPLACE_SM))
        assert got.command_id == command_id and got.raw[16:] == raw[16:]  # the owner's, byte-identical
        smsc.write(P.response_for(got, 0, b"\x00" if command_id != P.QUERY_SM else b""))
        answer = await owner.read(lambda p: p.sequence_number == 0x33)
        assert answer.command_id == command_id | P.RESPONSE_BIT
    assert not [p for p in smsc.queue if p.command_id in (P.CANCEL_SM, P.QUERY_SM, P.REPLACE_SM)]
    await owner.close()
    await intruder.close()


async def test_control_pdus_only_for_own_messages(make_gateway: GatewayFactory, smsc: RawSmsc) -> None:
    gateway = await _gateway(make_gateway, smsc)
    sender, bystander = await _clients(gateway)
    await _submit_and_answer(sender, smsc, b"a-1", b"")
    await sender.close()
    await bystander.close()
    await _check_control(gateway, smsc, b"a-1")


async def test_control_pdus_use_the_stored_route_after_a_restart(make_gateway: GatewayFactory,
                                                                  smsc: RawSmsc) -> None:
    first = await _gateway(make_gateway, smsc)
    sender, bystander = await _clients(first)
    await _submit_and_answer(sender, smsc, b"a-2", b"")
    await sender.close()
    await bystander.close()
    await first.stop()  # the final flush persists the route
    second = await _gateway(make_gateway, smsc)
    await smsc.bound(2)
    smsc.writers.pop(0)
    assert len(second.proxy.routes) == 0
    await _check_control(second, smsc, b"a-2")
