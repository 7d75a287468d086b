"""SMPP 3.4 framing: command ids, the 16-byte header, the Pdu value, the Framer, encoders.

The hot path reads the header with `struct` and forwards the bytes it received with only
sequence_number rewritten. Body fields live in `fields.py`, read only where a decision
needs them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gateway.errors import FramingError

HEADER = struct.Struct("!IIII")
HEADER_SIZE = 16
SEQ = struct.Struct("!I")
TLV = struct.Struct("!HH")
MAX_PDU = 64 * 1024
RESPONSE_BIT = 0x80000000
MAX_SEQUENCE = 0x7FFFFFFF

# Command ids (SMPP 3.4 section 5.1.2.1)
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_RECEIVER_RESP = 0x80000001
BIND_TRANSMITTER = 0x00000002
BIND_TRANSMITTER_RESP = 0x80000002
QUERY_SM = 0x00000003
QUERY_SM_RESP = 0x80000003
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
REPLACE_SM = 0x00000007
REPLACE_SM_RESP = 0x80000007
CANCEL_SM = 0x00000008
CANCEL_SM_RESP = 0x80000008
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
SUBMIT_MULTI = 0x00000021
SUBMIT_MULTI_RESP = 0x80000021
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103
DATA_SM_RESP = 0x80000103

COMMAND_NAMES: dict[int, str] = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_RECEIVER_RESP: "bind_receiver_resp",
    BIND_TRANSMITTER: "bind_transmitter",
    BIND_TRANSMITTER_RESP: "bind_transmitter_resp",
    QUERY_SM: "query_sm",
    QUERY_SM_RESP: "query_sm_resp",
    SUBMIT_SM: "submit_sm",
    SUBMIT_SM_RESP: "submit_sm_resp",
    DELIVER_SM: "deliver_sm",
    DELIVER_SM_RESP: "deliver_sm_resp",
    UNBIND: "unbind",
    UNBIND_RESP: "unbind_resp",
    REPLACE_SM: "replace_sm",
    REPLACE_SM_RESP: "replace_sm_resp",
    CANCEL_SM: "cancel_sm",
    CANCEL_SM_RESP: "cancel_sm_resp",
    BIND_TRANSCEIVER: "bind_transceiver",
    BIND_TRANSCEIVER_RESP: "bind_transceiver_resp",
    OUTBIND: "outbind",
    ENQUIRE_LINK: "enquire_link",
    ENQUIRE_LINK_RESP: "enquire_link_resp",
    SUBMIT_MULTI: "submit_multi",
    SUBMIT_MULTI_RESP: "submit_multi_resp",
    ALERT_NOTIFICATION: "alert_notification",
    DATA_SM: "data_sm",
    DATA_SM_RESP: "data_sm_resp",
}
BIND_COMMANDS = frozenset({BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER})

# TLV tags (5.3.2)
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_MESSAGE_STATE = 0x0427
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_SC_INTERFACE_VERSION = 0x0210

ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_RECEIPT = 0x04  # SMSC delivery receipt
ESM_INTERMEDIATE = 0x20


def command_name(command_id: int) -> str:
    return COMMAND_NAMES.get(command_id, f"0x{command_id:08x}")


class Pdu:
    """One framed PDU: header values plus the exact bytes received."""

    __slots__ = ("command_id", "command_status", "raw", "sequence_number")

    def __init__(self, command_id: int, command_status: int, sequence_number: int, raw: bytes):
        self.command_id = command_id
        self.command_status = command_status
        self.sequence_number = sequence_number
        self.raw = raw

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def body(self) -> bytes:
        return self.raw[HEADER_SIZE:]

    def with_sequence(self, sequence_number: int) -> bytes:
        """The received bytes with only sequence_number rewritten."""
        raw = self.raw
        return raw[:12] + SEQ.pack(sequence_number) + raw[16:]

    def __repr__(self) -> str:
        return (
            f"Pdu({command_name(self.command_id)}, status=0x{self.command_status:x}, "
            f"seq={self.sequence_number}, len={len(self.raw)})"
        )


@dataclass
class Framer:
    """Byte stream in, PDUs out. No sockets.

    A command_length below 16 or above max_pdu cannot be resynchronised: FramingError,
    carrying the header so the caller can generic_nack with the offending sequence.
    """

    max_pdu: int = MAX_PDU
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Pdu]:
        whole = self.join(data)
        if whole is None:
            return []
        pdus, pos = self._split(whole)
        self.keep(whole, pos)
        return pdus

    def join(self, data: bytes) -> bytes | None:
        """This read with what the last one left, to frame from offset 0; None while a PDU is still
        incomplete (no copy per read, however slow the sender). The sessions' fused read loops
        (EsmeConnection, CarrierConnection) frame with join / keep, everyone else with feed."""
        buf = self._buf
        if not buf:
            return data
        buf += data
        if len(buf) < HEADER_SIZE:
            return None
        length = int.from_bytes(buf[:4], "big")
        if HEADER_SIZE <= length <= self.max_pdu and len(buf) < length:
            return None
        whole = bytes(buf)
        buf.clear()
        return whole

    def keep(self, data: bytes, pos: int) -> None:
        """data[pos:], an incomplete PDU, waits for the next read."""
        if pos < len(data):
            self._buf += data[pos:]

    def _split(self, data: bytes) -> tuple[list[Pdu], int]:
        """The whole PDUs at the start of data, sliced without copying twice; and where they end."""
        pdus: list[Pdu] = []
        append = pdus.append
        pos = 0
        end = len(data)
        unpack = HEADER.unpack_from
        while end - pos >= HEADER_SIZE:
            length, command_id, status, seq = unpack(data, pos)
            if length < HEADER_SIZE or length > self.max_pdu:
                err = FramingError(f"command_length={length}")
                err.sequence_number = seq  # type: ignore[attr-defined]
                err.pdus = pdus  # type: ignore[attr-defined]
                raise err
            if end - pos < length:
                break
            append(Pdu(command_id, status, seq, data[pos : pos + length]))
            pos += length
        return pdus, pos

    @property
    def buffered(self) -> int:
        return len(self._buf)


def encode(command_id: int, command_status: int, sequence_number: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_SIZE + len(body), command_id, command_status, sequence_number) + body


def response_for(pdu: Pdu, command_status: int, body: bytes = b"") -> bytes:
    """The response to a request. Per 5.1.3 a non-zero status carries no body for most PDUs."""
    return encode(pdu.command_id | RESPONSE_BIT, command_status, pdu.sequence_number, body)


def generic_nack(command_status: int, sequence_number: int) -> bytes:
    return encode(GENERIC_NACK, command_status, sequence_number)


def cstring(value: bytes | str) -> bytes:
    if isinstance(value, str):
        value = value.encode("latin-1")
    return value + b"\x00"
