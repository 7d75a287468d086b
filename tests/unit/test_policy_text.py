"""MO decoding (data_coding, UDH, segments) and reply encoding/segmentation."""

from __future__ import annotations

import pytest
from aiosmpplib.codec import GSM7BitCodec
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.text import (
    DecodedText,
    decode_text,
    encode_reply,
    segment,
    split_udh,
    udh_is_segment,
)

CONCAT_2_OF_1 = b"\x05\x00\x03\x2a\x02\x01"
CONCAT16_2_OF_2 = b"\x06\x08\x04\x01\x2a\x02\x02"


@pytest.mark.parametrize(
    "dc, esm, payload, expected",
    [
        (0, 0, b"STOP", DecodedText("STOP", False)),
        (0, 0, b"Arr\x05t", DecodedText("Arrét", False)),  # GSM 03.38 é
        (0, 0, b"\x1b\x65 STOP", DecodedText("€ STOP", False)),  # escape pair
        (0, 0, b"STOP\x1b", DecodedText(None, False)),  # dangling escape
        (0, 0, b"\x80STOP", DecodedText(None, False)),  # not 7-bit
        (1, 0, b"Stop", DecodedText("Stop", False)),
        (1, 0, b"St\xf6p", DecodedText(None, False)),
        (3, 0, b"arr\xeat", DecodedText("arrêt", False)),
        (8, 0, "ＳＴＯＰ".encode("utf-16-be"), DecodedText("ＳＴＯＰ", False)),
        (8, 0, "stop 🛑".encode("utf-16-be"), DecodedText("stop 🛑", False)),
        (8, 0, b"\x00S\x00", DecodedText(None, False)),  # odd length
        (8, 0, b"\xd8\x3d\x00S", DecodedText(None, False)),  # lone surrogate
        (0x18, 0, "stop".encode("utf-16-be"), DecodedText("stop", False)),  # UCS-2 with class
        (0x10, 0, b"STOP", DecodedText("STOP", False)),
        (0xF0, 0, b"STOP", DecodedText("STOP", False)),
        (0xF4, 0, b"STOP", DecodedText(None, False)),  # 8-bit data
        (2, 0, b"STOP", DecodedText(None, False)),  # binary
        (4, 0, b"STOP", DecodedText(None, False)),
        (0x30, 0, b"STOP", DecodedText(None, False)),  # compressed
        (0, 0x40, CONCAT_2_OF_1 + b"STOP", DecodedText("STOP", True, CONCAT_2_OF_1)),
        (
            8,
            0x40,
            CONCAT16_2_OF_2 + "stop".encode("utf-16-be"),
            DecodedText("stop", True, CONCAT16_2_OF_2),
        ),
        (
            0,
            0x40,
            b"\x05\x00\x03\x2a\x01\x01STOP",
            DecodedText("STOP", False, b"\x05\x00\x03\x2a\x01\x01"),
        ),
        (
            0,
            0x40,
            b"\x03\x24\x01\x01STOP",
            DecodedText("STOP", False, b"\x03\x24\x01\x01"),
        ),  # other IE
        (0, 0x40, b"\x09\x00\x03", DecodedText(None, False)),  # UDH overruns
        (0, 0x40, b"", DecodedText(None, False)),
        (0, 0, b"", DecodedText("", False)),
    ],
)
def test_decode_text(dc: int, esm: int, payload: bytes, expected: DecodedText) -> None:
    assert decode_text(dc, esm, payload) == expected


def test_decode_sar_is_segment() -> None:
    assert decode_text(0, 0, b"STOP", has_sar=True) == DecodedText("STOP", True)


@pytest.mark.parametrize(
    "alphabet, payload, text",
    [("latin-1", b"arr\xeat", "arrêt"), ("ascii", b"STOP", "STOP"), ("gsm0338", b"\x05", "é")],
)
def test_decode_configured_default_alphabet(alphabet: str, payload: bytes, text: str) -> None:
    assert decode_text(0, 0, payload, alphabet).text == text


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300), st.booleans())
def test_decode_never_raises(dc: int, esm: int, payload: bytes, sar: bool) -> None:
    result = decode_text(dc, esm, payload, has_sar=sar)
    assert result.text is None or isinstance(result.text, str)


def test_split_udh() -> None:
    assert split_udh(CONCAT_2_OF_1 + b"x") == (CONCAT_2_OF_1, b"x")
    assert split_udh(b"") is None
    assert split_udh(b"\x05\x00") is None
    assert udh_is_segment(CONCAT_2_OF_1)
    assert not udh_is_segment(b"\x00")


@pytest.mark.parametrize(
    "text, dc",
    [
        ("You have been unsubscribed. Reply START to resubscribe.", 0),
        ("Prices in €, [info] {ok}", 0),
        ("Vous êtes désabonné.", 8),  # ê is not GSM
        ("Te has dado de baja. Responde INICIO.", 0),
        ("停止 🛑", 8),
    ],
)
def test_encode_reply(text: str, dc: int) -> None:
    got_dc, data = encode_reply(text)
    assert got_dc == dc
    assert decode_text(got_dc, 0, data).text == text


def test_encode_reply_non_gsm_smsc_default_uses_ucs2() -> None:
    assert encode_reply("STOP", "latin-1") == (8, "STOP".encode("utf-16-be"))


def reassemble(parts: list[bytes]) -> bytes:
    if len(parts) == 1:
        return parts[0]
    body = b""
    for seq, part in enumerate(parts, 1):
        udh, chunk = part[:6], part[6:]
        assert udh == bytes([5, 0, 3, 0x2A, len(parts), seq])
        body += chunk
    return body


@pytest.mark.parametrize(
    "text, sizes",
    [
        ("a" * 160, [160]),
        ("a" * 161, [159, 14]),
        ("a" * 306, [159, 159]),
        ("a" * 152 + "€" + "a" * 10, [158, 18]),  # the escape pair moves to segment 2 whole
        ("€" * 80, [160]),
        ("ê" * 70, [140]),  # UCS-2 single
        ("日" * 71, [140, 14]),
        ("ê" * 66 + "🛑" + "bbb", [138, 16]),  # 134 octets would split the surrogate pair
    ],
)
def test_segment_sizes(text: str, sizes: list[int]) -> None:
    dc, data = encode_reply(text)
    parts = segment(dc, data, 0x2A)
    assert [len(p) for p in parts] == sizes
    assert reassemble(parts) == data


REPLY_TEXT = st.text(
    alphabet=st.sampled_from(list("abc XYZ09.,€[]{}^|~\\éßÄ") + ["日", "🛑", "ê"]), max_size=700
)


@given(REPLY_TEXT, st.integers(0, 300))
def test_segment_round_trip(text: str, ref: int) -> None:
    dc, data = encode_reply(text)
    parts = segment(dc, data, ref)
    limit = 160 if dc == 0 else 140
    assert all(len(p) <= limit for p in parts)
    body = b"".join(p[6:] for p in parts) if len(parts) > 1 else parts[0]
    assert body == data
    if len(parts) > 1:
        assert all(p[:5] == bytes([5, 0, 3, ref & 0xFF, len(parts)]) for p in parts)
        for p in parts:  # each segment decodes on its own: no split escape or surrogate pair
            assert decode_text(dc, 0x40, p).text is not None
    decoded = "".join(decode_text(dc, 0x40 if len(parts) > 1 else 0, p).text or "" for p in parts)
    assert decoded == text


def test_segment_binary_octets() -> None:
    parts = segment(4, bytes(300), 1)
    assert [len(p) for p in parts] == [140, 140, 38]


def test_gsm_codec_is_unpacked() -> None:
    assert GSM7BitCodec().encode("STOP")[0] == b"STOP"


@pytest.mark.parametrize("value, expected", [
    (None, False), (b"", False), (b"\x01", False), (b"\x02", True), (b"\x00", False), (b"\xff", True)])
def test_sar_total_one_is_a_whole_message(value: bytes | None, expected: bool) -> None:
    from gateway.policy.text import sar_is_segment

    assert sar_is_segment(value) is expected
