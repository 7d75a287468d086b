"""MT compliance per program: program opt-outs (scope "program") and quiet hours.

MtEnforcer.check calls ProgramEnforcer.check for an MT that passed the block check, only when
some account declares programs (one attribute test otherwise). Hot path: a dict lookup for the
program (by originating number, then service_type, then a vendor TLV, then the default), one
bitmap lookup for its opt-outs, and for a marketing program the recipient's window from a
per-minute memo (QuietCache): zoneinfo work only once per profile and minute.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.errors import MalformedPduError
from gateway.logs import redact
from gateway.policy import quiet_hours as qh
from gateway.policy.compliance_settings import Program
from gateway.proxy import EsmeSession, MtVerdict
from gateway.smpp import fields as F
from gateway.smpp import pdu as P

if TYPE_CHECKING:
    from gateway.config import Account
    from gateway.optout import OptoutPolicy

log = logging.getLogger(__name__)
_NANP_LOW, _NANP_HIGH = 10**10, 2 * 10**10  # +1 NPA NXX XXXX as an int


@dataclass(slots=True)
class AccountPrograms:
    """One account's programs, indexed for assignment."""

    by_number: dict[str, tuple[str, Program]] = field(default_factory=dict)
    by_service_type: dict[bytes, tuple[str, Program]] = field(default_factory=dict)
    by_tlv: list[tuple[int, bytes, str, Program]] = field(default_factory=list)
    default: tuple[str, Program] | None = None


def index_programs(accounts: list[Account]) -> dict[str, AccountPrograms]:
    out: dict[str, AccountPrograms] = {}
    for account in accounts:
        if not account.programs:
            continue
        entry = out[account.system_id] = AccountPrograms()
        for p in account.programs:
            named = (f"{account.system_id}/{p.name}", p)
            for number in p.numbers:
                entry.by_number[number] = named
            for s in p.service_types:
                entry.by_service_type[s.encode("ascii")] = named
            if p.tlv_tag is not None and p.tlv_value is not None:
                entry.by_tlv.append((p.tlv_tag, p.tlv_value.encode("utf-8"), *named))
            if p.default:
                entry.default = named
    return out


def assign(entry: AccountPrograms, origin: str, raw: bytes) -> tuple[str, Program] | None:
    """The MT's program: originating number, service_type, vendor TLV, else the default."""
    found = entry.by_number.get(origin)
    if found is not None:
        return found
    if entry.by_service_type:
        end = raw.find(b"\x00", 16, 22)
        found = entry.by_service_type.get(raw[16:end]) if end > 0 else None
        if found is not None:
            return found
    if entry.by_tlv:
        found = _by_tlv(entry, raw)
        if found is not None:
            return found
    return entry.default


def _by_tlv(entry: AccountPrograms, raw: bytes) -> tuple[str, Program] | None:
    try:
        tlvs = F.parse_short_message(raw).tlvs
    except MalformedPduError:
        return None
    for tag, value, key, program in entry.by_tlv:
        if tlvs.get(tag, b"").rstrip(b"\x00") == value:
            return key, program
    return None


class _Memo:
    __slots__ = ("minute", "profile", "result")

    def __init__(self, profile: qh.Profile) -> None:
        self.profile = profile
        self.minute = -1
        self.result: float | None = None


class QuietCache:
    """Recipient -> window profile (NANP by area code, others by number), profile -> per-minute verdict."""

    def __init__(self, rules: qh.QuietRules, max_entries: int) -> None:
        self.rules = rules
        self.max_entries = max_entries
        self._by_key: dict[int, _Memo] = {}
        self._memos: dict[qh.Profile, _Memo] = {}

    def hold_until(self, mobile: int, now: float) -> float | None:
        key = mobile // 10**7 if _NANP_LOW <= mobile < _NANP_HIGH else mobile
        memo = self._by_key.get(key)
        if memo is None:
            memo = self._memo_for(key, mobile)
        minute = int(now // 60)
        if memo.minute != minute:
            memo.result = qh.next_allowed(memo.profile, now)
            memo.minute = minute
        return memo.result

    def _memo_for(self, key: int, mobile: int) -> _Memo:
        if len(self._by_key) >= self.max_entries:
            self._by_key.clear()
        profile = qh.profile_for(f"+{mobile}", self.rules)
        memo = self._memos.get(profile)
        if memo is None:
            memo = self._memos[profile] = _Memo(profile)
        self._by_key[key] = memo
        return memo


class ProgramEnforcer:
    """The per-program step of MT enforcement (see module docstring)."""

    def __init__(self, accounts: dict[str, AccountPrograms], policy: OptoutPolicy, cache: QuietCache,
                 count: Callable[[EsmeSession, str], None]) -> None:
        self.accounts, self.p, self.cache = accounts, policy, cache
        self.block_status = policy.o.block_status
        self.count = count

    def check(self, esme: EsmeSession, pdu: P.Pdu, mobile: int, origin: str) -> MtVerdict | None:
        entry = self.accounts.get(esme.system_id)
        if entry is None:
            return None
        found = assign(entry, origin, pdu.raw)
        if found is None:
            return None
        key, program = found
        if self.p.index.program_blocked(mobile, key):
            self._refused(esme, "program", key, mobile)
            return MtVerdict(status=self.block_status)
        if program.category != "marketing" or program.quiet_hours == "off":
            return None
        hold = self.cache.hold_until(mobile, self.p.clock())
        if hold is None:
            return None
        if program.quiet_hours == "defer" and pdu.command_id == P.SUBMIT_SM:
            raw = defer_raw(pdu.raw, hold)
            if raw is not None:
                self._refused(esme, "quiet_hours_deferred", key, mobile)
                return MtVerdict(raw=raw) if raw != pdu.raw else None
        self._refused(esme, "quiet_hours", key, mobile)
        return MtVerdict(status=program.quiet_status)

    def _refused(self, esme: EsmeSession, reason: str, program: str, mobile: int) -> None:
        self.count(esme, reason)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("mt_program", extra={"system_id": esme.system_id, "reason": reason, "program": program,
                                           "address": redact(str(mobile).encode())})


def smpp_absolute(at: float) -> bytes:
    """SMPP 3.4 section 7.1.1 absolute time 'YYMMDDhhmmsstnnp' in UTC (t 0, nn 00, p '+')."""
    stamp = dt.datetime.fromtimestamp(at, dt.UTC)
    return stamp.strftime("%y%m%d%H%M%S").encode() + b"000+"


def parse_absolute(value: bytes) -> float | None:
    """An absolute SMPP time as unix seconds, None for relative ('R') or anything unreadable."""
    if len(value) != 16 or value[15:16] not in (b"+", b"-") or not value[:15].isdigit():
        return None
    try:
        base = dt.datetime.strptime(value[:12].decode(), "%y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    offset = int(value[13:15]) * 900 * (1 if value[15:16] == b"+" else -1)
    return base.timestamp() + int(value[12:13]) / 10 - offset


def defer_raw(raw: bytes, hold: float) -> bytes | None:
    """raw with schedule_delivery_time set to hold (every other byte as it was), raw itself when the
    application already scheduled it at or after hold; None when the body cannot be read."""
    try:
        _, _, _, pos = F._leading(raw)
        start = pos + 3  # esm_class, protocol_id, priority_flag
        end = raw.index(b"\x00", start, start + 17)
    except (MalformedPduError, ValueError):
        return None
    current = parse_absolute(raw[start:end])
    if current is not None and current >= hold:
        return raw
    body = raw[16:start] + smpp_absolute(hold) + raw[end:]
    return P.HEADER.pack(16 + len(body), *P.HEADER.unpack_from(raw)[1:]) + body


def program_enforcer(policy: OptoutPolicy, count: Callable[[EsmeSession, str], None]) -> ProgramEnforcer | None:
    """The per-program step for policy's accounts, None when no account declares programs."""
    accounts = index_programs([state.config for state in policy.proxy.accounts.values()])
    if not accounts:
        return None
    settings = policy.o.programs
    cache = QuietCache(settings.quiet_hours.rules(), settings.quiet_cache_max)
    return ProgramEnforcer(accounts, policy, cache, count)
