"""Text and PDU bodies the simulator builds: deliver_sm for MOs and receipts, text decoding.

Pure functions over values. Text uses aiosmpplib's GSM 03.38 (unpacked, data_coding 0) and
UCS-2 (data_coding 8) codecs; the PDU bodies are assembled with our own `encode`/`cstring`
so addresses received as bytes go back out byte-identical.
"""

from __future__ import annotations

import struct
from datetime import datetime

from aiosmpplib.codec import GSM7BitCodec, UCS2Codec

from gateway.smpp.fields import (
    Address,
)
from gateway.smpp.pdu import (
    ESM_RECEIPT,
    ESM_UDHI,
    TAG_MESSAGE_PAYLOAD,
    TAG_MESSAGE_STATE,
    TAG_RECEIPTED_MESSAGE_ID,
    TLV,
    cstring,
)

DC_DEFAULT = 0x00  # SMSC default alphabet: GSM 03.38 here
DC_ASCII = 0x01
DC_LATIN1 = 0x03
DC_UCS2 = 0x08
MAX_SHORT_MESSAGE = 254
MESSAGE_STATE_DELIVERED = 2

_GSM = GSM7BitCodec()
_UCS2 = UCS2Codec()


def tlv(tag: int, value: bytes) -> bytes:
    return TLV.pack(tag, len(value)) + value


def encode_text(text: str, data_coding: int | None = None) -> tuple[int, bytes]:
    """(data_coding, octets): GSM 03.38 when encodable, else UCS-2, unless data_coding is given."""
    if data_coding is None:
        data_coding = DC_DEFAULT if GSM7BitCodec.is_gsm_text(text) else DC_UCS2
    if data_coding == DC_DEFAULT:
        return data_coding, _GSM.encode(text, "replace")[0]
    if data_coding == DC_UCS2:
        return data_coding, _UCS2.encode(text, "strict")[0]
    if data_coding == DC_ASCII:
        return data_coding, text.encode("ascii", "replace")
    return data_coding, text.encode("latin-1", "replace")


def decode_text(data_coding: int, octets: bytes, esm_class: int = 0) -> str:
    """Best-effort text for humans (demo listing, receipt excerpt); never raises."""
    if esm_class & ESM_UDHI and octets:
        octets = octets[octets[0] + 1 :]
    try:
        if data_coding == DC_DEFAULT:
            return str(_GSM.decode(octets, "replace")[0])
        if data_coding == DC_UCS2:
            return str(_UCS2.decode(octets[: len(octets) & ~1], "replace")[0])
        if data_coding == DC_ASCII:
            return octets.decode("ascii", "replace")
    except (UnicodeError, ValueError, TypeError):
        pass
    return octets.decode("latin-1")


def deliver_sm_body(
    source: Address,
    destination: Address,
    data_coding: int,
    short_message: bytes,
    *,
    esm_class: int = 0,
    tlvs: bytes = b"",
) -> bytes:
    """deliver_sm body (4.6.1); octets over 254 go in message_payload with sm_length 0."""
    payload_tlv = b""
    if len(short_message) > MAX_SHORT_MESSAGE:
        payload_tlv = tlv(TAG_MESSAGE_PAYLOAD, short_message)
        short_message = b""
    return b"".join(
        (
            cstring(b""),  # service_type
            bytes((source.ton, source.npi)),
            cstring(source.addr),
            bytes((destination.ton, destination.npi)),
            cstring(destination.addr),
            bytes((esm_class, 0, 0)),  # esm_class, protocol_id, priority_flag
            cstring(b""),  # schedule_delivery_time
            cstring(b""),  # validity_period
            bytes((0, 0, data_coding, 0, len(short_message))),
            short_message,
            payload_tlv,
            tlvs,
        )
    )


def smpp_date(moment: datetime) -> str:
    return moment.strftime("%y%m%d%H%M")


def receipt_text(message_id: str, submitted: datetime, done: datetime, excerpt: str) -> str:
    """Appendix B receipt text, as most SMSCs format it."""
    return (
        f"id:{message_id} sub:001 dlvrd:001 submit date:{smpp_date(submitted)}"
        f" done date:{smpp_date(done)} stat:DELIVRD err:000 text:{excerpt[:20]}"
    )


def receipt_body(
    message_id: str,
    mobile: Address,
    originator: Address,
    submitted: datetime,
    done: datetime,
    excerpt: str,
) -> bytes:
    """deliver_sm receipt from the mobile back to the originator, with both receipt TLVs."""
    text = receipt_text(message_id, submitted, done, excerpt)
    _, octets = encode_text(text, DC_DEFAULT)
    tlvs = tlv(TAG_RECEIPTED_MESSAGE_ID, cstring(message_id)) + tlv(
        TAG_MESSAGE_STATE, struct.pack("!B", MESSAGE_STATE_DELIVERED)
    )
    return deliver_sm_body(
        mobile, originator, DC_DEFAULT, octets, esm_class=ESM_RECEIPT, tlvs=tlvs
    )


def query_sm_message_id(raw: bytes, header_size: int = 16) -> bytes:
    """message_id of query_sm (4.8.1); b'' when absent or unterminated."""
    end = raw.find(b"\x00", header_size, header_size + 65)
    return raw[header_size:end] if end >= 0 else b""


def query_sm_resp_body(message_id: bytes) -> bytes:
    """message_id, final_date (empty), message_state DELIVERED, error_code 0 (4.8.2)."""
    return cstring(message_id) + cstring(b"") + bytes((MESSAGE_STATE_DELIVERED, 0))
