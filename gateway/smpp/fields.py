"""SMPP 3.4 field access: the few body fields the gateway reads, never more.

Every parser raises MalformedPduError and nothing else on bad input (hypothesis checks it).
The hot path uses mt_scan only: one pass over submit_sm/data_sm for the addresses and
registered_delivery; the full parsers serve MO, receipts, binds and submit_multi.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from gateway.errors import MalformedPduError
from gateway.smpp.pdu import (
    CANCEL_SM,
    DATA_SM,
    ESM_INTERMEDIATE,
    ESM_RECEIPT,
    ESM_TYPE_MASK,
    HEADER,
    HEADER_SIZE,
    SEQ,
    TAG_MESSAGE_PAYLOAD,
    TAG_RECEIPTED_MESSAGE_ID,
    TAG_SC_INTERFACE_VERSION,
    TLV,
    Pdu,
    cstring,
)


def _cstr(raw: bytes, pos: int, limit: int) -> tuple[bytes, int]:
    """C-Octet string at pos, at most `limit` bytes including the NUL."""
    try:
        end = raw.index(b"\x00", pos, pos + limit)
    except ValueError:
        raise MalformedPduError(f"unterminated C-Octet string at {pos}") from None
    return raw[pos:end], end + 1


def _u8(raw: bytes, pos: int) -> int:
    if pos >= len(raw):
        raise MalformedPduError(f"body truncated at {pos}")
    return raw[pos]


@dataclass(frozen=True, slots=True)
class Address:
    ton: int
    npi: int
    addr: bytes

    @property
    def text(self) -> str:
        return self.addr.decode("latin-1")


def _leading(raw: bytes) -> tuple[bytes, Address, Address, int]:
    """service_type, source, destination of submit_sm / deliver_sm / data_sm, and the offset after."""
    service_type, pos = _cstr(raw, HEADER_SIZE, 6)
    src_ton, src_npi = _u8(raw, pos), _u8(raw, pos + 1)
    src, pos = _cstr(raw, pos + 2, 65)
    dst_ton, dst_npi = _u8(raw, pos), _u8(raw, pos + 1)
    dst, pos = _cstr(raw, pos + 2, 65)
    return service_type, Address(src_ton, src_npi, src), Address(dst_ton, dst_npi, dst), pos


def submit_addresses(raw: bytes) -> tuple[Address, Address]:
    """source and destination of submit_sm / deliver_sm / data_sm (same leading layout)."""
    _, source, destination, _ = _leading(raw)
    return source, destination


def parse_tlvs(raw: bytes, pos: int) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    end = len(raw)
    while pos < end:
        if end - pos < 4:
            raise MalformedPduError("truncated TLV header")
        tag, length = TLV.unpack_from(raw, pos)
        pos += 4
        if end - pos < length:
            raise MalformedPduError(f"TLV 0x{tag:04x} overruns the PDU")
        tlvs[tag] = raw[pos : pos + length]
        pos += length
    return tlvs


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The fields of submit_sm / deliver_sm (4.4.1, 4.6.1) a decision needs."""

    service_type: bytes
    source: Address
    destination: Address
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes]

    @property
    def payload(self) -> bytes:
        """message_payload when present, otherwise short_message."""
        return self.tlvs.get(TAG_MESSAGE_PAYLOAD, self.short_message)

    @property
    def is_receipt(self) -> bool:
        return is_receipt(self.esm_class)


def is_receipt(esm_class: int) -> bool:
    """SMSC delivery receipt or intermediate notification (esm_class bits 2-5, 5.2.12)."""
    return bool(esm_class & ESM_RECEIPT) or esm_class & ESM_TYPE_MASK == ESM_INTERMEDIATE


def parse_short_message(raw: bytes) -> ShortMessage:
    """submit_sm / deliver_sm body. Raises MalformedPduError, never anything else."""
    try:
        service_type, source, destination, pos = _leading(raw)
        esm_class = raw[pos]
        pos += 3  # esm_class, protocol_id, priority_flag
        _, pos = _cstr(raw, pos, 17)  # schedule_delivery_time
        _, pos = _cstr(raw, pos, 17)  # validity_period
        registered_delivery = raw[pos]
        data_coding = raw[pos + 2]
        sm_length = raw[pos + 4]
        pos += 5
        if pos + sm_length > len(raw):
            raise MalformedPduError("short_message overruns the PDU")
        short_message = raw[pos : pos + sm_length]
        tlvs = parse_tlvs(raw, pos + sm_length)
    except IndexError:
        raise MalformedPduError("body truncated") from None
    return ShortMessage(
        service_type,
        source,
        destination,
        esm_class,
        registered_delivery,
        data_coding,
        short_message,
        tlvs,
    )


@dataclass(frozen=True, slots=True)
class DataSm:
    """data_sm (4.7.1): no short_message; text only in message_payload."""

    service_type: bytes
    source: Address
    destination: Address
    esm_class: int
    registered_delivery: int
    data_coding: int
    tlvs: dict[int, bytes]

    @property
    def payload(self) -> bytes:
        return self.tlvs.get(TAG_MESSAGE_PAYLOAD, b"")

    @property
    def short_message(self) -> bytes:
        return b""

    @property
    def is_receipt(self) -> bool:
        return is_receipt(self.esm_class)


def parse_data_sm(raw: bytes) -> DataSm:
    try:
        service_type, source, destination, pos = _leading(raw)
        esm_class, registered_delivery, data_coding = raw[pos], raw[pos + 1], raw[pos + 2]
        tlvs = parse_tlvs(raw, pos + 3)
    except IndexError:
        raise MalformedPduError("body truncated") from None
    return DataSm(
        service_type,
        source,
        destination,
        esm_class,
        registered_delivery,
        data_coding,
        tlvs,
    )


def parse_any_sm(pdu: Pdu) -> ShortMessage | DataSm:
    if pdu.command_id == DATA_SM:
        return parse_data_sm(pdu.raw)
    return parse_short_message(pdu.raw)


@dataclass(frozen=True, slots=True)
class MultiDest:
    """One destination of submit_multi: an SME address (flag 1) or a distribution list (flag 2)."""

    flag: int
    address: Address | None
    dl_name: bytes
    start: int
    end: int


def submit_multi_dests(raw: bytes) -> tuple[list[MultiDest], int, int]:
    """(destinations, offset of number_of_dests, offset after the last destination)."""
    try:
        _, pos = _cstr(raw, HEADER_SIZE, 6)
        pos += 2
        _, pos = _cstr(raw, pos, 21)
        count_at = pos
        count = raw[pos]
        pos += 1
        dests: list[MultiDest] = []
        for _ in range(count):
            start = pos
            flag = raw[pos]
            if flag == 1:
                ton, npi = raw[pos + 1], raw[pos + 2]
                addr, pos = _cstr(raw, pos + 3, 21)
                dests.append(MultiDest(1, Address(ton, npi, addr), b"", start, pos))
            elif flag == 2:
                name, pos = _cstr(raw, pos + 1, 21)
                dests.append(MultiDest(2, None, name, start, pos))
            else:
                raise MalformedPduError(f"dest_flag={flag}")
    except IndexError:
        raise MalformedPduError("body truncated") from None
    return dests, count_at, pos


def submit_multi_source(raw: bytes) -> Address:
    """source_addr of submit_multi (4.5.1): service_type, then ton, npi, source_addr (21)."""
    _, pos = _cstr(raw, HEADER_SIZE, 6)
    ton, npi = _u8(raw, pos), _u8(raw, pos + 1)
    addr, _ = _cstr(raw, pos + 2, 21)
    return Address(ton, npi, addr)


def submit_multi_without(raw: bytes, keep: list[MultiDest], count_at: int, dests_end: int) -> bytes:
    """The same submit_multi with only `keep` destinations: every other byte as received."""
    body = (
        raw[HEADER_SIZE:count_at]
        + bytes([len(keep)])
        + b"".join(raw[d.start : d.end] for d in keep)
        + raw[dests_end:]
    )
    _, command_id, status, seq = HEADER.unpack_from(raw)
    return HEADER.pack(HEADER_SIZE + len(body), command_id, status, seq) + body


def submit_multi_resp_body(message_id: bytes, unsuccess: list[tuple[Address, int]]) -> bytes:
    parts = [cstring(message_id), bytes([len(unsuccess)])]
    for address, status in unsuccess:
        parts.append(bytes([address.ton, address.npi]) + cstring(address.addr) + SEQ.pack(status))
    return b"".join(parts)


def parse_submit_multi_resp(raw: bytes) -> tuple[bytes, list[tuple[Address, int]]]:
    try:
        message_id, pos = _cstr(raw, HEADER_SIZE, 65)
        if pos >= len(raw):
            return message_id, []
        count = raw[pos]
        pos += 1
        out: list[tuple[Address, int]] = []
        for _ in range(count):
            ton, npi = raw[pos], raw[pos + 1]
            addr, pos = _cstr(raw, pos + 2, 21)
            (status,) = SEQ.unpack_from(raw, pos)
            pos += 4
            out.append((Address(ton, npi, addr), status))
    except (IndexError, struct.error):
        raise MalformedPduError("submit_multi_resp truncated") from None
    return message_id, out


def response_message_id(raw: bytes) -> bytes:
    """message_id of submit_sm_resp / data_sm_resp / submit_multi_resp; b'' when absent."""
    if len(raw) <= HEADER_SIZE:
        return b""
    end = raw.find(b"\x00", HEADER_SIZE, HEADER_SIZE + 65)
    return raw[HEADER_SIZE:end] if end >= 0 else b""


@dataclass(frozen=True, slots=True)
class BindRequest:
    system_id: str
    password: str
    system_type: str
    interface_version: int
    address_range: str


def parse_bind(raw: bytes) -> BindRequest:
    try:
        system_id, pos = _cstr(raw, HEADER_SIZE, 16)
        password, pos = _cstr(raw, pos, 9)
        system_type, pos = _cstr(raw, pos, 13)
        version = raw[pos]
        address_range, pos = _cstr(raw, pos + 3, 41)
    except IndexError:
        raise MalformedPduError("bind truncated") from None
    return BindRequest(
        system_id.decode("latin-1"),
        password.decode("latin-1"),
        system_type.decode("latin-1"),
        version,
        address_range.decode("latin-1"),
    )


def bind_resp_body(system_id: str) -> bytes:
    """system_id and sc_interface_version 3.4 (4.1.6)."""
    return cstring(system_id) + TLV.pack(TAG_SC_INTERFACE_VERSION, 1) + b"\x34"


def receipt_message_id(sm: ShortMessage | DataSm) -> bytes | None:
    """The id a receipt refers to: receipted_message_id TLV, else the `id:` of the text (Appendix B)."""
    ref = receipt_reference(sm)
    return ref[0] if ref else None


def receipt_reference(sm: ShortMessage | DataSm) -> tuple[bytes, bool] | None:
    """(the id a receipt refers to, True when it comes from the text rather than the TLV)."""
    tlv = sm.tlvs.get(TAG_RECEIPTED_MESSAGE_ID)
    if tlv is not None:
        return tlv.rstrip(b"\x00"), False
    text = sm.payload
    if text.startswith(b"id:"):
        end = text.find(b" ", 3)
        return (text[3:] if end < 0 else text[3:end]), True
    return None


def control_message_id(raw: bytes, command_id: int) -> bytes:
    """message_id of query_sm / replace_sm (first field, 4.8.1, 4.10.1) or cancel_sm (after
    service_type, 4.9.1)."""
    pos = HEADER_SIZE
    if command_id == CANCEL_SM:
        _, pos = _cstr(raw, pos, 6)
    message_id, _ = _cstr(raw, pos, 65)
    return message_id


MtScan = tuple[int, bytes, int, bytes, int]


# mt_scan's one pass as a regular expression (one C call instead of five bytes.index calls):
# service_type (<= 5), source ton, npi, source_addr (<= 64), dest ton, npi, destination_addr (<= 64);
# then submit_sm: esm_class, protocol_id, priority_flag, schedule_delivery_time and
# validity_period (<= 16 each), registered_delivery; data_sm: esm_class, registered_delivery.
_MT_HEAD = rb"[^\x00]{0,5}\x00(.).([^\x00]{0,64})\x00(.).([^\x00]{0,64})\x00"
_SUBMIT_SCAN = re.compile(_MT_HEAD + rb"...[^\x00]{0,16}\x00[^\x00]{0,16}\x00(.)", re.DOTALL).match
_DATA_SM_SCAN = re.compile(_MT_HEAD + rb".(.)", re.DOTALL).match
# hotpath: the submit_sm it forwards itself, matched inside a read (data, body_start, pdu_end): those
# _SUBMIT_SCAN reads the same way whose destination has TON 1 (international) and 7-15 digits, the
# first not 0 (numbers.mobile_key's common case); groups: source ton+npi+addr, destination, registered_delivery
fast_submit_scan = re.compile(rb"[^\x00]{0,5}\x00(..[^\x00]{0,64})\x00\x01.([1-9][0-9]{6,14})\x00"
                              rb"...[^\x00]{0,16}\x00[^\x00]{0,16}\x00(.)", re.DOTALL).match


def mt_scan(raw: bytes) -> MtScan:
    """submit_sm / data_sm in one pass: (source ton, source_addr, dest ton, destination_addr,
    registered_delivery). The hot path's only body read."""
    m = (_DATA_SM_SCAN if raw[4:8] == b"\x00\x00\x01\x03" else _SUBMIT_SCAN)(raw, HEADER_SIZE)
    if m is None:
        raise MalformedPduError("submit body truncated")
    src_ton, src, dst_ton, dst, registered = m.groups()
    return src_ton[0], src, dst_ton[0], dst, registered[0]


def wants_receipt(raw: bytes) -> bool:
    """registered_delivery asks for an SMSC receipt (submit_sm, data_sm). Unparseable: True (keep the route)."""
    try:
        return bool(mt_scan(raw)[4] & 0x1F)
    except MalformedPduError:
        return True
