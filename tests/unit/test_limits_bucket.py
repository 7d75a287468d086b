"""The token bucket over an injected clock, and segment counting from the bytes. Pure."""

from __future__ import annotations

import math
import struct

import pytest

from gateway.limits.bucket import TokenBucket
from gateway.smpp import pdu as P
from gateway.smpp.segments import count, mt_segments


def passed(bucket: TokenBucket, times: list[float], cost: float = 1.0) -> int:
    return sum(bucket.take(t, cost) for t in times)


def test_starts_full_then_refuses_beyond_the_burst() -> None:
    bucket = TokenBucket(20, 20, now=100.0)
    assert passed(bucket, [100.0] * 100) == 20


def test_refills_at_the_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(10, 5, now=0.0)
    assert passed(bucket, [0.0] * 5) == 5
    assert not bucket.take(0.05)
    assert bucket.take(0.1)  # one token in 0.1 s
    assert not bucket.take(0.1)
    assert passed(bucket, [100.0] * 10) == 5  # a long idle holds at most the burst


@pytest.mark.parametrize("rate, burst", [(20, 20), (50, 5), (1000, 100), (3.5, 1)])
def test_any_interval_holds_at_most_burst_plus_rate_times_length(rate: float, burst: float) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    step = 1 / (rate * 7)  # asking far faster than the rate
    times = [i * step for i in range(int(rate * 7 * 3))]
    ok = [t for t in times if bucket.take(t)]
    for i, start in enumerate(ok):
        within = sum(1 for t in ok[i:] if t <= start + 1.0)
        assert within <= burst + rate + 1e-9
    assert len(ok) >= (burst + rate * times[-1]) * 0.85 - 1  # and it does give (about) the rate


def test_cost_counts_segments_and_a_full_bucket_lets_an_oversized_one_through() -> None:
    bucket = TokenBucket(1, 5, now=0.0)
    assert bucket.take(0.0, 3)
    assert not bucket.take(0.0, 3)  # 2 left
    assert bucket.take(0.0, 2)
    big = TokenBucket(1, 5, now=0.0)
    assert big.take(0.0, 8)  # more than the burst: only from a full bucket, then owed
    assert big.tokens == pytest.approx(-3.0)
    assert not big.take(2.0)  # -1: the debt is paid first
    assert big.take(4.0)


def test_delay_says_when_the_next_take_succeeds() -> None:
    bucket = TokenBucket(4, 1, now=0.0)
    assert bucket.delay(0.0) == 0.0
    assert bucket.take(0.0)
    assert bucket.delay(0.0) == pytest.approx(0.25)
    assert not bucket.take(0.2)
    assert bucket.take(0.25)


def test_set_rate_changes_the_pace_and_caps_the_tokens() -> None:
    bucket = TokenBucket(100, 100, now=0.0)
    bucket.set_rate(10, 10, now=0.0)
    assert passed(bucket, [0.0] * 50) == 10
    assert passed(bucket, [1.0] * 50) == 10
    bucket.set_rate(100, 100, now=1.0)
    assert passed(bucket, [1.5] * 100) == 50


def test_refund_gives_back_what_was_not_sent() -> None:
    bucket = TokenBucket(1, 2, now=0.0)
    assert passed(bucket, [0.0] * 3) == 2
    bucket.refund()
    assert bucket.take(0.0)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (1, 0.5), (1, math.nan)])
def test_bad_rates_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


# --- segments ------------------------------------------------------------------------

def _addr(addr: bytes) -> bytes:
    return b"\x01\x01" + addr + b"\x00"


def submit_sm(text: bytes, data_coding: int = 0, esm_class: int = 0, tlvs: bytes = b"") -> bytes:
    body = (b"\x00" + _addr(b"14155550100") + _addr(b"14155550123") + bytes([esm_class, 0, 0])
            + b"\x00\x00" + bytes([0, 0, data_coding, 0, len(text)]) + text + tlvs)
    return P.encode(P.SUBMIT_SM, 0, 1, body)


def payload(n: int) -> bytes:
    return struct.pack("!HH", P.TAG_MESSAGE_PAYLOAD, n) + b"a" * n


def data_sm(n: int, data_coding: int = 0) -> bytes:
    body = b"\x00" + _addr(b"14155550100") + _addr(b"14155550123") + bytes([0, 0, data_coding]) + payload(n)
    return P.encode(P.DATA_SM, 0, 1, body)


def submit_multi(dests: int, text: bytes) -> bytes:
    body = (b"\x00" + _addr(b"14155550100") + bytes([dests]) + b"".join(b"\x01" + _addr(b"1415555%04d" % i)
            for i in range(dests)) + b"\x00\x00\x00" + b"\x00\x00" + bytes([0, 0, 0, 0, len(text)]) + text)
    return P.encode(P.SUBMIT_MULTI, 0, 1, body)


@pytest.mark.parametrize("data_coding, octets, expected", [
    (0, 0, 1), (0, 160, 1), (0, 161, 2), (0, 306, 2), (0, 307, 3), (1, 459, 3), (3, 200, 2),
    (8, 140, 1), (8, 141, 2), (8, 268, 2), (8, 269, 3), (4, 140, 1), (4, 141, 2), (0xF4, 141, 2), (0xF0, 161, 2)])
def test_count_by_data_coding(data_coding: int, octets: int, expected: int) -> None:
    assert count(data_coding, octets) == expected


def test_mt_segments_reads_the_bytes() -> None:
    assert mt_segments(submit_sm(b"hi")) == 1
    assert mt_segments(submit_sm(b"x" * 200)) == 2  # an over-long short_message is split too
    assert mt_segments(submit_sm(b"\x05\x00\x03\x01\x02\x01" + b"x" * 134, esm_class=P.ESM_UDHI)) == 1
    sar = struct.pack("!HHB", 0x020E, 1, 3)
    assert mt_segments(submit_sm(b"x" * 150, tlvs=sar)) == 1  # one SAR part
    assert mt_segments(submit_sm(b"", tlvs=payload(400))) == 3
    assert mt_segments(submit_sm(b"", data_coding=8, tlvs=payload(400))) == 3
    assert mt_segments(submit_sm(b"", data_coding=8, tlvs=payload(600))) == 5
    assert mt_segments(data_sm(100)) == 1
    assert mt_segments(data_sm(1000)) == 7
    assert mt_segments(data_sm(1000, data_coding=8)) == 8
    assert mt_segments(data_sm(140, data_coding=8)) == 1
    assert mt_segments(data_sm(141, data_coding=8)) == 2  # the shortest PDU that can hold two
    assert mt_segments(submit_multi(2, b"")) == 2  # short, but once per destination
    assert mt_segments(submit_multi(3, b"hi")) == 3
    assert mt_segments(submit_multi(2, b"x" * 200)) == 4


@pytest.mark.parametrize("raw", [b"", P.encode(P.SUBMIT_SM, 0, 1, b"\x00\x01"), P.encode(P.DATA_SM, 0, 1, b""),
                                 P.encode(P.SUBMIT_MULTI, 0, 1, b"\x00\x01\x01\x00\x09")])
def test_unreadable_bytes_count_one(raw: bytes) -> None:
    assert mt_segments(raw) == 1
