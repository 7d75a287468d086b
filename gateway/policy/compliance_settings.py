"""Compliance configuration: programs (per account), program keywords, revoke-all, quiet hours.

Plain pydantic models; `Account.programs` and `optout.programs` / `optout.revoke_all` /
`optout.quiet_hours` hold them. Every rule broken is one ValueError (one check-config line).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.policy import quiet_hours as qh
from gateway.policy.keywords import normalise

STRICT = ConfigDict(extra="forbid")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
DayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[DayName, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
Category = Literal["transactional", "informational", "marketing"]


def _status(value: int) -> int:
    if not (0x01 <= value <= 0xFF or 0x400 <= value <= 0x4FF):
        raise ValueError("quiet_status must be 0x01-0xFF (standard) or 0x400-0x4FF (vendor)")
    return value


class Program(BaseModel):
    """One program of an account: its category and which MT belong to it."""

    model_config = STRICT

    name: str
    category: Category  # required: a program without a category is refused
    numbers: list[str] = Field(default_factory=list, description="originating numbers (E.164) of this program")
    service_types: list[str] = Field(default_factory=list, description="submit_sm service_type values")
    tlv_tag: int | None = Field(None, ge=0x1400, le=0x3FFF, description="vendor TLV naming the program")
    tlv_value: str | None = None
    default: bool = Field(False, description="catches every MT no other program claims")
    quiet_hours: Literal["reject", "defer", "off"] = "reject"
    quiet_status: int = Field(0x45, description="status of a refused MT (reject); 0x400+ vendor codes allowed")
    deactivated: Literal["refuse", "allow"] | None = Field(
        None, description="MT of this program to a number whose consent epoch ended; default: optout.deactivated_action")

    _quiet_status = field_validator("quiet_status")(lambda v: _status(v))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"program name {value!r}: lower-case identifier, at most 32 characters")
        return value

    @field_validator("service_types")
    @classmethod
    def _service_types(cls, value: list[str]) -> list[str]:
        for s in value:
            if not 1 <= len(s) <= 5 or not s.isascii():
                raise ValueError(f"service_type {s!r}: 1-5 ASCII characters (SMPP 3.4)")
        return value

    @model_validator(mode="after")
    def _tlv(self) -> Program:
        if (self.tlv_tag is None) != (self.tlv_value is None):
            raise ValueError(f"program {self.name!r}: give both tlv_tag and tlv_value, or neither")
        return self


def check_programs(system_id: str, programs: list[Program]) -> None:
    """One account's programs: unique names, at most one default, no number or service_type twice."""
    names: set[str] = set()
    claims: dict[tuple[str, str], str] = {}
    defaults = [p.name for p in programs if p.default]
    if len(defaults) > 1:
        raise ValueError(f"account {system_id!r}: programs {defaults[0]!r} and {defaults[1]!r} are both default")
    for p in programs:
        if p.name in names:
            raise ValueError(f"account {system_id!r}: program {p.name!r} is listed twice")
        names.add(p.name)
        owned = [("number", n) for n in p.numbers] + [("service_type", s) for s in p.service_types]
        if p.tlv_tag is not None:
            owned.append(("tlv", f"0x{p.tlv_tag:04x}={p.tlv_value}"))
        for claim in owned:
            other = claims.setdefault(claim, p.name)
            if other != p.name:
                raise ValueError(f"account {system_id!r}: {claim[0]} {claim[1]} is claimed by programs "
                                 f"{other!r} and {p.name!r}")


class ProgramKeywords(BaseModel):
    """Keywords that opt out of (stop) or back into (start) one program of the account texted."""

    model_config = STRICT

    program: str
    stop: list[str] = Field(default_factory=list, max_length=20)
    start: list[str] = Field(default_factory=list, max_length=20)
    stop_reply: str | None = Field(None, max_length=320)
    start_reply: str | None = Field(None, max_length=320)

    @field_validator("stop", "start")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        for k in value:
            norm = normalise(k)
            if not norm or norm in ("STOP", "START", "HELP"):
                raise ValueError(f"program keyword {k!r}: empty or reserved (STOP, START, HELP)")
        return [k.strip() for k in value]


class RevokeAll(BaseModel):
    """47 CFR 64.1200(a)(10): a STOP revokes consent for every program of the business."""

    model_config = STRICT

    enabled: bool = True
    effective: dt.date = Field(dt.date(2027, 1, 31), description="on from this date (UTC)")
    clarify_reply: str | None = Field(None, max_length=320, description="STOP reply offering the choice")
    clarify_window: float = Field(300.0, ge=0, le=300.0, description="the one clarification: seconds")

    def on(self, now: float) -> bool:
        return self.enabled and dt.datetime.fromtimestamp(now, dt.UTC).date() >= self.effective


class Window(BaseModel):
    model_config = STRICT

    start: str = "08:00"
    end: str = "21:00"
    days: list[DayName] = Field(default_factory=lambda: list(DAYS))

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _TIME.match(value):
            raise ValueError(f"quiet-hours time {value!r}: HH:MM, 00:00-24:00")
        return value

    @model_validator(mode="after")
    def _order(self) -> Window:
        if _minutes(self.end) <= _minutes(self.start):
            raise ValueError(f"quiet-hours window {self.start}-{self.end} ends before it starts")
        return self


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def rule_of(windows: list[Window]) -> qh.Rule:
    days: list[list[qh.Span]] = [[] for _ in DAYS]
    for w in windows:
        for day in w.days:
            days[DAYS.index(day)].append((_minutes(w.start), _minutes(w.end)))
    return tuple(tuple(sorted(d)) for d in days)  # type: ignore[return-value]


class QuietHoursSettings(BaseModel):
    """Windows for marketing programs: shipped state table, per-country rules, holidays."""

    model_config = STRICT

    states: dict[str, list[Window]] = Field(default_factory=dict, description="US state -> windows (override)")
    countries: dict[str, list[Window]] = Field(
        default_factory=lambda: {"FR": [Window(start="08:00", end="22:00", days=list(DAYS[:6]))]})
    holidays: dict[str, list[dt.date]] = Field(default_factory=dict, description="'FR', 'US' or 'US-TX' -> dates")
    default: list[Window] = Field(default_factory=lambda: [Window()], description="no zone known")
    default_zone: str = "America/New_York"

    @field_validator("states")
    @classmethod
    def _states(cls, value: dict[str, list[Window]]) -> dict[str, list[Window]]:
        for code in value:
            if code not in qh.US_STATES:
                raise ValueError(f"quiet_hours.states: unknown US state code {code!r}")
        return value

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: dict[str, list[Window]]) -> dict[str, list[Window]]:
        for code in value:
            if code not in COUNTRIES:
                raise ValueError(f"quiet_hours.countries: unknown country code {code!r}")
        return value

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: dict[str, list[dt.date]]) -> dict[str, list[dt.date]]:
        for code in value:
            country, _, state = code.partition("-")
            if country not in COUNTRIES or (state and (country != "US" or state not in qh.US_STATES)):
                raise ValueError(f"quiet_hours.holidays: unknown country or state code {code!r}")
        return value

    @field_validator("default_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            qh.zone_info(value)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"quiet_hours.default_zone: unknown time zone {value!r}") from None
        return value

    def rules(self) -> qh.QuietRules:
        states = dict(qh.STATES)
        states.update({code: rule_of(w) for code, w in self.states.items()})
        return qh.QuietRules(
            states=states, countries={code: rule_of(w) for code, w in self.countries.items()},
            holidays={code: frozenset(d) for code, d in self.holidays.items()},
            default=rule_of(self.default), default_zone=self.default_zone)


class ProgramSettings(BaseModel):
    """`[optout.programs]`: program keywords and the quiet-hours rules."""

    model_config = STRICT

    keywords: list[ProgramKeywords] = Field(default_factory=list)
    quiet_hours: QuietHoursSettings = Field(default_factory=QuietHoursSettings)
    quiet_cache_max: int = Field(100_000, ge=1, description="recipients whose window is kept in memory")
