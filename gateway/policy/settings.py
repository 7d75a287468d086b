"""Opt-out configuration (`[optout]` in TOML, `GATEWAY_OPTOUT__*` in the environment).

Plain pydantic models nested in the app's BaseSettings. Validation enforces the
compliance floor: STOP, START and HELP stay on their ops, at most 20 keywords per op
per entry, standard replies 20-320 characters.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from aiosmpplib.codec import find_codec_info
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.policy.compliance_settings import ProgramSettings, RevokeAll
from gateway.policy.keywords import STANDARD_OPS, normalise

MAX_KEYWORDS = 20
RESERVED: dict[str, str] = {"STOP": "stop", "START": "start", "HELP": "help"}
RESERVED_OP_NAMES = frozenset({*STANDARD_OPS, "possible_optout", "implicit"})

DEFAULT_STOP = [
    "STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END",
    "QUIT", "REVOKE", "OPTOUT", "OPT OUT", "ARRET", "ARRETE",
]  # fmt: skip
DEFAULT_START = ["START", "UNSTOP", "YES"]
DEFAULT_HELP = ["HELP", "INFO"]
DEFAULT_REPLIES = {
    "stop": "You have been unsubscribed and will receive no further messages. "
    "Reply START to resubscribe.",
    "start": "You have been resubscribed and will receive messages again. "
    "Reply HELP for help, STOP to unsubscribe.",
    "help": "Reply STOP to unsubscribe, START to resubscribe. Msg&data rates may apply.",
}

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_OP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_NUMBER = re.compile(r"^\+?[0-9]{7,15}$")

Keywords = list[str]


def _keyword_list(values: list[str]) -> list[str]:
    cleaned = [v.strip() for v in values]
    for value in cleaned:
        if not normalise(value):
            raise ValueError(f"keyword {value!r} is empty once normalised")
    return cleaned


def _country(code: str) -> str:
    upper = code.strip().upper()
    if not _COUNTRY.match(upper):
        raise ValueError(f"country {code!r} is not an ISO 3166 alpha-2 code")
    return upper


def _reply_length(text: str, where: str) -> str:
    if not 20 <= len(text) <= 320:
        raise ValueError(f"{where}: reply must be 20-320 characters, got {len(text)}")
    return text


class OpKeywords(BaseModel):
    """Keywords per standard op (the base lists, every country and language)."""

    model_config = ConfigDict(extra="forbid")

    stop: Keywords = Field(default_factory=lambda: list(DEFAULT_STOP), max_length=MAX_KEYWORDS)
    start: Keywords = Field(default_factory=lambda: list(DEFAULT_START), max_length=MAX_KEYWORDS)
    help: Keywords = Field(default_factory=lambda: list(DEFAULT_HELP), max_length=MAX_KEYWORDS)

    _clean = field_validator("stop", "start", "help")(_keyword_list)


class Reply(BaseModel):
    """One op's reply: a default and overrides per country of the mobile (ISO alpha-2)."""

    model_config = ConfigDict(extra="forbid")

    default: str
    countries: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"default": value} if isinstance(value, str) else value

    @field_validator("countries")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        return {_country(code): text for code, text in value.items()}

    def for_country(self, country: str | None) -> str:
        return self.countries.get(country or "", self.default)


class OpReplies(BaseModel):
    """Replies of the standard ops; each text 20-320 characters."""

    model_config = ConfigDict(extra="forbid")

    stop: Reply = Field(default_factory=lambda: Reply(default=DEFAULT_REPLIES["stop"]))
    start: Reply = Field(default_factory=lambda: Reply(default=DEFAULT_REPLIES["start"]))
    help: Reply = Field(default_factory=lambda: Reply(default=DEFAULT_REPLIES["help"]))

    @model_validator(mode="after")
    def _lengths(self) -> OpReplies:
        for op in STANDARD_OPS:
            reply: Reply = getattr(self, op)
            _reply_length(reply.default, f"replies.{op}.default")
            for code, text in reply.countries.items():
                _reply_length(text, f"replies.{op}.countries.{code}")
        return self


class CustomOp(BaseModel):
    """A keyword list with its own reply and no block change (e.g. NOPROMO).

    `reply` is a text, or {default, countries} for replies per country; None sends none.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    keywords: Keywords = Field(min_length=1, max_length=MAX_KEYWORDS)
    reply: Reply | None = None

    _clean = field_validator("keywords")(_keyword_list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _OP_NAME.match(value) or value in RESERVED_OP_NAMES:
            raise ValueError(f"custom op name {value!r}: lower-case identifier, not a built-in op")
        return value

    @field_validator("reply")
    @classmethod
    def _lengths(cls, value: Reply | None) -> Reply | None:
        for text in [] if value is None else [value.default, *value.countries.values()]:
            if not 1 <= len(text) <= 320:
                raise ValueError(f"custom reply must be 1-320 characters, got {len(text)}")
        return value


class KeywordSet(BaseModel):
    """Extra keywords (and optionally replies) for one language, optionally limited to countries.

    A keyword of this set answers with this set's reply for its op when one is given,
    else with the op's reply for the mobile's country.
    """

    model_config = ConfigDict(extra="forbid")

    language: str = Field(min_length=1, max_length=16)
    countries: list[str] = Field(default_factory=list, description="empty: every country")
    stop: Keywords = Field(default_factory=list, max_length=MAX_KEYWORDS)
    start: Keywords = Field(default_factory=list, max_length=MAX_KEYWORDS)
    help: Keywords = Field(default_factory=list, max_length=MAX_KEYWORDS)
    replies: dict[Literal["stop", "start", "help"], str] = Field(default_factory=dict)

    _clean = field_validator("stop", "start", "help")(_keyword_list)

    @field_validator("countries")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        return [_country(code) for code in value]

    @field_validator("replies")
    @classmethod
    def _lengths(cls, value: dict[str, str]) -> dict[str, str]:
        for op, text in value.items():
            _reply_length(text, f"replies.{op}")
        return value


class TollFree(BaseModel):
    """Toll-free numbers: the network handles its own keywords and sends NETWORK MSG."""

    model_config = ConfigDict(extra="forbid")

    extra_numbers: list[str] = Field(
        default_factory=list, description="E.164, besides phonenumbers"
    )
    carrier_stop_keywords: Keywords = Field(default_factory=lambda: ["STOP"])
    carrier_start_keywords: Keywords = Field(default_factory=lambda: ["START", "UNSTOP"])

    _clean = field_validator("carrier_stop_keywords", "carrier_start_keywords")(_keyword_list)

    @field_validator("extra_numbers")
    @classmethod
    def _numbers(cls, value: list[str]) -> list[str]:
        out = []
        for number in value:
            compact = re.sub(r"[\s().-]", "", number)
            if not _NUMBER.match(compact):
                raise ValueError(f"toll-free number {number!r} is not an E.164 number")
            out.append("+" + compact.lstrip("+"))
        return out

    @model_validator(mode="after")
    def _disjoint(self) -> TollFree:
        both = {normalise(k) for k in self.carrier_stop_keywords} & {
            normalise(k) for k in self.carrier_start_keywords
        }
        if both:
            raise ValueError(f"carrier keyword {min(both)!r} is both a stop and a start keyword")
        return self


class OptoutSettings(BaseModel):
    """Everything the opt-out engine reads; see README for the TOML example."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["number", "account", "global"] = "number"
    default_region: str = "US"
    keywords: OpKeywords = Field(default_factory=OpKeywords)
    custom_ops: list[CustomOp] = Field(default_factory=list)
    languages: list[KeywordSet] = Field(default_factory=list)
    replies: OpReplies = Field(default_factory=OpReplies)
    possible_optout_acts: bool = False
    possible_optout_keywords: Keywords | None = Field(
        default=None, description="None: every stop keyword"
    )
    possible_optout_max_words: int = Field(default=6, ge=2, le=50)
    possible_optout_max_chars: int = Field(default=60, ge=5, le=1000)
    start_without_block_reply: bool = False
    implicit_reopt_in: bool = False
    forward: dict[str, Literal["forward", "drop"]] = Field(default_factory=dict)
    annotate_tlv: int | None = Field(default=None, ge=0x1400, le=0x3FFF)
    toll_free: TollFree = Field(default_factory=TollFree)
    reply_window: float = Field(default=3600.0, ge=0)
    mo_dedup_window: float = Field(default=86400.0, ge=0)  # redelivery check against the store's latest event
    dedup_max_entries: int = Field(default=1_000_000, ge=1)  # unused since the check is in the store; kept for old files
    block_status: int = 0x0B
    block_mode: Literal["status", "receipt"] = "status"
    distribution_lists: Literal["refuse", "forward"] = Field(
        default="refuse", description="submit_multi dest_flag 2: the carrier expands them, the gateway cannot check "
        "their members; forward is a compliance risk"
    )
    rejected_receipt_queue_max: int = Field(
        default=1000, ge=0, description="block_mode receipt: rejected receipts queued per account while none is bound"
    )
    reply_long: Literal["concatenate", "payload"] = "concatenate"
    smsc_default_alphabet: str = "gsm0338"
    smsc_default_alphabets: list[str] = Field(
        default_factory=list, max_length=4,
        description="data_coding 0 as the SMSC may mean it (e.g. gsm0338, ascii, latin-1): a keyword under any "
        "reading counts; empty: smsc_default_alphabet alone",
    )
    deactivated_action: Literal["refuse", "marketing", "allow"] = Field(
        default="refuse", description="MT to a number whose consent epoch ended (gateway deactivations import) "
        "until an opt-in keyword: refuse (block_status, reason deactivated), marketing (refuse unless the MT is "
        "assigned to a program that is not marketing) or allow"
    )
    admin_block_drops_mo: bool = Field(
        default=False, description="an operator's (admin) block also keeps the mobile's MO from the application: "
        "the carrier gets ESME_ROK and an admin_dropped event is recorded; keyword MOs still act"
    )
    programs: ProgramSettings = Field(default_factory=ProgramSettings)  # README, Compliance
    revoke_all: RevokeAll = Field(default_factory=RevokeAll)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return _country(value)

    @field_validator("block_status")
    @classmethod
    def _status(cls, value: int) -> int:
        if not (0x01 <= value <= 0xFF or 0x400 <= value <= 0x4FF):
            raise ValueError("block_status must be 0x01-0xFF (standard) or 0x400-0x4FF (vendor)")
        return value

    @field_validator("smsc_default_alphabet")
    @classmethod
    def _alphabet(cls, value: str) -> str:
        try:
            find_codec_info(value)
        except LookupError:
            raise ValueError(f"unknown alphabet {value!r}") from None
        return value

    @field_validator("smsc_default_alphabets")
    @classmethod
    def _alphabets(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(cls._alphabet(v) for v in value))

    @property
    def mo_alphabets(self) -> tuple[str, ...]:
        """The readings of an MO's data_coding 0, the first the default (replies use smsc_default_alphabet)."""
        return tuple(self.smsc_default_alphabets) or (self.smsc_default_alphabet,)

    @model_validator(mode="after")
    def _keyword_rules(self) -> OptoutSettings:
        for keyword, op in RESERVED.items():
            if keyword not in {normalise(k) for k in getattr(self.keywords, op)}:
                raise ValueError(
                    f"keyword {keyword!r} is reserved for op {op} and cannot be removed"
                )
        owner: dict[str, str] = {}
        for op, keyword in self._all_keywords():
            norm = normalise(keyword)
            reserved_op = RESERVED.get(norm)
            if reserved_op is not None and reserved_op != op:
                raise ValueError(f"keyword {norm!r} is reserved for op {reserved_op}, not {op}")
            if owner.setdefault(norm, op) != op:
                raise ValueError(f"keyword {norm!r} is in both op {owner[norm]} and op {op}")
        names = [c.name for c in self.custom_ops]
        if len(set(names)) != len(names):
            raise ValueError("custom_ops: op names must be unique")
        unknown = set(self.forward) - {*STANDARD_OPS, "possible_optout", *names}
        if unknown:
            raise ValueError(f"forward: unknown op {min(unknown)!r}")
        return self

    @model_validator(mode="after")
    def _program_keywords_are_no_stop_words(self) -> OptoutSettings:
        """A stop-type word (the stop op's list, every language's) always stops everything it
        answers (under revoke-all the whole business): it can be no program's keyword."""
        stops = {normalise(k) for k in self.keywords.stop} | {normalise(k) for s in self.languages for k in s.stop}
        for entry in self.programs.keywords:
            for k in (*entry.stop, *entry.start):
                if normalise(k) in stops:
                    raise ValueError(f"program keyword {normalise(k)!r} of program {entry.program!r} is a stop keyword")
        return self

    def _all_keywords(self) -> list[tuple[str, str]]:
        pairs = [(op, kw) for op in STANDARD_OPS for kw in getattr(self.keywords, op)]
        pairs += [(c.name, kw) for c in self.custom_ops for kw in c.keywords]
        pairs += [(op, kw) for s in self.languages for op in STANDARD_OPS for kw in getattr(s, op)]
        return pairs

    @property
    def config_version(self) -> str:
        """Short stable hash of the keyword and reply configuration, stored with every event."""
        fields = {"keywords", "custom_ops", "languages", "replies", "toll_free"}
        fields |= {"possible_optout_keywords", "possible_optout_acts", "implicit_reopt_in"}
        data = self.model_dump(mode="json", include=fields)
        if self.programs.keywords or self.revoke_all != RevokeAll():  # unset: versions as before
            data["compliance"] = self.model_dump(mode="json", include={"programs": {"keywords"}, "revoke_all": True})
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def forwards(self, op: str) -> bool:
        """Whether an MO classified as `op` is forwarded to the application (default yes)."""
        return self.forward.get(op, "forward") == "forward"

    def reply_text(self, op: str, country: str | None, language: str | None = None) -> str | None:
        """The reply for op to a mobile of `country`; a language set's own reply wins."""
        if language is not None and op in STANDARD_OPS:
            for entry in self.languages:
                if entry.language == language and op in entry.replies:
                    return entry.replies[op]
        if op in STANDARD_OPS:
            reply: Reply = getattr(self.replies, op)
            return reply.for_country(country)
        for custom in self.custom_ops:
            if custom.name == op and custom.reply is not None:
                return custom.reply.for_country(country)
        return None
