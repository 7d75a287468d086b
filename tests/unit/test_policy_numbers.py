"""E.164 keys, regions, toll-free checks and block keys."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.numbers import (
    INVALID,
    NumberPlan,
    block_keys,
    can_receive_reply,
    counterpart_for,
    e164,
    e164_digits,
    is_toll_free,
    mobile_key,
    plan_for_region,
    region_of,
)


@pytest.mark.parametrize(
    "ton, addr, cc, expected",
    [
        (1, b"14155550123", "1", 14155550123),
        (0, b"+14155550123", "1", 14155550123),
        (2, b"4155550123", "1", 14155550123),
        (0, b"4155550123", "1", 14155550123),  # national length for NANP
        (0, b"14155550123", "1", 14155550123),
        (2, b"14155550123", "1", 14155550123),  # trunk 1 tolerated
        (0, b"0014155550123", "1", 14155550123),
        (1, b"+14155550123", "1", 14155550123),
        (1, b"447700900123", "1", 447700900123),
        (0, b"447700900123", "1", 447700900123),  # not national length: international
        (2, b"07700900123", "44", 447700900123),  # trunk 0 stripped
        (0, b"07700900123", "44", 447700900123),
        (2, b"7700900123", "44", 447700900123),
        (0, b"4155550123\x00", "1", 14155550123),
        (5, b"ACME", "1", None),  # alphanumeric
        (5, b"14155550123", "1", 14155550123),  # digits under TON 5: a number
        (0, b"ACME", "1", None),
        (0, b"12345", "1", None),  # short code
        (0, b"123456", "1", None),
        (2, b"12345", "1", None),
        (0, b"", "1", None),
        (0, b"+", "1", None),
        (0, b"\xff\xfe", "1", INVALID),  # unreadable: never forwarded unchecked
        (0, "٤١٥٥٥٥٠١٢٣".encode(), "1", INVALID),  # non-ASCII digits
        (1, b"1234567890123456", "1", INVALID),  # longer than E.164
        (1, b"0155550123", "1", INVALID),  # no country code starts with 0
    ],
)
def test_mobile_key(ton: int, addr: bytes, cc: str, expected: int | None) -> None:
    assert mobile_key(ton, addr, cc) == expected


def test_mobile_key_with_precomputed_plan() -> None:
    plan = plan_for_region("US")
    assert plan == NumberPlan("1", frozenset({10}), "1")
    assert mobile_key(2, b"4155550123", plan) == 14155550123


NANP_AREA = st.sampled_from(["201", "212", "310", "415", "416", "514", "604", "646", "905"])


@given(NANP_AREA, st.integers(200, 999), st.integers(0, 9999), st.sampled_from(["US", "CA"]))
def test_mobile_key_agrees_with_phonenumbers(
    area: str, exchange: int, line: int, region: str
) -> None:
    national = f"{area}{exchange}{line:04d}"
    expected = phonenumbers.parse(national, region)
    want = int(f"{expected.country_code}{expected.national_number}")
    for ton, addr in [(1, "1" + national), (0, "+1" + national), (2, national), (0, national)]:
        assert mobile_key(ton, addr.encode(), "1") == want
        assert e164(ton, addr.encode(), region) == f"+{want}"


@pytest.mark.parametrize(
    "ton, addr, region, expected",
    [
        (2, b"4155550123", "US", "+14155550123"),
        (1, b"14155550123", "US", "+14155550123"),
        (0, b"07700900123", "GB", "+447700900123"),
        (5, b"ACME", "US", None),
        (0, b"12345", "US", None),
        (1, b"1415", "US", None),
        (1, b"99912345678", "US", None),  # country code 999 does not exist
    ],
)
def test_e164(ton: int, addr: bytes, region: str, expected: str | None) -> None:
    assert e164(ton, addr, region) == expected


@pytest.mark.parametrize(
    "number, region",
    [
        ("+14155550123", "US"),
        ("+14165550123", "CA"),
        ("+447700900123", "GB"),
        ("+525512345678", "MX"),
        ("+33612345678", "FR"),
        ("garbage", None),
        ("+999", None),
    ],
)
def test_region_of(number: str, region: str | None) -> None:
    assert region_of(number) == region


@pytest.mark.parametrize(
    "number, extra, expected",
    [
        ("+18005550100", set(), True),
        ("+18885550100", set(), True),
        ("+18335550100", set(), True),
        ("+14155550123", set(), False),
        ("+14155550123", {"+14155550123"}, True),
        ("not a number", set(), False),
    ],
)
def test_is_toll_free(number: str, extra: set[str], expected: bool) -> None:
    assert is_toll_free(number, extra) is expected


@pytest.mark.parametrize(
    "ton, addr, expected",
    [
        (1, b"14155550123", True),
        (0, b"+14155550123", True),
        (0, b"+1 415 555 0123", True),  # as some carriers write it
        (5, b"ACME", False),
        (5, b"1234567", False),
        (0, b"12345", False),
        (0, b"ACME", False),
        (0, b"", False),
        (0, b"\xff", False),
    ],
)
def test_can_receive_reply(ton: int, addr: bytes, expected: bool) -> None:
    assert can_receive_reply(ton, addr) is expected


@pytest.mark.parametrize(
    "scope, counterpart",
    [("number", "+18005550100"), ("account", "acme"), ("global", "")],
)
def test_block_keys(scope: str, counterpart: str) -> None:
    assert counterpart_for(scope, "+18005550100", "acme") == counterpart
    assert block_keys(scope, "+14155550123", "+18005550100", "acme") == (
        "+14155550123",
        counterpart,
        scope,
    )


@given(st.integers(0, 255), st.binary(max_size=24))
def test_mobile_key_never_raises(ton: int, addr: bytes) -> None:
    key = mobile_key(ton, addr, "1")
    assert key is None or key == INVALID or 10**6 <= key < 10**15


# --- destinations as carriers read them (issue 8 item 1): every form keys the same mobile ----------
BLOCKED = 14155550123


@pytest.mark.parametrize("ton, addr", [
    (1, b"0014155550123"), (0, b"0014155550123"), (2, b"0014155550123"),
    (1, b"01114155550123"), (0, b"01114155550123"),
    (1, b"+1 415 555 0123"), (0, b"+1 415 555 0123"), (2, b"+1 415 555 0123"), (5, b"+1 415 555 0123"),
    (1, b"1-415-555-0123"), (0, b"1-415-555-0123"), (2, b"1-415-555-0123"), (5, b"1-415-555-0123"),
    (1, b"(415) 555-0123"), (0, b"(415) 555-0123"), (2, b"(415) 555-0123"), (5, b"(415) 555-0123"),
    (0, b"14155550123"), (5, b"14155550123"), (3, b"14155550123"), (5, b"4155550123"),
    (1, b"+1.415.555.0123"), (0, b"1/415/555/0123"), (1, b" 14155550123 "), (1, b"+1 (415) 555-0123"),
])
def test_every_form_keys_the_same_mobile(ton: int, addr: bytes) -> None:
    assert mobile_key(ton, addr, plan_for_region("US")) == BLOCKED
    assert e164_digits(ton, addr, plan_for_region("US")) == str(BLOCKED)  # the key MO computes


@pytest.mark.parametrize("ton, addr", [
    (1, b"+1 415 555 0123 ext 9"), (1, b"tel:+14155550123"), (0, b"1415555O123x"), (1, b"++14155550123"),
    (1, b"1+4155550123"), (0, b"+0014155550123"), (1, b"00014155550123"), (1, b"1\t415\t555\t0123"),
    (0, b"+1415555012345678"), (5, b"\xc3\xa9 14155550123"),
])
def test_number_like_but_unreadable_is_invalid(ton: int, addr: bytes) -> None:
    assert mobile_key(ton, addr, plan_for_region("US")) == INVALID
    assert e164_digits(ton, addr, plan_for_region("US")) is None


@pytest.mark.parametrize("ton, addr", [(5, b"ACME"), (5, b"Acme 24"), (0, b"12345"), (3, b"12-345"), (0, b"")])
def test_alphanumeric_and_short_codes_have_no_key(ton: int, addr: bytes) -> None:
    assert mobile_key(ton, addr, plan_for_region("US")) is None


def test_international_format_trunk_zero_is_dropped() -> None:
    assert mobile_key(1, b"+44 (0)7700 900123", plan_for_region("US")) == 447700900123
    assert mobile_key(0, b"07700 900123", plan_for_region("GB")) == 447700900123
    assert mobile_key(0, b"0114 496 0000", plan_for_region("GB")) == 441144960000  # 011: no IDD outside NANP


@given(st.integers(0, 6), st.sampled_from(["14155550123", "447700900123", "5215512345678"]),
       st.lists(st.tuples(st.integers(0, 12), st.sampled_from([" ", "-", ".", "/"])), max_size=6))
def test_separators_never_change_the_key(ton: int, number: str, cuts: list[tuple[int, str]]) -> None:
    text = number
    for at, sep in sorted(cuts, reverse=True):
        text = text[:at] + sep + text[at:]
    plan = plan_for_region("US")
    assert mobile_key(ton, ("+" + text).encode(), plan) == int(number)
    assert mobile_key(ton, text.encode(), plan) == mobile_key(ton, number.encode(), plan)


@given(st.integers(0, 255), st.text(alphabet="0123456789 +-./()abcXYZ:\t", max_size=30))
def test_fail_closed_anything_with_seven_digits_is_keyed_or_invalid(ton: int, text: str) -> None:
    key = mobile_key(ton, text.encode(), plan_for_region("US"))
    if sum(c.isdigit() for c in text) > 6:
        assert key is not None  # never "no key" (which forwards unchecked)


@given(st.integers(0, 6), st.text(alphabet="0123456789 +-()", max_size=20), st.sampled_from(["US", "GB", "MX"]))
def test_mo_and_mt_keys_are_one_function(ton: int, text: str, region: str) -> None:
    plan = plan_for_region(region)
    digits = e164_digits(ton, text.encode(), plan)  # the MO's mobile
    key = mobile_key(ton, text.encode(), plan)  # the MT's destination, fast path included
    assert key == (int(digits) if digits is not None else key if key in (None, INVALID) else -2)


def test_international_reading_of_ambiguous_destinations() -> None:
    from gateway.policy.numbers import international_reading, originator_text
    us = plan_for_region("US")
    assert international_reading(0, b"6581234567", us) == 6581234567  # national reading: +16581234567
    assert international_reading(0, b"65 8123 4567", us) == 6581234567
    assert international_reading(3, b"6581234567", us) == 6581234567
    for ton, addr in ((1, b"6581234567"), (2, b"6581234567"), (0, b"+6581234567"), (0, b"14155550123"),
                      (0, b"(658) 123-4567"), (0, b"0016581234567"), (0, b"12345"), (0, b"ACME")):
        assert international_reading(ton, addr, us) is None, (ton, addr)
    assert originator_text(b"+12345") == originator_text(b"12 345") == "12345"
    assert originator_text(b"012345") == "012345"  # leading zeros: another short code
