"""The carrier simulator over real sockets: smpplib (a client we did not write) and raw bytes."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import smpplib.client
import smpplib.consts

from gateway.simulator import NoReceiverError, ResponseTimeoutError, Simulator
from gateway.simulator.codec import DC_UCS2, decode_text
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st


@pytest.fixture
async def smsc() -> AsyncIterator[Simulator]:
    async with Simulator(host="127.0.0.1", smpp_port=0, http_port=0) as simulator:
        yield simulator


# --- helpers ----------------------------------------------------------------------


class Raw:
    """A bare SMPP socket: send bytes, read framed PDUs, None at EOF."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = P.Framer()
        self.queue: list[P.Pdu] = []

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def read(self, timeout: float = 5.0) -> P.Pdu | None:
        async with asyncio.timeout(timeout):
            while not self.queue:
                data = await self.reader.read(65536)
                if not data:
                    return None
                self.queue.extend(self.framer.feed(data))
        return self.queue.pop(0)

    async def request(self, raw: bytes) -> P.Pdu:
        self.send(raw)
        pdu = await self.read()
        assert pdu is not None
        return pdu

    async def bind(self, command_id: int = P.BIND_TRANSCEIVER, system_id: str = "esme") -> P.Pdu:
        return await self.request(bind_pdu(command_id, system_id, "pw"))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def bind_pdu(command_id: int, system_id: str, password: str, seq: int = 1) -> bytes:
    body = P.cstring(system_id) + P.cstring(password) + P.cstring("") + b"\x34\x00\x00\x00"
    return P.encode(command_id, 0, seq, body)


def submit_sm(seq: int, text: bytes = b"hello", registered_delivery: int = 0) -> bytes:
    body = (
        b"\x00" + b"\x01\x01" + P.cstring("15550001111") + b"\x01\x01" + P.cstring("15551230000")
        + b"\x00\x00\x00" + b"\x00\x00" + bytes((registered_delivery, 0, 0, 0, len(text))) + text
    )
    return P.encode(P.SUBMIT_SM, 0, seq, body)


async def http(port: int, request: bytes) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body) if body else None


def post(path: str, payload: Any, raw_body: bytes | None = None) -> bytes:
    body = json.dumps(payload).encode() if raw_body is None else raw_body
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Esme:
    """smpplib in a worker thread; every PDU it sees is kept, MO statuses come from `mo_status`."""

    def __init__(self, port: int) -> None:
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        self.sent: list[Any] = []
        self.received: list[Any] = []
        self.mo_status = 0
        self.client.set_message_sent_handler(lambda pdu: self.sent.append(pdu))
        self.client.set_message_received_handler(self._on_deliver)

    def _on_deliver(self, pdu: Any) -> int:
        self.received.append(pdu)
        return self.mo_status

    async def bind(self, mode: str = "transceiver") -> None:
        await asyncio.to_thread(self.client.connect)
        await asyncio.to_thread(getattr(self.client, f"bind_{mode}"), system_id="esme", password="pw")

    async def read_once(self) -> None:
        await asyncio.to_thread(self.client.read_once, auto_send_enquire_link=False)

    async def close(self) -> None:
        def finish() -> None:
            try:
                self.client.unbind()
            finally:
                self.client.disconnect()

        await asyncio.to_thread(finish)


# --- SMPP -------------------------------------------------------------------------


async def test_smpplib_submit_gets_id_and_receipt(smsc: Simulator) -> None:
    esme = Esme(smsc.smpp_port)
    await esme.bind()
    try:
        await asyncio.to_thread(
            esme.client.send_message,
            source_addr_ton=1, source_addr="15550001111", dest_addr_ton=1,
            destination_addr="15551230000", short_message=b"Hello from smpplib, a long text",
            registered_delivery=1,
        )
        await esme.read_once()  # submit_sm_resp
        message_id = esme.sent[0].message_id
        assert esme.sent[0].status == 0 and message_id
        await esme.read_once()  # the receipt
        receipt = esme.received[0]
        assert receipt.esm_class == P.ESM_RECEIPT
        assert receipt.receipted_message_id == message_id
        assert receipt.message_state == 2
        text = receipt.short_message
        assert text.startswith(b"id:" + message_id + b" sub:001 dlvrd:001 submit date:")
        assert b" stat:DELIVRD err:000 text:Hello from smpplib, " in text
        assert receipt.source_addr == b"15551230000" and receipt.destination_addr == b"15550001111"
        raw, _ = await smsc.wait_for_result(lambda r: r[1] == 0)
        assert b"id:" + message_id in raw
        submit = await smsc.wait_for(lambda p: p.command_id == P.SUBMIT_SM)
        assert b"Hello from smpplib" in submit.raw
        assert smsc.submissions[0].message_id == message_id.decode()
    finally:
        await esme.close()
    await smsc.wait_until(lambda: smsc.sessions == 0)


async def test_message_ids_are_unique_and_no_receipt_unless_asked(smsc: Simulator) -> None:
    client = await Raw.open(smsc.smpp_port)
    assert (await client.bind()).command_status == 0
    ids = set()
    for seq in range(2, 12):
        resp = await client.request(submit_sm(seq))
        assert (resp.command_id, resp.sequence_number) == (P.SUBMIT_SM_RESP, seq)
        ids.add(F.response_message_id(resp.raw))
    assert len(ids) == 10 and b"" not in ids
    # an enquire_link answered with nothing queued before it: no receipt was sent
    resp = await client.request(P.encode(P.ENQUIRE_LINK, 0, 99))
    assert resp.command_id == P.ENQUIRE_LINK_RESP and not client.queue
    await client.close()


async def test_data_sm_and_submit_multi(smsc: Simulator) -> None:
    client = await Raw.open(smsc.smpp_port)
    await client.bind()
    data_body = (
        b"\x00\x01\x01" + P.cstring("111") + b"\x01\x01" + P.cstring("222") + b"\x00\x00\x00"
        + struct.pack("!HH", P.TAG_MESSAGE_PAYLOAD, 2) + b"hi"
    )
    resp = await client.request(P.encode(P.DATA_SM, 0, 2, data_body))
    assert resp.command_id == P.DATA_SM_RESP and F.response_message_id(resp.raw)
    dests = b"".join(b"\x01\x01\x01" + P.cstring(n) for n in ("333", "444"))
    multi_body = (
        b"\x00\x01\x01" + P.cstring("111") + b"\x02" + dests
        + b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x03abc"
    )
    resp = await client.request(P.encode(P.SUBMIT_MULTI, 0, 3, multi_body))
    message_id, unsuccess = F.parse_submit_multi_resp(resp.raw)
    assert resp.command_status == 0 and message_id and unsuccess == []
    receipts = [await client.read(), await client.read()]
    mobiles = {F.parse_short_message(r.raw).source.addr for r in receipts if r}
    assert mobiles == {b"333", b"444"}
    assert [s.summary()["destination"] for s in smsc.submissions] == ["222", "333,444"]
    await client.close()


async def test_receipt_goes_to_receiver_when_sent_on_transmitter(smsc: Simulator) -> None:
    tx = await Raw.open(smsc.smpp_port)
    await tx.bind(P.BIND_TRANSMITTER)
    resp = await tx.request(submit_sm(2, registered_delivery=1))
    message_id = F.response_message_id(resp.raw)
    rx = await Raw.open(smsc.smpp_port)  # binds after the receipt was due: it is queued
    assert (await rx.bind(P.BIND_RECEIVER)).command_status == 0
    receipt = await rx.read()
    assert receipt is not None and receipt.command_id == P.DELIVER_SM
    sm = F.parse_short_message(receipt.raw)
    assert F.receipt_message_id(sm) == message_id and sm.is_receipt
    rx.send(P.response_for(receipt, 0x45))
    assert (await smsc.wait_for_result(lambda r: True))[1] == 0x45
    await tx.close()
    await rx.close()


async def test_bind_credentials_checked() -> None:
    async with Simulator(system_id="carrier", password="secret", http_port=None) as sim:
        bad = await Raw.open(sim.smpp_port)
        resp = await bad.request(bind_pdu(P.BIND_TRANSCEIVER, "carrier", "wrong"))
        assert resp.command_status == st.ESME_RBINDFAIL
        assert await bad.read() is None  # closed by the simulator
        await bad.close()
        good = await Raw.open(sim.smpp_port)
        resp = await good.request(bind_pdu(P.BIND_TRANSCEIVER, "carrier", "secret"))
        assert resp.command_status == 0 and resp.body.startswith(b"simulator\x00")
        assert sim.bound_count == 1
        assert (await good.request(bind_pdu(P.BIND_RECEIVER, "x", "y"))).command_status == (
            st.ESME_RALYBND
        )
        await good.close()


async def test_bind_state_and_unknown_commands(smsc: Simulator) -> None:
    client = await Raw.open(smsc.smpp_port)
    assert (await client.request(submit_sm(1))).command_status == st.ESME_RINVBNDSTS
    await client.bind(P.BIND_RECEIVER)
    assert (await client.request(submit_sm(3))).command_status == st.ESME_RINVBNDSTS
    nack = await client.request(P.encode(0x00000777, 0, 4))
    assert (nack.command_id, nack.command_status, nack.sequence_number) == (
        P.GENERIC_NACK, st.ESME_RINVCMDID, 4
    )
    resp = await client.request(P.encode(P.UNBIND, 0, 5))
    assert resp.command_id == P.UNBIND_RESP
    assert await client.read() is None
    await client.close()


async def test_malformed_and_framing_errors_isolated(smsc: Simulator) -> None:
    other = await Raw.open(smsc.smpp_port)
    await other.bind()
    client = await Raw.open(smsc.smpp_port)
    await client.bind()
    nack = await client.request(P.encode(P.SUBMIT_SM, 0, 7, b"\x00\x01"))
    assert (nack.command_id, nack.sequence_number) == (P.GENERIC_NACK, 7)
    assert nack.command_status == st.ESME_RINVMSGLEN
    client.send(struct.pack("!IIII", 0xFFFFFFFF, P.SUBMIT_SM, 0, 8) + b"junk")
    nack = await client.read()
    assert nack is not None and nack.command_status == st.ESME_RINVCMDLEN
    assert await client.read() is None
    await client.close()
    assert (await other.request(submit_sm(2))).command_status == 0
    await other.close()


async def test_respond_false_swallows_and_submit_status(smsc: Simulator) -> None:
    client = await Raw.open(smsc.smpp_port)
    await client.bind()
    smsc.respond = False
    client.send(submit_sm(2))
    await smsc.wait_for(lambda p: p.command_id == P.SUBMIT_SM and p.sequence_number == 2)
    resp = await client.request(P.encode(P.ENQUIRE_LINK, 0, 3))
    assert resp.command_id == P.ENQUIRE_LINK_RESP  # the submit_sm before it got nothing
    smsc.respond = True
    smsc.submit_status = st.ESME_RMSGQFUL
    resp = await client.request(submit_sm(4, registered_delivery=1))
    assert resp.command_status == st.ESME_RMSGQFUL and resp.body == b""
    resp = await client.request(P.encode(P.ENQUIRE_LINK, 0, 5))
    assert resp.command_id == P.ENQUIRE_LINK_RESP  # and no receipt for a refused message
    await client.close()


async def test_drop_all_and_stop_with_bound_sessions() -> None:
    sim = Simulator(http_port=None)
    await sim.start()
    clients = [await Raw.open(sim.smpp_port) for _ in range(2)]
    for client in clients:
        await client.bind()
    assert sim.sessions == 2 and sim.bound_count == 2
    sim.drop_all()
    await sim.wait_until(lambda: sim.sessions == 0)
    for client in clients:
        assert await client.read() is None
        await client.close()
    client = await Raw.open(sim.smpp_port)
    await client.bind()
    stopping = asyncio.create_task(sim.stop())
    unbind = await client.read()
    assert unbind is not None and unbind.command_id == P.UNBIND
    client.send(P.response_for(unbind, 0))
    assert await client.read() is None
    await stopping
    await client.close()


# --- MO injection ---------------------------------------------------------------------


async def test_http_mo_reaches_smpplib_receiver_and_status_returns(smsc: Simulator) -> None:
    esme = Esme(smsc.smpp_port)
    await esme.bind("receiver")
    esme.mo_status = st.ESME_RX_T_APPN
    try:
        reading = asyncio.create_task(esme.read_once())
        status, body = await http(
            smsc.http_port or 0, post("/mo", {"from": "15551230000", "to": "15550001111", "text": "STOP"})
        )
        await reading
        assert (status, body) == (200, {"status": st.ESME_RX_T_APPN})
        mo = esme.received[0]
        assert (mo.source_addr, mo.destination_addr, mo.short_message) == (
            b"15551230000", b"15550001111", b"STOP"
        )
        assert mo.data_coding == 0 and mo.esm_class == 0
        raw, result = smsc.deliver_results[-1]
        assert result == st.ESME_RX_T_APPN and raw.endswith(b"STOP")
    finally:
        await esme.close()


async def test_http_mo_without_receiver_is_503(smsc: Simulator) -> None:
    tx = await Raw.open(smsc.smpp_port)
    await tx.bind(P.BIND_TRANSMITTER)
    status, body = await http(smsc.http_port or 0, post("/mo", {"from": "1", "to": "2", "text": "x"}))
    assert status == 503 and "no receiver" in body["error"]
    with pytest.raises(NoReceiverError):
        await smsc.inject_mo("1", "2", "x")
    await tx.close()


@pytest.mark.parametrize(
    "request_bytes, expected",
    [
        (post("/mo", None, raw_body=b"{not json"), 400),
        (post("/mo", {"from": "1", "to": "2"}), 400),
        (post("/mo", ["from", "to", "text"]), 400),
        (post("/mo", {"from": "1", "to": "2", "text": "x", "data_coding": "gsm"}), 400),
        (post("/mo", {"from": "1" * 30, "to": "2", "text": "x"}), 400),
        (b"POST /mo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /mo HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", 413),
        (b"GET /nowhere HTTP/1.1\r\n\r\n", 404),
        (b"DELETE /mo HTTP/1.1\r\n\r\n", 405),
        (b"\x16\x03\x01garbage\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n", 400),  # EOF before the end of the head
    ],
)
async def test_http_bad_requests(smsc: Simulator, request_bytes: bytes, expected: int) -> None:
    client = await Raw.open(smsc.smpp_port)
    await client.bind(P.BIND_RECEIVER)
    reader, writer = await asyncio.open_connection("127.0.0.1", smsc.http_port)
    writer.write(request_bytes)
    writer.write_eof()
    async with asyncio.timeout(10):
        data = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert data.startswith(f"HTTP/1.1 {expected} ".encode())
    assert "error" in json.loads(data.partition(b"\r\n\r\n")[2])
    assert not smsc.deliver_results
    await client.close()


async def test_http_healthz_and_messages(smsc: Simulator) -> None:
    client = await Raw.open(smsc.smpp_port)
    await client.bind()
    resp = await client.request(submit_sm(2, text=b"hi @ there"))
    status, body = await http(smsc.http_port or 0, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (status, body) == (200, {"status": "ok", "sessions": 1, "bound": 1})
    status, body = await http(smsc.http_port or 0, b"GET /messages?x=1 HTTP/1.1\r\n\r\n")
    assert status == 200 and len(body) == 1
    summary = body[0]
    assert summary["sequence"] == 2 and summary["source"] == "15550001111"
    assert summary["destination"] == "15551230000"
    assert summary["text"] == "hi \u00a1 there"  # 0x40 is inverted exclamation in GSM 03.38
    assert summary["message_id"] == F.response_message_id(resp.raw).decode()
    await client.close()


async def test_inject_mo_encodings_round_robin_and_timeout(smsc: Simulator) -> None:
    a = await Raw.open(smsc.smpp_port)
    b = await Raw.open(smsc.smpp_port)
    await a.bind(P.BIND_RECEIVER)
    await b.bind(P.BIND_TRANSCEIVER)

    async def answer(client: Raw, status: int) -> F.ShortMessage:
        pdu = await client.read()
        assert pdu is not None and pdu.command_id == P.DELIVER_SM
        client.send(P.response_for(pdu, status))
        return F.parse_short_message(pdu.raw)

    results = await asyncio.gather(
        smsc.inject_mo("111", "222", "Привет"),
        smsc.inject_mo("111", "222", "plain"),
        answer(a, 0),
        answer(b, 0),
    )
    assert results[:2] == [0, 0]  # one each: round-robin
    texts = {decode_text(sm.data_coding, sm.short_message) for sm in results[2:]}
    assert texts == {"Привет", "plain"}
    ucs2 = next(sm for sm in results[2:] if sm.data_coding == DC_UCS2)
    assert ucs2.short_message == "Привет".encode("utf-16-be")
    long_text = "x" * 300
    status, sm = await asyncio.gather(smsc.inject_mo("111", "222", long_text), answer_any(a, b))
    assert status == 0x45 and sm.short_message == b"" and sm.payload == b"x" * 300
    assert decode_text(sm.data_coding, sm.payload) == long_text
    with pytest.raises(ResponseTimeoutError):
        await smsc.inject_mo("111", "222", "nobody answers", timeout=0.05)
    await a.close()
    await b.close()


async def answer_any(a: Raw, b: Raw) -> F.ShortMessage:
    """Answer whichever of a or b gets the next deliver_sm, with 0x45."""
    reads = {asyncio.ensure_future(a.read()): a, asyncio.ensure_future(b.read()): b}
    done, pending = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    task = done.pop()
    pdu = task.result()
    assert pdu is not None
    reads[task].send(P.response_for(pdu, 0x45))
    return F.parse_short_message(pdu.raw)
