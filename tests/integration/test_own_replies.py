"""The gateway's own auto-replies when the carrier's window is full: they wait, in order, and go
out before anything else as soon as the carrier answers (gateway/own_queue.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.own_queue import OwnQueue
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.rawsmsc import RawSmsc, deliver_sm, submit_sm_resp
from tests.integration.test_http import http_get


@pytest.fixture
async def smsc() -> AsyncIterator[RawSmsc]:
    server = RawSmsc()
    await server.start()
    yield server
    await server.stop()


def _text(pdu: P.Pdu) -> bytes:
    return F.parse_short_message(pdu.raw).payload


async def test_replies_wait_for_window_room_and_go_first(make_gateway: GatewayFactory, smsc: RawSmsc) -> None:
    gateway = await make_gateway(carrier={"port": smsc.port, "window": 1})
    await smsc.bound()
    app = await RawClient.connect(gateway.smpp_port)
    app.auto_ack = True
    assert (await app.bind("acme", "secret")).command_status == 0
    app.send(submit_sm(dst="14155550999", seq=7))
    held = await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)  # unanswered: the window is full
    smsc.write(deliver_sm(11, b"14155550123", b"14155550100", b"HELP")
               + deliver_sm(12, b"14155550124", b"14155550100", b"STOP"))
    for seq in (11, 12):
        resp = await smsc.read(lambda p, s=seq: p.command_id == P.DELIVER_SM_RESP and p.sequence_number == s)
        assert resp.command_status == 0
    assert (await app.request(submit_sm(dst="14155550998", seq=8))).command_status == st.ESME_RTHROTTLED
    assert not [p for p in smsc.queue if p.command_id == P.SUBMIT_SM]  # nothing sent beyond the window
    smsc.write(submit_sm_resp(held.sequence_number, b"m-1"))
    first = await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)
    assert F.submit_addresses(first.raw)[1].text == "14155550123" and b"unsubscribe" in _text(first)  # the HELP reply
    smsc.write(submit_sm_resp(first.sequence_number, b"own-1"))
    second = await smsc.read(lambda p: p.command_id == P.SUBMIT_SM)
    assert F.submit_addresses(second.raw)[1].text == "14155550124"
    smsc.write(submit_sm_resp(second.sequence_number, b"own-2"))
    assert (await app.read(lambda p: p.sequence_number == 7)).command_status == 0
    await app.wait(lambda: len(app.delivered) == 2)  # both MOs forwarded too
    body = (await http_get(gateway.http_port, "/metrics"))[1]
    sent = [line for line in body.splitlines() if line.startswith("gateway_autoreplies_total{")]
    assert any('op="help",result="sent"' in line and line.endswith(" 1.0") for line in sent), sent
    assert any('op="stop",result="sent"' in line and line.endswith(" 1.0") for line in sent), sent
    assert not any("no_carrier" in line for line in sent), sent
    await app.close()


def test_own_queue_is_bounded_fifo_with_a_deadline() -> None:
    answers: list[object] = []
    pdu = P.Pdu(P.SUBMIT_SM, 0, 1, P.encode(P.SUBMIT_SM, 0, 1, b""))
    queue: OwnQueue[str] = OwnQueue(timeout=10.0, max_waiting=2)
    assert queue.put(pdu, 0.0, answers.append) and queue.put(pdu, 5.0, lambda r: answers.append("second"))
    assert not queue.put(pdu, 5.0, answers.append)  # full
    sent: list[str] = []
    queue.drain(lambda: st.ESME_RTHROTTLED, lambda link, req: sent.append(link), 1.0)
    assert len(queue) == 2 and not sent and not answers  # no room: they wait
    queue.drain(lambda: "carrier", lambda link, req: sent.append(link), 12.0)
    assert answers == [None] and sent == ["carrier"] and not queue  # the first expired, the second went
