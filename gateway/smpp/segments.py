"""How many message segments an MT costs a per-segment rate limit, from the bytes, cheaply.

No text is decoded: the count follows data_coding and the octet count, as a carrier splits
them (GSM 7-bit sent one septet per octet: 160 alone, 153 a part; UCS-2 and 8-bit data:
140 octets alone, 134 a part). A short_message with a UDH (esm_class UDHI) or SAR TLVs is
already one part of a concatenated message: one segment. A submit_multi costs its segments
once per destination. Bytes we cannot read count as one (the checks after us refuse them).
"""

from __future__ import annotations

from gateway.errors import MalformedPduError
from gateway.smpp.fields import submit_multi_dests
from gateway.smpp.pdu import DATA_SM, ESM_UDHI, HEADER_SIZE, SUBMIT_MULTI, TAG_MESSAGE_PAYLOAD, TLV

TAG_SAR_TOTAL_SEGMENTS = 0x020E
GSM_SINGLE, GSM_PART = 160, 153
OCTET_SINGLE, OCTET_PART = 140, 134


def octets_per_segment(data_coding: int) -> tuple[int, int]:
    """(octets of a single-segment message, octets of one part of a concatenated one)."""
    if data_coding in (0x02, 0x04, 0x08) or (data_coding & 0xF0 == 0xF0 and data_coding & 0x04):
        return OCTET_SINGLE, OCTET_PART  # 8-bit data or UCS-2: octets as sent
    return GSM_SINGLE, GSM_PART  # default alphabet, IA5, Latin-1: one octet per character


def count(data_coding: int, octets: int) -> int:
    single, part = octets_per_segment(data_coding)
    return 1 if octets <= single else -(-octets // part)


# a PDU shorter than this cannot carry more than 140 octets of text (data_sm: 16 header + 14
# body octets at least, with the message_payload TLV header; submit_sm needs 17): one segment
ONE_SEGMENT_BELOW = 16 + 14 + OCTET_SINGLE + 1


def mt_segments(raw: bytes) -> int:
    """Segments of a submit_sm, data_sm or submit_multi (see the module docstring)."""
    try:
        if len(raw) < ONE_SEGMENT_BELOW and raw[7] != 0x21:  # submit_multi: once per destination
            return 1
        command = int.from_bytes(raw[4:8], "big")
        if command == SUBMIT_MULTI:
            dests, _, end = submit_multi_dests(raw)
            return max(1, len(dests)) * _after_dests(raw, end)
        index = raw.index
        pos = index(0, HEADER_SIZE, HEADER_SIZE + 6) + 3  # service_type, source ton/npi
        pos = index(0, pos, pos + 65) + 3  # source_addr, dest ton/npi
        pos = index(0, pos, pos + 65) + 1  # destination_addr: pos is at esm_class
        if command == DATA_SM:  # esm_class, registered_delivery, data_coding, TLVs
            return _segments(raw, raw[pos], raw[pos + 2], 0, pos + 3)
        return _after_dests(raw, pos)
    except (ValueError, IndexError, MalformedPduError):
        return 1


def _after_dests(raw: bytes, pos: int) -> int:
    """submit_sm / submit_multi from esm_class on."""
    esm_class = raw[pos]
    index = raw.index
    q = index(0, pos + 3, pos + 20) + 1  # protocol_id, priority_flag, schedule_delivery_time
    q = index(0, q, q + 17) + 1  # validity_period: q is at registered_delivery
    sm_length = raw[q + 4]
    return _segments(raw, esm_class, raw[q + 2], sm_length, q + 5 + sm_length)


def _segments(raw: bytes, esm_class: int, data_coding: int, octets: int, tlvs: int) -> int:
    if esm_class & ESM_UDHI:
        return 1
    end = len(raw)
    while tlvs + 4 <= end:
        tag, length = TLV.unpack_from(raw, tlvs)
        if tag == TAG_SAR_TOTAL_SEGMENTS:
            return 1
        if tag == TAG_MESSAGE_PAYLOAD:
            octets = length
        tlvs += 4 + length
    return count(data_coding, octets)
