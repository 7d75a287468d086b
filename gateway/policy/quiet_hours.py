"""Quiet hours: when a marketing message may reach a recipient, by the recipient's local time.

Pure: (recipient E.164, UTC instant, category, rules) in, None (send now) or the next allowed
minute (unix seconds, UTC) out. The clock is the caller's argument, never read here.

- Federal (47 CFR 64.1200(c)(1)): no telephone solicitation before 8:00 or after 21:00 at the
  called party's location.
- State rows (STATES) are keyed by the state of the US area code (phonenumbers' geocoder); the
  federal window applies too, so a row only ever narrows it.
- Time zone from phonenumbers.timezone; an area code split across zones gets the window allowed
  in every candidate zone (the most restrictive); no zone known: the configured default rule
  read in the default zone. A destination that reads as two numbers (TON 0 digits) gets the
  window open under both readings (next_allowed_all).
- Per-country rules and holidays come from configuration (QuietRules); a holiday closes the day.
- Transactional and informational messages are never held.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as pn_timezone

Span = tuple[int, int]  # minutes after local midnight: [start, end)
Day = tuple[Span, ...]  # the open spans of one day; () = closed all day
Rule = tuple[Day, Day, Day, Day, Day, Day, Day]  # Monday .. Sunday


def every_day(start_h: int, end_h: int) -> Rule:
    span: Day = ((start_h * 60, end_h * 60),)
    return (span,) * 7


FEDERAL: Rule = every_day(8, 21)  # 47 CFR 64.1200(c)(1): 8 a.m. to 9 p.m. local time

# State rules, keyed by the state of the area code. Each row cites its statute. The first five are
# named in issue 11; CT and MS come from reading the statutes (verify with counsel before relying).
STATES: dict[str, Rule] = {
    "FL": every_day(8, 20),  # Fla. Stat. s. 501.616(6)(a) (Florida Telephone Solicitation Act, 2021 amendment)
    "OK": every_day(8, 20),  # Okla. Stat. tit. 15, s. 775C.4(B) (Telephone Solicitation Act of 2022)
    "MD": every_day(8, 20),  # Md. Code, Com. Law s. 14-4503 (Stop the Spam Calls Act of 2023)
    "WA": every_day(8, 20),  # RCW 80.36.390(3) (telephone solicitation: 8 a.m. to 8 p.m.)
    # Tex. Bus. & Com. Code s. 301.051: 9 a.m.-9 p.m. Monday-Saturday, noon-9 p.m. Sunday
    "TX": (((540, 1260),),) * 6 + (((720, 1260),),),
    "CT": every_day(9, 20),  # Conn. Gen. Stat. s. 42-288a(c) as amended by P.A. 23-98: 9 a.m. to 8 p.m.
    # Miss. Code Ann. s. 77-3-725(1): 8 a.m. to 8 p.m., none on Sunday
    "MS": (((480, 1200),),) * 6 + ((),),
}

_STATE_CODES = "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
US_STATES = frozenset((_STATE_CODES + "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR VI GU AS MP").split())
_STATE_NAMES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA", "Colorado": "CO",
    "Connecticut": "CT", "Delaware": "DE", "Washington D.C.": "DC", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS",
    "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA",
    "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT",
    "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD",
    "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA",
    "Washington State": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
}  # fmt: skip
HELD_CATEGORIES = frozenset({"marketing"})
_SEARCH_DAYS = 15  # a rule open on no day of two weeks: give up (validation forbids it)


@dataclass(frozen=True)
class QuietRules:
    """The configured rules (see policy.compliance_settings.QuietHoursSettings.rules)."""

    states: dict[str, Rule] = field(default_factory=lambda: dict(STATES))
    countries: dict[str, Rule] = field(default_factory=dict)  # ISO alpha-2 -> rule (US: FEDERAL)
    holidays: dict[str, frozenset[dt.date]] = field(default_factory=dict)  # "FR", "US", "US-TX" -> dates
    default: Rule = FEDERAL  # no zone known
    default_zone: str = "America/New_York"


@dataclass(frozen=True)
class Profile:
    """What the window of one recipient depends on: zones and the rules and holidays in force."""

    zones: tuple[str, ...]
    rule: Rule
    holidays: frozenset[dt.date]


def profile_for(number: str, rules: QuietRules) -> Profile:
    """The recipient's zones, rule (federal and state intersected) and holidays."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return Profile((rules.default_zone,), rules.default, frozenset())
    region = (phonenumbers.region_code_for_number(parsed)
              or phonenumbers.region_code_for_country_code(parsed.country_code or 0))  # unassigned: main region
    zones = tuple(z for z in pn_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")
    rule, holidays = rules.countries.get(region), rules.holidays.get(region, frozenset())
    if region == "US":
        state = state_of(parsed)
        rule = rule or FEDERAL
        if state in rules.states:
            rule = intersect(rule, rules.states[state])
        holidays = holidays | rules.holidays.get(f"US-{state}", frozenset())
    if not zones or rule is None:  # unknown zone or a country without a rule: the configured default
        return Profile(zones or (rules.default_zone,), rules.default, holidays)
    return Profile(zones, rule, holidays)


def state_of(parsed: phonenumbers.PhoneNumber) -> str | None:
    """The US state of the number's area code (geocoder text: 'Florida' or 'Miami, FL')."""
    text = geocoder.description_for_number(parsed, "en")
    if ", " in text:
        code = text.rsplit(", ", 1)[1]
        return code if code in US_STATES else None
    return _STATE_NAMES.get(text)


def next_allowed(profile: Profile, now: float) -> float | None:
    """None when now is inside the window in every zone; else the next allowed minute (UTC)."""
    t = now
    for _ in range(4 * len(profile.zones) + 4):  # each pass moves t to a zone's next opening
        moved = False
        for zone in profile.zones:
            opens = _zone_opens(profile, zone_info(zone), t)
            if opens > t:
                t, moved = opens, True
        if not moved:
            return None if t == now else t
    return t


def next_allowed_all(profiles: tuple[Profile, ...], now: float) -> float | None:
    """next_allowed for a recipient with several readings (an ambiguous destination): None when
    every profile is open at now, else the first minute open in all of them (the most restrictive)."""
    if len(profiles) == 1:
        return next_allowed(profiles[0], now)
    t = now
    for _ in range(4 * len(profiles) + 4):
        moved = False
        for profile in profiles:
            opens = next_allowed(profile, t)
            if opens is not None:
                t, moved = opens, True
        if not moved:
            return None if t == now else t
    return t


def hold_until(number: str, now: float, category: str, rules: QuietRules) -> float | None:
    """The whole decision for one message: None (send) or when it may be sent (unix seconds)."""
    if category not in HELD_CATEGORIES:
        return None
    return next_allowed(profile_for(number, rules), now)


def _zone_opens(profile: Profile, tz: ZoneInfo, t: float) -> float:
    """t when the window is open at t in tz, else the start of the next open span (UTC seconds)."""
    local = dt.datetime.fromtimestamp(t, tz)
    minute = local.hour * 60 + local.minute
    day = local.date()
    for offset in range(_SEARCH_DAYS):
        date = day + dt.timedelta(days=offset)
        if date in profile.holidays:
            continue
        for start, end in profile.rule[date.weekday()]:
            if offset == 0 and start <= minute < end:
                return t
            if offset > 0 or start > minute:
                opening = dt.datetime.combine(date, dt.time(start // 60, start % 60), tz)
                return opening.timestamp()
    return t + _SEARCH_DAYS * 86400.0


def intersect(a: Rule, b: Rule) -> Rule:
    """The rule open only when both are (the most restrictive of two)."""
    return tuple(_intersect_day(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _intersect_day(a: Day, b: Day) -> Day:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            start, end = max(s1, s2), min(e1, e2)
            if start < end:
                out.append((start, end))
    return tuple(sorted(out))


@lru_cache(maxsize=1024)
def zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)
