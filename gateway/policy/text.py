"""MO text decoding and reply encoding/segmentation (GSM 03.38, ASCII, Latin-1, UCS-2).

Decoding never raises: text that cannot be decoded is None and the MO is forwarded as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiosmpplib.codec import GSM7BitCodec, find_codec_info

ESM_UDHI = 0x40
IE_CONCAT_8 = 0x00
IE_CONCAT_16 = 0x08
DC_DEFAULT = 0x00
DC_ASCII = 0x01
DC_LATIN1 = 0x03
DC_UCS2 = 0x08
GSM_ESCAPE = 0x1B
GSM_SINGLE, GSM_SEGMENT = 160, 153  # septets (one octet each, unpacked)
OCTET_SINGLE, OCTET_SEGMENT = 140, 134
MAX_SEGMENTS = 255


@dataclass(frozen=True, slots=True)
class DecodedText:
    text: str | None  # None when the alphabet is unsupported or the bytes are invalid
    is_segment: bool  # part of a longer concatenated message: never a keyword
    udh: bytes = b""  # the user data header that was stripped, if any


def split_udh(payload: bytes) -> tuple[bytes, bytes] | None:
    """(udh including its length octet, body); None when the UDH overruns the payload."""
    if not payload:
        return None
    end = 1 + payload[0]
    if end > len(payload):
        return None
    return payload[:end], payload[end:]


def udh_is_segment(udh: bytes) -> bool:
    """True when a concatenation IE (0x00 or 0x08) says the message has more than one part."""
    pos = 1
    while pos + 2 <= len(udh):
        iei, length = udh[pos], udh[pos + 1]
        data = udh[pos + 2 : pos + 2 + length]
        if iei == IE_CONCAT_8 and length == 3 and len(data) == 3:
            return data[1] > 1
        if iei == IE_CONCAT_16 and length == 4 and len(data) == 4:
            return data[2] > 1
        pos += 2 + length
    return False


def sar_is_segment(total_segments: bytes | None) -> bool:
    """True when a sar_total_segments TLV value says the message has more than one part.

    SMPP 3.4 5.3.2.23: a total of 1 is a whole message, as a UDH concatenation IE with
    total 1 is; a missing or empty TLV is no segment either.
    """
    return bool(total_segments) and int.from_bytes(total_segments or b"", "big") > 1


def alphabet_of(data_coding: int, default_alphabet: str) -> str | None:
    """Codec name for a data_coding, or None when it is binary, compressed or unsupported."""
    if data_coding == DC_DEFAULT:
        return default_alphabet
    simple = {DC_ASCII: "ascii", DC_LATIN1: "latin-1", DC_UCS2: "ucs2"}
    if data_coding in simple:
        return simple[data_coding]
    if 0x10 <= data_coding <= 0x1F:  # GSM general coding with a message class, uncompressed
        return {0x00: "gsm0338", 0x08: "ucs2"}.get(data_coding & 0x0C)
    if 0xF0 <= data_coding <= 0xF3:  # GSM coding/message class group, 7-bit default
        return "gsm0338"
    return None


def decode_text(
    data_coding: int,
    esm_class: int,
    payload: bytes,
    default_alphabet: str = "gsm0338",
    has_sar: bool = False,
) -> DecodedText:
    """Decode short_message or message_payload as carriers send it; never raises.

    has_sar: the SAR TLVs say this is one part of several (see sar_is_segment).
    """
    udh = b""
    if esm_class & ESM_UDHI:
        parts = split_udh(payload)
        if parts is None:
            return DecodedText(None, has_sar)
        udh, payload = parts
    is_segment = has_sar or udh_is_segment(udh)
    alphabet = alphabet_of(data_coding, default_alphabet)
    if alphabet is None or (alphabet == "ucs2" and len(payload) % 2):
        return DecodedText(None, is_segment, udh)
    try:
        text, _ = find_codec_info(alphabet).decode(payload, "strict")
    except Exception:  # noqa: BLE001 - any codec failure means "undecodable", never a crash
        return DecodedText(None, is_segment, udh)
    return DecodedText(str(text), is_segment, udh)


def encode_reply(text: str, default_alphabet: str = "gsm0338") -> tuple[int, bytes]:
    """(data_coding, bytes): GSM 03.38 (0) if it fits and is the SMSC default, else UCS-2 (8)."""
    if default_alphabet == "gsm0338" and GSM7BitCodec.is_gsm_text(text):
        return DC_DEFAULT, GSM7BitCodec().encode(text)[0]
    return DC_UCS2, text.encode("utf-16-be", "surrogatepass")


def _gsm_cuts(encoded: bytes, size: int) -> list[int]:
    cuts, start, pos = [0], 0, 0
    while pos < len(encoded):
        width = 2 if encoded[pos] == GSM_ESCAPE and pos + 1 < len(encoded) else 1
        if pos + width - start > size:
            cuts.append(pos)
            start = pos
        pos += width
    return cuts


def _ucs2_cuts(encoded: bytes, size: int) -> list[int]:
    cuts, start, pos = [0], 0, 0
    while pos < len(encoded):
        high = 0xD8 <= encoded[pos] <= 0xDB and pos + 3 < len(encoded)
        width = 4 if high else 2
        if pos + width - start > size:
            cuts.append(pos)
            start = pos
        pos += width
    return cuts


def segment(data_coding: int, encoded: bytes, ref: int) -> list[bytes]:
    """Concatenated-SMS short_messages (UDH 05 00 03 ref total seq), or [encoded] when it fits.

    GSM (0): 160 septets single, 153 per segment, an escape pair never split.
    UCS-2 (8): 140/134 octets, a surrogate pair never split. Other: 140/134 octets.
    Raises ValueError above 255 segments (replies are at most 320 characters).
    """
    gsm = data_coding == DC_DEFAULT
    single, size = (GSM_SINGLE, GSM_SEGMENT) if gsm else (OCTET_SINGLE, OCTET_SEGMENT)
    if len(encoded) <= single:
        return [encoded]
    if gsm:
        cuts = _gsm_cuts(encoded, size)
    elif data_coding == DC_UCS2:
        cuts = _ucs2_cuts(encoded, size)
    else:
        cuts = list(range(0, len(encoded), size))
    if len(cuts) > MAX_SEGMENTS:
        raise ValueError(f"{len(cuts)} segments: more than {MAX_SEGMENTS}")
    bounds = [*cuts, len(encoded)]
    total = len(cuts)
    return [
        bytes([5, IE_CONCAT_8, 3, ref & 0xFF, total, seq + 1])
        + encoded[bounds[seq] : bounds[seq + 1]]
        for seq in range(total)
    ]
