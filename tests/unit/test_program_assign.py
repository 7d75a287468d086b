"""Which program an MT belongs to: originating number, service_type, vendor TLV, default; defer's rewrite."""

from __future__ import annotations

import struct
import types

from gateway.compliance import assign, index_programs
from gateway.policy.compliance_settings import Program
from gateway.smpp import pdu as P
from gateway.smpp.schedule import parse_absolute, schedule_span, smpp_absolute, with_schedule


def _addr(addr: str) -> bytes:
    return b"\x01\x01" + addr.encode() + b"\x00"


def submit(service_type: bytes = b"", tlvs: bytes = b"", schedule: bytes = b"") -> bytes:
    body = (service_type + b"\x00" + _addr("14155550100") + _addr("14155550123") + b"\x00\x00\x00"
            + schedule + b"\x00" + b"\x00" + b"\x00\x00\x00\x00" + b"\x02hi" + tlvs)
    return P.encode(P.SUBMIT_SM, 0, 7, body)


ACCOUNT = types.SimpleNamespace(system_id="acme", programs=[
    Program(name="alerts", category="transactional", numbers=["+14155550100"]),
    Program(name="news", category="informational", service_types=["NEWS"]),
    Program(name="vip", category="marketing", tlv_tag=0x1420, tlv_value="vip", quiet_hours="defer"),
    Program(name="promo", category="marketing", default=True, quiet_hours="off"),
])
ENTRY = index_programs([ACCOUNT])["acme"]  # type: ignore[list-item]


def test_assignment_order() -> None:
    assert assign(ENTRY, "+14155550100", submit(b"NEWS")) == ("acme/alerts", "", 0x45)  # number first
    assert assign(ENTRY, "+14155550199", submit(b"NEWS")) == ("acme/news", "", 0x45)
    tlv = struct.pack("!HH", 0x1420, 3) + b"vip"
    assert assign(ENTRY, "+14155550199", submit(tlvs=tlv)) == ("acme/vip", "defer", 0x45)
    assert assign(ENTRY, "+14155550199", submit(b"OTHER")) == ("acme/promo", "", 0x45)  # default, quiet off


def test_defer_rewrites_only_the_schedule() -> None:
    raw = submit()
    at = 1796140800.0  # 2026-12-01 16:00 UTC
    span = schedule_span(raw)
    assert span is not None and span[0] == span[1]  # no schedule: an empty C-string
    out = with_schedule(raw, span, smpp_absolute(at))
    assert smpp_absolute(at) == b"261201160000000+"
    assert out.replace(b"261201160000000+", b"")[16:] == raw[16:]
    assert P.HEADER.unpack_from(out)[0] == len(out) and out[4:16] == raw[4:16]
    assert parse_absolute(b"261201170000004+") == at  # +1 hour as +04 quarter hours: the same instant
    earlier = submit(schedule=b"261201150000000+")
    span = schedule_span(earlier)
    assert span is not None
    assert with_schedule(earlier, span, smpp_absolute(at)) == submit(schedule=b"261201160000000+")


def test_relative_schedule_from_now() -> None:
    from gateway.smpp.schedule import parse_relative, parse_schedule

    now = 1796140800.0  # 2026-12-01 16:00 UTC
    assert parse_relative(b"000002000000000R", now) == now + 2 * 86400
    assert parse_relative(b"000100013000000R", now) == parse_absolute(b"270101173000000+")  # a month, 1 h 30
    assert parse_schedule(b"000000000001000R", now) == now + 1
    assert parse_schedule(b"261201160000000+", now) == now
    assert parse_schedule(b"2612XX1000000000", now) is None and parse_relative(b"00000200000000R", now) is None


def test_quiet_cache_per_number_not_per_area_code() -> None:
    from gateway.compliance import QuietCache
    from gateway.policy.quiet_hours import QuietRules

    at = 1796175000.0  # 2026-12-02 01:30 UTC: 19:30 in Pensacola, 20:30 in Tallahassee (Florida: 8-20)
    cache = QuietCache(QuietRules(), 10)
    assert cache.hold_until(18502001234, at) is None  # 850-200: Central
    assert cache.hold_until(18502220100, at) is not None  # 850-222: Eastern, same area code
