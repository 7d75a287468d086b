"""fields.mt_scan (one regular expression) reads exactly what the five-index scan it replaced read,
and refuses exactly what it refused, on any bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as s

from gateway.errors import MalformedPduError
from gateway.smpp import fields as F
from gateway.smpp import pdu as P


def reference(raw: bytes) -> F.MtScan | None:
    """The scan as it was (bytes.index with bounds); None where it raised."""
    try:
        index = raw.index
        pos = index(0, 16, 22) + 1
        src_ton = raw[pos]
        src_end = index(0, pos + 2, pos + 67)
        dst_ton = raw[src_end + 1]
        dst_end = index(0, src_end + 3, src_end + 68)
        if raw[4:8] == b"\x00\x00\x01\x03":
            registered = raw[dst_end + 2]
        else:
            q = index(0, dst_end + 4, dst_end + 21) + 1
            registered = raw[index(0, q, q + 17) + 1]
        return src_ton, raw[pos + 2 : src_end], dst_ton, raw[src_end + 3 : dst_end], registered
    except (ValueError, IndexError):
        return None


def scan(raw: bytes) -> F.MtScan | None:
    try:
        return F.mt_scan(raw)
    except MalformedPduError:
        return None


field = s.one_of(s.binary(max_size=70).map(lambda b: b.replace(b"\x00", b"1")), s.just(b""))
octet = s.integers(0, 255).map(lambda i: bytes([i]))


@s.composite
def bodies(draw: s.DrawFn) -> bytes:
    """Mostly well-formed fields (with lengths around every bound), sometimes cut or noisy."""
    parts = [draw(field)[:draw(s.integers(0, 7))] + b"\x00", draw(octet), draw(octet), draw(field) + b"\x00",
             draw(octet), draw(octet), draw(field) + b"\x00", draw(octet), draw(octet), draw(octet),
             draw(field)[:draw(s.integers(0, 18))] + b"\x00", draw(field)[:draw(s.integers(0, 18))] + b"\x00",
             draw(octet), draw(s.binary(max_size=8))]
    body = b"".join(parts)
    return body[:draw(s.integers(0, len(body)))] if draw(s.booleans()) else body


@settings(max_examples=3000, deadline=None)
@given(body=s.one_of(bodies(), s.binary(max_size=200)), command=s.sampled_from([P.SUBMIT_SM, P.DATA_SM]))
def test_mt_scan_matches_the_index_scan(body: bytes, command: int) -> None:
    raw = P.encode(command, 0, 1, body)
    assert scan(raw) == reference(raw)


def test_mt_scan_examples() -> None:
    ok = P.encode(P.SUBMIT_SM, 0, 1, b"\x00\x01\x01123\x00\x01\x01456\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00")
    assert F.mt_scan(ok) == (1, b"123", 1, b"456", 1)
    assert scan(ok[:-5]) is None  # cut before registered_delivery


digits = s.text("0123456789", min_size=0, max_size=17).map(str.encode)


@s.composite
def submits(draw: s.DrawFn) -> bytes:
    """submit_sm bodies around what hotpath takes: destinations of every TON and digit count."""
    body = (draw(field)[:draw(s.integers(0, 7))] + b"\x00" + draw(octet) + draw(octet) + draw(field) + b"\x00"
            + draw(s.sampled_from([b"\x01", b"\x00", b"\x02"])) + draw(octet)
            + draw(s.one_of(digits, field)) + b"\x00" + draw(octet) * 3
            + draw(field)[:draw(s.integers(0, 18))] + b"\x00" + draw(field)[:draw(s.integers(0, 18))] + b"\x00"
            + draw(octet) + draw(s.binary(max_size=8)))
    return body[:draw(s.integers(0, len(body)))] if draw(s.booleans()) else body


@settings(max_examples=3000, deadline=None)
@given(body=s.one_of(submits(), bodies(), s.binary(max_size=200)))
def test_fast_submit_scan_reads_a_subset_as_mt_scan_and_mobile_key_do(body: bytes) -> None:
    """hotpath forwards what fast_submit_scan matches without mt_scan or mobile_key: it may match only
    what they read the same way, with the destination as the international mobile it keys."""
    from gateway.policy.numbers import mobile_key, plan_for_region

    raw = P.encode(P.SUBMIT_SM, 0, 1, body)
    m = F.fast_submit_scan(raw, 16, len(raw))
    if m is None:
        return
    source, dst, registered = m.groups()
    src_ton, src, dst_ton, dst_addr, reg = F.mt_scan(raw)
    assert (src_ton, src, dst_ton, dst_addr, reg) == (source[0], source[2:], 1, dst, registered[0])
    assert mobile_key(dst_ton, dst_addr, plan_for_region("US")) == int(dst)


def test_fast_submit_scan_takes_the_plain_international_submit() -> None:
    body = b"\x00\x01\x0114155550100\x00\x01\x0114155550123\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00"
    m = F.fast_submit_scan(P.encode(P.SUBMIT_SM, 0, 1, body), 16, 16 + len(body))
    assert m is not None and m.groups() == (b"\x01\x0114155550100", b"14155550123", b"\x01")
    for dst in (b"014155550123", b"123456", b"1415555012345678"):  # leading 0, short code, too long
        other = body.replace(b"14155550123", dst)
        assert F.fast_submit_scan(P.encode(P.SUBMIT_SM, 0, 1, other), 16, 16 + len(other)) is None
