"""`gateway send`: a small ESME for smoke tests against this gateway or any SMSC (sendsms-like).

Binds as a transceiver, sends one message (GSM 03.38 when the text fits it, else UCS-2;
concatenated segments with a UDH when it is long, as the gateway's own replies are built),
prints each submit_sm_resp status by name with its message id, optionally waits for the
delivery receipt, and unbinds. Every network wait has the one `timeout`.

Exit codes: 0 sent (and delivered, with a receipt); 1 connection, TLS or protocol failure;
2 bad arguments; 3 bind refused; 4 submit refused; 5 no receipt in time; 6 a receipt that
says the message was not delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from aiosmpplib import NPI, TON, BindTransceiver, PhoneNumber, SmppCommandStatus, SubmitSm

from gateway.errors import FramingError
from gateway.policy.text import decode_text, encode_reply, segment
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp.message_id import submitted_keyer, text_keyer

EXIT_OK, EXIT_CONNECT, EXIT_USAGE, EXIT_BIND, EXIT_REFUSED, EXIT_NO_RECEIPT, EXIT_UNDELIVERED = range(7)
DELIVERED_STATES = frozenset({"DELIVRD", "ACCEPTD"})
UNBIND_TIMEOUT = 2.0
Say = Callable[[str], None]


class SendError(Exception):
    """A failure with the exit code it means; str() is the one line printed."""

    def __init__(self, message: str, exit_code: int = EXIT_CONNECT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class SendRequest:
    host: str
    port: int
    system_id: str
    password: str
    source: str
    destination: str
    text: str
    system_type: str = ""
    wait_receipt: bool = False
    timeout: float = 10.0
    tls: ssl.SSLContext | None = None
    server_name: str | None = None
    message_id_format: str = "exact"


def status_text(status: int) -> str:
    """'ESME_RINVDSTADR (0x0000000B)'; a vendor code keeps its number."""
    try:
        name = SmppCommandStatus(status).name
    except ValueError:
        name = "vendor-specific"
    return f"{name} (0x{status:08X})"


def address(value: str) -> PhoneNumber:
    """'+14155550123': international; digits only: TON unknown; anything else: alphanumeric."""
    if value.startswith("+") and value[1:].isdigit():
        return PhoneNumber(value[1:], TON.INTERNATIONAL, NPI.ISDN)
    if value.isdigit():
        return PhoneNumber(value, TON.UNKNOWN, NPI.ISDN)
    return PhoneNumber(value, TON.ALPHANUMERIC, NPI.UNKNOWN)


def submit_pdus(source: str, destination: str, text: str, registered_delivery: int,
                ref: int) -> list[bytes]:
    """One submit_sm, or one per segment (UDH 05 00 03 ref total seq); sequence numbers 0."""
    data_coding, encoded = encode_reply(text)
    encoding = "ucs2" if data_coding == 8 else None
    parts = segment(data_coding, encoded, ref)
    out = []
    for part in parts:
        msg = SubmitSm(short_message=text, source=address(source), destination=address(destination),
                       registered_delivery=registered_delivery, encoding=encoding,
                       esm_class=P.ESM_UDHI if len(parts) > 1 else 0)
        msg.set_encoded_message(part)
        out.append(msg.pdu())
    return out


def receipt_fields(text: str) -> dict[str, str]:
    """'id:1 sub:001 dlvrd:001 submit date:... stat:DELIVRD err:000 text:..' -> its fields."""
    out: dict[str, str] = {}
    head = text.split(" text:", 1)[0].replace("submit date:", "submit_date:").replace("done date:", "done_date:")
    for word in head.split():
        key, sep, value = word.partition(":")
        if sep:
            out[key.lower()] = value
    return out


class Client:
    """One SMPP session over asyncio streams: requests matched to responses by sequence number,
    enquire_link answered, deliver_sm acknowledged and kept for whoever waits on receipts."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.framer = P.Framer()
        self.seq = 0
        self.pending: dict[int, asyncio.Future[P.Pdu]] = {}
        self.delivered: asyncio.Queue[P.Pdu | None] = asyncio.Queue()  # None: the session ended
        self.closed = asyncio.Event()
        self.peer_unbound = False
        self._task = asyncio.create_task(self._pump(), name="send-reader")

    async def _pump(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for pdu in self.framer.feed(data):
                    self._on_pdu(pdu)
        except (OSError, ConnectionError, ssl.SSLError, FramingError):
            pass
        finally:
            self.closed.set()
            self.delivered.put_nowait(None)
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(SendError(self.closed_reason()))

    def closed_reason(self) -> str:
        return "the peer unbound" if self.peer_unbound else "connection closed by the peer"

    def _on_pdu(self, pdu: P.Pdu) -> None:
        if pdu.is_response:
            future = self.pending.pop(pdu.sequence_number, None)
            if future is not None and not future.done():
                future.set_result(pdu)
        elif pdu.command_id == P.ENQUIRE_LINK:
            self.writer.write(P.response_for(pdu, 0))
        elif pdu.command_id in (P.DELIVER_SM, P.DATA_SM):
            self.writer.write(P.response_for(pdu, 0, b"\x00"))
            self.delivered.put_nowait(pdu)
        elif pdu.command_id == P.UNBIND:
            self.peer_unbound = True
            self.writer.write(P.response_for(pdu, 0))
        else:
            self.writer.write(P.generic_nack(0x03, pdu.sequence_number))  # ESME_RINVCMDID

    async def request(self, raw: bytes, what: str) -> P.Pdu:
        if self.closed.is_set():
            raise SendError(self.closed_reason())
        self.seq += 1
        future: asyncio.Future[P.Pdu] = asyncio.get_running_loop().create_future()
        self.pending[self.seq] = future
        self.writer.write(raw[:12] + P.SEQ.pack(self.seq) + raw[16:])
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self.pending.pop(self.seq, None)
            raise SendError(f"no answer to {what} within {self.timeout:g} s") from None

    async def close(self) -> None:
        """unbind (answered or not within UNBIND_TIMEOUT), then the socket."""
        if not self.closed.is_set() and not self.peer_unbound:
            self.timeout = min(self.timeout, UNBIND_TIMEOUT)
            with contextlib.suppress(SendError):
                await self.request(P.encode(P.UNBIND, 0, 0), "unbind")
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), UNBIND_TIMEOUT)


async def connect(req: SendRequest) -> Client:
    where = f"{req.host}:{req.port}"
    server_name = (req.server_name or req.host) if req.tls is not None else None
    try:
        opening = asyncio.open_connection(req.host, req.port, ssl=req.tls, server_hostname=server_name)
        reader, writer = await asyncio.wait_for(opening, req.timeout)
    except TimeoutError:
        raise SendError(f"cannot connect to {where}: no answer within {req.timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        raise SendError(f"TLS to {where}: certificate rejected: {exc.verify_message or exc.reason}") from None
    except ssl.SSLError as exc:
        raise SendError(f"TLS to {where}: handshake failed: {exc.reason or exc}") from None
    except ConnectionRefusedError:
        raise SendError(f"cannot connect to {where}: connection refused") from None
    except OSError as exc:
        raise SendError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    return Client(reader, writer, req.timeout)


async def send(req: SendRequest, say: Say = print) -> int:
    """Bind, submit, wait for the receipt if asked, unbind; the exit code (SendError raised
    for failures that end the session)."""
    try:
        bind = BindTransceiver(system_id=req.system_id, password=req.password,
                               system_type=req.system_type, address_range="").pdu()
        pdus = submit_pdus(req.source, req.destination, req.text, int(req.wait_receipt),
                           secrets.randbelow(256))
    except ValueError as exc:
        raise SendError(f"cannot build the PDUs: {exc}", EXIT_USAGE) from None
    client = await connect(req)
    try:
        resp = await client.request(bind, "bind_transceiver")
        if resp.command_status != 0:
            say(f"bind_transceiver_resp: {status_text(resp.command_status)}")
            raise SendError(f"bind refused: {status_text(resp.command_status)}", EXIT_BIND)
        say(f"bound: {req.system_id} to {F.response_message_id(resp.raw).decode('latin-1') or '?'}")
        ids = await _submit(client, pdus, say)
        if ids is None:
            return EXIT_REFUSED
        if not req.wait_receipt:
            return EXIT_OK
        return await _wait_receipt(client, ids, req, say)
    finally:
        await client.close()


async def _submit(client: Client, pdus: list[bytes], say: Say) -> list[bytes] | None:
    """Each part in turn; the message ids, or None once one was refused (the rest not sent)."""
    ids: list[bytes] = []
    for n, raw in enumerate(pdus, 1):
        resp = await client.request(raw, "submit_sm")
        part = f" {n}/{len(pdus)}" if len(pdus) > 1 else ""
        message_id = F.response_message_id(resp.raw)
        line = f"submit_sm_resp{part}: {status_text(resp.command_status)}"
        if resp.command_status != 0:
            say(line)
            return None
        say(f"{line} message_id={message_id.decode('latin-1')}")
        ids.append(message_id)
    return ids


async def _wait_receipt(client: Client, ids: list[bytes], req: SendRequest, say: Say) -> int:
    """Until a receipt for every part arrived (MOs meanwhile are acknowledged and skipped)."""
    by_tlv, by_text = submitted_keyer(req.message_id_format), text_keyer(req.message_id_format)
    waiting = {by_tlv(i) for i in ids}
    worst = EXIT_OK
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.timeout
    while waiting:
        try:
            pdu = await asyncio.wait_for(client.delivered.get(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise SendError(f"no delivery receipt within {req.timeout:g} s", EXIT_NO_RECEIPT) from None
        if pdu is None:
            raise SendError(f"{client.closed_reason()} before the receipt arrived", EXIT_NO_RECEIPT)
        key, text, state = _receipt(pdu, by_tlv, by_text)
        if key is None or key not in waiting:
            continue
        waiting.discard(key)
        say(f"receipt: {text}")
        if state not in DELIVERED_STATES:
            worst = EXIT_UNDELIVERED
    return worst


def _receipt(pdu: P.Pdu, by_tlv: Callable[[bytes], bytes],
             by_text: Callable[[bytes], bytes]) -> tuple[bytes | None, str, str]:
    """(the key of the id it refers to, its text, its state) or (None, ..) when no receipt."""
    try:
        sm = F.parse_any_sm(pdu)
    except Exception:  # noqa: BLE001 - a deliver_sm we cannot read is no receipt of ours
        return None, "", ""
    ref = F.receipt_reference(sm) if sm.is_receipt else None
    if ref is None:
        return None, "", ""
    decoded = decode_text(sm.data_coding, sm.esm_class, sm.payload)
    text = decoded.text if decoded.text is not None else sm.payload.decode("latin-1")
    state = sm.tlvs.get(P.TAG_MESSAGE_STATE)
    fields = receipt_fields(text)
    stat = fields.get("stat", "")
    if not stat and state:
        stat = {2: "DELIVRD", 6: "ACCEPTD"}.get(state[0], str(state[0]))
    return (by_text if ref[1] else by_tlv)(ref[0]), text, stat
