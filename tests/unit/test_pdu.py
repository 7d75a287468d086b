"""Framer and field decoders: table tests plus hypothesis on arbitrary bytes."""

from __future__ import annotations

import struct

import pytest
from aiosmpplib import NPI, TON, PhoneNumber, SubmitSm
from hypothesis import given, settings
from hypothesis import strategies as hs

from gateway.errors import FramingError, MalformedPduError
from gateway.smpp import fields as F
from gateway.smpp import pdu as P


def submit(src: str = "14155550100", dst: str = "14155550123", text: str = "hello") -> bytes:
    msg = SubmitSm(
        short_message=text,
        source=PhoneNumber(src, TON.INTERNATIONAL, NPI.ISDN),
        destination=PhoneNumber(dst, TON.INTERNATIONAL, NPI.ISDN),
        registered_delivery=1,
        sequence_num=7,
    )
    return msg.pdu()


def test_framer_splits_and_joins_across_reads() -> None:
    raw = submit() + P.encode(P.ENQUIRE_LINK, 0, 9)
    framer = P.Framer()
    out = []
    for i in range(len(raw)):
        out += framer.feed(raw[i : i + 1])
    assert [p.command_id for p in out] == [P.SUBMIT_SM, P.ENQUIRE_LINK]
    assert b"".join(p.raw for p in out) == raw
    assert framer.buffered == 0


@pytest.mark.parametrize("length", [0, 15, 0xFFFFFFFF, P.MAX_PDU + 1])
def test_framer_rejects_impossible_lengths(length: int) -> None:
    with pytest.raises(FramingError) as info:
        P.Framer().feed(struct.pack("!IIII", length, P.SUBMIT_SM, 0, 42))
    assert info.value.sequence_number == 42  # type: ignore[attr-defined]


def test_with_sequence_changes_only_the_sequence() -> None:
    raw = submit()
    pdu = P.Framer().feed(raw)[0]
    out = pdu.with_sequence(0x01020304)
    assert out[:12] == raw[:12] and out[16:] == raw[16:]
    assert struct.unpack("!I", out[12:16])[0] == 0x01020304


def test_submit_addresses() -> None:
    src, dst = F.submit_addresses(submit())
    assert (src.ton, src.npi, src.addr) == (1, 1, b"14155550100")
    assert (dst.ton, dst.npi, dst.addr) == (1, 1, b"14155550123")


def test_parse_short_message_fields() -> None:
    sm = F.parse_short_message(submit(text="STOP"))
    assert sm.short_message == b"STOP" and sm.registered_delivery == 1 and sm.data_coding == 0
    assert not sm.is_receipt


def test_submit_multi_roundtrip_removing_a_destination() -> None:
    body = (
        b"\x00" + b"\x01\x01" + b"100\x00" + b"\x03"
        + b"\x01\x01\x01111\x00" + b"\x02list\x00" + b"\x01\x01\x01333\x00"
        + b"\x00\x00\x00" + b"\x00\x00" + b"\x01\x00" + b"\x00\x00" + b"\x02hi"
    )
    raw = P.encode(P.SUBMIT_MULTI, 0, 5, body)
    dests, count_at, end = F.submit_multi_dests(raw)
    assert [d.flag for d in dests] == [1, 2, 1]
    assert dests[2].address is not None and dests[2].address.addr == b"333"
    out = F.submit_multi_without(raw, [dests[0], dests[2]], count_at, end)
    again, _, _ = F.submit_multi_dests(out)
    assert [d.address.addr for d in again if d.address] == [b"111", b"333"]
    assert out.endswith(b"\x02hi") and struct.unpack("!I", out[:4])[0] == len(out)


def test_receipt_message_id_from_tlv_and_text() -> None:
    text = b"id:abc123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011200 stat:DELIVRD err:000"
    sm = F.ShortMessage(b"", F.Address(1, 1, b"1"), F.Address(1, 1, b"2"), 4, 0, 0, text, {})
    assert F.receipt_message_id(sm) == b"abc123"
    sm2 = F.ShortMessage(b"", F.Address(1, 1, b"1"), F.Address(1, 1, b"2"), 4, 0, 0, text,
                         {P.TAG_RECEIPTED_MESSAGE_ID: b"XYZ\x00"})
    assert F.receipt_message_id(sm2) == b"XYZ"


@settings(max_examples=400, deadline=None)
@given(hs.lists(hs.binary(max_size=80), max_size=8))
def test_framer_never_raises_anything_but_framing_error(chunks: list[bytes]) -> None:
    framer = P.Framer(max_pdu=4096)
    try:
        for chunk in chunks:
            for pdu in framer.feed(chunk):
                assert len(pdu.raw) >= 16
    except FramingError:
        pass


PARSERS = [F.parse_short_message, F.parse_data_sm, F.parse_bind, F.submit_addresses,
           F.submit_multi_dests, F.parse_submit_multi_resp, F.response_message_id]


@settings(max_examples=300, deadline=None)
@given(hs.binary(max_size=300), hs.sampled_from(PARSERS))
def test_body_decoders_raise_only_malformed(body: bytes, parse: object) -> None:
    raw = P.encode(P.SUBMIT_SM, 0, 1, body)
    try:
        parse(raw)  # type: ignore[operator]
    except MalformedPduError:
        pass


@settings(max_examples=200, deadline=None)
@given(hs.binary(max_size=200))
def test_mutated_valid_submit_parses_or_raises_malformed(noise: bytes) -> None:
    raw = bytearray(submit())
    for i, b in enumerate(noise):
        raw[16 + (i * 7) % (len(raw) - 16)] = b
    try:
        F.parse_short_message(bytes(raw))
    except MalformedPduError:
        pass


def test_wants_receipt_reads_registered_delivery() -> None:
    with_receipt = submit()
    assert F.wants_receipt(with_receipt)
    msg = SubmitSm(short_message="x", source=PhoneNumber("1"), destination=PhoneNumber("2"), registered_delivery=0)
    assert not F.wants_receipt(msg.pdu())
    data_sm = P.encode(P.DATA_SM, 0, 1, b"\x00\x01\x01a\x00\x01\x01b\x00" + b"\x00\x01\x00")
    assert F.wants_receipt(data_sm)
    assert F.wants_receipt(b"\x00" * 20)  # unparseable: keep the route


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.binary(max_size=300), min_size=1, max_size=6), hs.data())
def test_any_chunking_yields_the_same_pdus(bodies: list[bytes], data: hs.DataObject) -> None:
    stream = b"".join(P.encode(P.SUBMIT_SM, 0, n + 1, body) for n, body in enumerate(bodies))
    cuts = sorted(data.draw(hs.lists(hs.integers(0, len(stream)), max_size=20)))
    framer = P.Framer()
    out: list[P.Pdu] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        out += framer.feed(stream[start:end])
    assert [p.raw for p in out] == [P.encode(P.SUBMIT_SM, 0, n + 1, b) for n, b in enumerate(bodies)]
    assert framer.buffered == 0
