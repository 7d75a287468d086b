"""Quiet hours: pure table tests, the clock given as an argument (never the real clock)."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.policy import quiet_hours as qh
from gateway.policy.compliance_settings import QuietHoursSettings, Window

UTC = dt.UTC
RULES = QuietHoursSettings().rules()


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def held(number: str, at: str, category: str = "marketing", rules: qh.QuietRules = RULES) -> str | None:
    until = qh.hold_until(number, ts(at), category, rules)
    return None if until is None else dt.datetime.fromtimestamp(until, UTC).isoformat()


@pytest.mark.parametrize(("number", "at", "expected"), [
    # Florida (305, Miami) at 20:30 local (EST, UTC-5): held until 8:00 next morning
    ("+13055550100", "2026-12-01T01:30:00+00:00", "2026-12-01T13:00:00+00:00"),
    ("+13055550100", "2026-12-01T00:59:00+00:00", None),  # 19:59 local: open
    # New York at 20:30 local: federal window still open
    ("+12125550100", "2026-12-01T01:30:00+00:00", None),
    ("+12125550100", "2026-12-01T02:00:00+00:00", "2026-12-01T13:00:00+00:00"),  # 21:00: closed
    # Texas (214, Dallas, CST) Sunday 2026-12-06 at 11:00: held until noon
    ("+12145550100", "2026-12-06T17:00:00+00:00", "2026-12-06T18:00:00+00:00"),
    ("+12145550100", "2026-12-05T17:00:00+00:00", None),  # Saturday 11:00: open (9-21)
    ("+12145550100", "2026-12-05T14:30:00+00:00", "2026-12-05T15:00:00+00:00"),  # Saturday 8:30 -> 9:00
    # Oklahoma, Maryland, Washington: 8-20
    ("+14055550100", "2026-12-02T02:30:00+00:00", "2026-12-02T14:00:00+00:00"),  # 20:30 CST
    ("+14105550100", "2026-12-02T01:15:00+00:00", "2026-12-02T13:00:00+00:00"),  # 20:15 EST
    ("+12065550100", "2026-12-02T04:10:00+00:00", "2026-12-02T16:00:00+00:00"),  # 20:10 PST
    # Idaho 208 spans America/Boise and America/Los_Angeles: 8:30 Boise is 7:30 LA -> 8:00 LA
    ("+12085550100", "2026-12-01T15:30:00+00:00", "2026-12-01T16:00:00+00:00"),
    # 20:30 LA is 21:30 in Boise (closed there): held until 8:00 LA, the later opening
    ("+12085550100", "2026-12-02T04:30:00+00:00", "2026-12-02T16:00:00+00:00"),
    # unknown area code (999): the configured default rule (8-21) in the default zone (New York)
    ("+19995550100", "2026-12-01T12:00:00+00:00", "2026-12-01T13:00:00+00:00"),
    ("+19995550100", "2026-12-01T15:00:00+00:00", None),
])
def test_window(number: str, at: str, expected: str | None) -> None:
    assert held(number, at) == expected


@pytest.mark.parametrize(("at", "expected"), [
    # US DST ends 2026-11-01 (EDT -> EST): 7:30 EST is 12:30 UTC, opening 8:00 EST = 13:00 UTC
    ("2026-11-01T12:30:00+00:00", "2026-11-01T13:00:00+00:00"),
    # the evening before, 21:30 EDT (01:30 UTC) -> 8:00 EST next day
    ("2026-11-01T01:30:00+00:00", "2026-11-01T13:00:00+00:00"),
    # DST starts 2027-03-14 (EST -> EDT): 21:30 EST on the 13th -> 8:00 EDT = 12:00 UTC
    ("2027-03-14T02:30:00+00:00", "2027-03-14T12:00:00+00:00"),
    ("2027-03-14T12:00:00+00:00", None),  # 8:00 EDT on the change day: open
])
def test_dst_change_days(at: str, expected: str | None) -> None:
    assert held("+12125550100", at) == expected


def test_transactional_and_informational_never_held() -> None:
    for category in ("transactional", "informational"):
        assert held("+13055550100", "2026-12-01T05:00:00+00:00", category) is None


def test_france_no_sunday_and_holidays() -> None:
    rules = QuietHoursSettings(holidays={"FR": [dt.date(2026, 12, 25)]}).rules()
    # Saturday 2026-12-05 21:30 Paris (UTC+1) open until 22:00
    assert held("+33612345678", "2026-12-05T20:30:00+00:00", rules=rules) is None
    # Saturday 22:30 -> Sunday closed -> Monday 8:00 Paris
    assert held("+33612345678", "2026-12-05T21:30:00+00:00", rules=rules) == "2026-12-07T07:00:00+00:00"
    # Christmas Friday is a holiday: Saturday 8:00
    assert held("+33612345678", "2026-12-25T10:00:00+00:00", rules=rules) == "2026-12-26T07:00:00+00:00"


def test_state_override_and_us_holiday() -> None:
    rules = QuietHoursSettings(states={"NY": [Window(start="10:00", end="18:00")]},
                               holidays={"US-NY": [dt.date(2026, 12, 2)]}).rules()
    assert held("+12125550100", "2026-12-01T14:00:00+00:00", rules=rules) == "2026-12-01T15:00:00+00:00"
    assert held("+12125550100", "2026-12-02T16:00:00+00:00", rules=rules) == "2026-12-03T15:00:00+00:00"


def test_state_of_area_code() -> None:
    import phonenumbers

    assert qh.state_of(phonenumbers.parse("+13055550100")) == "FL"
    assert qh.state_of(phonenumbers.parse("+12065550100")) == "WA"
    assert qh.state_of(phonenumbers.parse("+19995550100")) is None


def test_two_readings_take_the_window_open_under_both() -> None:
    """An ambiguous destination: the first minute open in Jamaica and in Singapore alike (their
    8:00-21:00 windows overlap from 00:00 to 02:00 UTC)."""
    jm, sg = qh.profile_for("+16581234567", RULES), qh.profile_for("+6581234567", RULES)
    now = ts("2026-12-01T20:00:00+00:00")  # 15:00 in Kingston (open), 04:00 in Singapore (closed)
    assert qh.next_allowed(jm, now) is None
    assert qh.next_allowed_all((jm, sg), now) == ts("2026-12-02T00:00:00+00:00")  # 08:00 SGT
    assert qh.next_allowed_all((jm, sg), ts("2026-12-02T01:59:00+00:00")) is None  # open in both
    late = ts("2026-12-02T02:00:00+00:00")  # 21:00 in Kingston: closed there; the next overlap
    assert qh.next_allowed_all((jm, sg), late) == ts("2026-12-03T00:00:00+00:00")
    assert qh.next_allowed_all((jm,), late) == qh.next_allowed(jm, late)
