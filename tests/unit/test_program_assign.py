"""Which program an MT belongs to: originating number, service_type, vendor TLV, default; defer's rewrite."""

from __future__ import annotations

import struct
import types

from gateway.compliance import assign, defer_raw, index_programs, parse_absolute, smpp_absolute
from gateway.policy.compliance_settings import Program
from gateway.smpp import pdu as P


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
    out = defer_raw(raw, at)
    assert out is not None
    assert smpp_absolute(at) == b"261201160000000+"
    assert out.replace(b"261201160000000+", b"")[16:] == raw[16:]
    assert P.HEADER.unpack_from(out)[0] == len(out) and out[4:16] == raw[4:16]
    later = submit(schedule=b"261202160000000+")  # the application's own, later schedule stands
    assert defer_raw(later, at) == later
    assert parse_absolute(b"261201170000004+") == at  # +1 hour as +04 quarter hours: the same instant
    earlier = submit(schedule=b"261201150000000+")
    assert defer_raw(earlier, at) == submit(schedule=b"261201160000000+")
