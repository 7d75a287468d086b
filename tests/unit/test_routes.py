"""The receipt route map (compact layout, bounded purge) and message_id keys, as plain values."""

from __future__ import annotations

import pytest

from gateway.routemap import BUCKET_BYTES, RouteMap
from gateway.smpp import message_id as M


@pytest.mark.parametrize("fmt, submitted, text, same", [
    ("exact", b"Ab12", b"Ab12", True),
    ("exact", b"Ab12", b"ab12", False),
    ("exact", b"0042", b"42", False),
    ("hex", b"1001", b"0000004097", True),
    ("hex", b"1001", b"1001", False),  # decimal text: 1001 is another message
    ("hex", b"00FF1a", b"ff1A", True),  # a-f in the text: read as hex
    ("hex", b"xyz-1", b"XYZ-1", True),  # not a number: lower case, zeros stripped
    ("decimal", b"4097", b"0000004097", True),
    ("decimal", b"4097", b"1001", False),
    ("decimal", b"0", b"0000", True),
])
def test_message_id_keys(fmt: str, submitted: bytes, text: bytes, same: bool) -> None:
    assert (M.submitted_keyer(fmt)(submitted) == M.text_keyer(fmt)(text)) is same


def test_number_and_text_keys_never_collide() -> None:
    assert M.submitted_keyer("hex")(b"10") != M.submitted_keyer("hex")(b"~16")
    assert M.submitted_keyer("decimal")(b"a") == b"~a"


def test_route_map_expires_after_ttl_never_before() -> None:
    routes = RouteMap(ttl=100.0, max_routes=10_000)
    routes.add(b"m1", "acme", now=0.0)
    routes.add(b"m2", "beta", now=50.0)
    assert routes.purge(99.0, limit=1000) == 0 and routes.get(b"m1") == "acme"
    routes.purge(100.0 + routes.granularity, limit=1000)
    assert routes.get(b"m1") is None and routes.get(b"m2") == "beta"
    routes.purge(151.0, limit=1000)
    assert len(routes) == 0


def test_route_map_purge_is_bounded_per_call() -> None:
    routes = RouteMap(ttl=10.0, max_routes=100_000)
    for i in range(3 * BUCKET_BYTES // 4 + 5):
        routes.add(b"%d" % i, "acme", now=0.0)
    calls = 0
    while routes.expired(11.0):
        assert routes.purge(11.0, limit=1000) <= 1000
        calls += 1
    assert len(routes) == 0 and calls == (3 * BUCKET_BYTES // 4 + 5 + 999) // 1000


def test_route_map_renewed_id_keeps_its_newer_expiry_and_account() -> None:
    routes = RouteMap(ttl=100.0, max_routes=10_000)
    routes.add(b"m1", "acme", now=0.0)
    routes.add(b"m1", "beta", now=90.0)
    routes.purge(120.0, limit=1000)
    assert routes.get(b"m1") == "beta"
    routes.purge(200.0, limit=1000)
    assert routes.get(b"m1") is None


def test_route_map_drops_oldest_when_full() -> None:
    routes = RouteMap(ttl=100.0, max_routes=3)
    for i in range(5):
        routes.add(b"%d" % i, "acme", now=float(i))
    assert len(routes) == 3 and routes.get(b"0") is None and routes.get(b"1") is None and routes.get(b"4") == "acme"


@pytest.mark.parametrize("fmt", M.FORMATS)
def test_oversized_ids_never_become_numbers(fmt: str) -> None:
    for rid in (b"f" * 5000, b"9" * 5000):
        assert not M.valid(rid)
        assert M.submitted_keyer(fmt)(rid) and M.text_keyer(fmt)(rid)  # no ValueError from int()
    assert M.valid(b"9" * M.MAX_MESSAGE_ID)
