"""MT compliance per program: program opt-outs (scope "program") and quiet hours.

MtEnforcer.check calls ProgramEnforcer.check for an MT that passed the block check, only when
some account declares programs (one attribute test otherwise). Hot path: a dict lookup for the
program (by originating number, then service_type, then a vendor TLV, then the default), one
bitmap lookup for its opt-outs (both readings of an ambiguous destination), and for a marketing
program the recipient's window from a per-minute memo (QuietCache, per number): zoneinfo work
only once per profile and minute. A submit_sm with its own schedule_delivery_time is judged at
that time.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.errors import MalformedPduError
from gateway.logs import redact
from gateway.policy import quiet_hours as qh
from gateway.policy.compliance_settings import Program
from gateway.policy.numbers import INVALID, international_reading, mobile_key
from gateway.proxy import EsmeSession, MtVerdict
from gateway.smpp import fields as F
from gateway.smpp import pdu as P

if TYPE_CHECKING:
    from gateway.config import Account
    from gateway.optout import OptoutPolicy
    from gateway.store.index import ProgramBlocks

log = logging.getLogger(__name__)


Assigned = tuple[str, str, int]  # ("<account>/<program>", quiet action: "" never held | reject | defer, status)


@dataclass(slots=True)
class AccountPrograms:
    """One account's programs, indexed for assignment."""

    by_number: dict[str, Assigned] = field(default_factory=dict)
    by_service_type: dict[bytes, Assigned] = field(default_factory=dict)
    by_tlv: list[tuple[int, bytes, Assigned]] = field(default_factory=list)
    default: Assigned | None = None
    by_number_only: bool = True  # no service_type or TLV programs: a number, else the default


def assigned(system_id: str, p: Program) -> Assigned:
    action = p.quiet_hours if p.category in qh.HELD_CATEGORIES and p.quiet_hours != "off" else ""
    return f"{system_id}/{p.name}", action, p.quiet_status


def index_programs(accounts: list[Account]) -> dict[str, AccountPrograms]:
    out: dict[str, AccountPrograms] = {}
    for account in accounts:
        if not account.programs:
            continue
        entry = out[account.system_id] = AccountPrograms()
        for p in account.programs:
            named = assigned(account.system_id, p)
            for number in p.numbers:
                entry.by_number[number] = named
            for s in p.service_types:
                entry.by_service_type[s.encode("ascii")] = named
                entry.by_number_only = False
            if p.tlv_tag is not None and p.tlv_value is not None:
                entry.by_tlv.append((p.tlv_tag, p.tlv_value.encode("utf-8"), named))
                entry.by_number_only = False
            if p.default:
                entry.default = named
    return out


def assign(entry: AccountPrograms, origin: str, raw: bytes) -> Assigned | None:
    """The MT's program: originating number, service_type, vendor TLV, else the default."""
    found = entry.by_number.get(origin)
    if found is not None:
        return found
    if entry.by_service_type and len(raw) > 16 and raw[16]:  # a service_type (its first byte is no NUL)
        end = raw.find(b"\x00", 16, 22)
        found = entry.by_service_type.get(raw[16:end]) if end > 0 else None
        if found is not None:
            return found
    if entry.by_tlv:
        found = _by_tlv(entry, raw)
        if found is not None:
            return found
    return entry.default


def _by_tlv(entry: AccountPrograms, raw: bytes) -> Assigned | None:
    try:
        tlvs = (F.parse_data_sm(raw) if raw[4:8] == b"\x00\x00\x01\x03" else F.parse_short_message(raw)).tlvs
    except MalformedPduError:  # submit_multi too: its TLVs are not read here (number, service_type, default)
        return None
    for tag, value, named in entry.by_tlv:
        if tlvs.get(tag, b"").rstrip(b"\x00") == value:
            return named
    return None


class _Memo:
    __slots__ = ("minute", "profile", "result", "stamp")

    def __init__(self, profile: qh.Profile) -> None:
        self.profile = profile
        self.minute = -1
        self.result: float | None = None
        self.stamp = b""  # result as an SMPP absolute time (defer), computed once per minute


class QuietCache:
    """Recipient -> window profile, profile -> per-minute verdict.

    Keyed by the whole number: phonenumbers assigns zones and states per exchange prefix, so one
    area code can span zones (850: Central and Eastern). A recipient's memo is the one shared by
    every number with the same profile (zones, rule, holidays), so the per-minute work is per
    profile; by_key is bounded by max_entries (cleared when full)."""

    def __init__(self, rules: qh.QuietRules, max_entries: int) -> None:
        self.rules = rules
        self.max_entries = max_entries
        self.by_key: dict[int, _Memo] = {}
        self._memos: dict[qh.Profile, _Memo] = {}

    def hold_until(self, mobile: int, now: float) -> float | None:
        return self.memo(mobile, now).result

    def memo(self, mobile: int, now: float) -> _Memo:
        """The recipient's verdict for now's minute: .result (None: open) and .stamp."""
        memo = self.by_key.get(mobile)
        if memo is None:
            memo = self._memo_for(mobile)
        minute = int(now // 60)
        if memo.minute != minute:
            result = memo.result = qh.next_allowed(memo.profile, now)
            memo.stamp = b"" if result is None else smpp_absolute(result)
            memo.minute = minute
        return memo

    def hold_at(self, mobile: int, at: float) -> float | None:
        """The recipient's verdict at a scheduled instant (not memoised: scheduled MTs are rare)."""
        memo = self.by_key.get(mobile) or self._memo_for(mobile)
        return qh.next_allowed(memo.profile, at)

    def _memo_for(self, mobile: int) -> _Memo:
        if len(self.by_key) >= self.max_entries:
            self.by_key.clear()
        profile = qh.profile_for(f"+{mobile}", self.rules)
        memo = self._memos.get(profile)
        if memo is None:
            memo = self._memos[profile] = _Memo(profile)
        self.by_key[mobile] = memo
        return memo


class ProgramEnforcer:
    """The per-program step of MT enforcement (see module docstring)."""

    def __init__(self, accounts: dict[str, AccountPrograms], policy: OptoutPolicy, cache: QuietCache,
                 count: Callable[[EsmeSession, str], None]) -> None:
        self.accounts, self.p, self.cache = accounts, policy, cache
        self.block_status = policy.o.block_status
        self.count = count
        self.marketing: frozenset[str] = frozenset()  # "<account>/<program>" of marketing programs

    def marketing_or_unassigned(self, system_id: str, origin: str, raw: bytes) -> bool:
        """optout.deactivated_action "marketing": does this MT stay refused (cold path)?"""
        entry = self.accounts.get(system_id)
        found = assign(entry, origin, raw) if entry is not None else None
        return found is None or found[0] in self.marketing

    def check(self, esme: EsmeSession, pdu: P.Pdu, mobile: int, origin: str, dst_ton: int = 1,
              dst_addr: bytes = b"") -> MtVerdict | None:
        """An ambiguous destination (dst_ton not 1) is refused when either of its readings opted out of
        the program (numbers.international_reading), as for a block."""
        entry = self.accounts.get(esme.system_id)
        if entry is None:
            return None
        found = entry.by_number.get(origin) or (entry.default if entry.by_number_only else assign(entry, origin,
                                                                                                    pdu.raw))
        if found is None:
            return None
        key, action, status = found
        opted_out = self.p.index.programs.get(key)
        if opted_out and (mobile in opted_out or (dst_ton != 1 and self._other_in(opted_out, dst_ton, dst_addr))):
            self._refused(esme, "program", key, mobile)
            return MtVerdict(status=self.block_status)
        if not action:  # transactional, informational, or quiet hours off
            return None
        now = self.p.clock()
        span = schedule_span(pdu.raw) if pdu.command_id == P.SUBMIT_SM else None
        if span is not None and span[1] > span[0]:  # the application scheduled it: judge at that time
            return self._scheduled(esme, pdu.raw, span, now, found, mobile)
        memo = self.cache.by_key.get(mobile)
        if memo is None or memo.minute != int(now // 60):  # once per recipient profile and minute
            memo = self.cache.memo(mobile, now)
        hold = memo.result
        if hold is None:
            return None
        if action == "defer" and span is not None:
            self._refused(esme, "quiet_hours_deferred", key, mobile)
            return MtVerdict(raw=with_schedule(pdu.raw, span, memo.stamp))
        self._refused(esme, "quiet_hours", key, mobile)
        return MtVerdict(status=status)

    def _other_in(self, opted_out: ProgramBlocks, ton: int, addr: bytes) -> bool:
        other = international_reading(ton, addr, self.p.plan)
        return other is not None and other in opted_out

    def _scheduled(self, esme: EsmeSession, raw: bytes, span: tuple[int, int], now: float, found: Assigned,
                   mobile: int) -> MtVerdict | None:
        """An MT with a schedule_delivery_time: quiet hours at the requested time (now when it is past
        or unreadable); defer moves it to the next allowed minute at or after it, never earlier."""
        key, action, status = found
        requested = parse_schedule(raw[span[0]:span[1]], now)
        hold = self.cache.hold_at(mobile, now if requested is None else max(requested, now))
        if hold is None:
            return None
        if action == "defer":
            self._refused(esme, "quiet_hours_deferred", key, mobile)
            return MtVerdict(raw=with_schedule(raw, span, smpp_absolute(hold)))
        self._refused(esme, "quiet_hours", key, mobile)
        return MtVerdict(status=status)

    def multi_refusal(self, system_id: str, origin: str, raw: bytes, address: F.Address) -> tuple[
            str, F.Address, int] | None:
        """A submit_multi destination: (reason, address, status) when its program refuses it. One
        schedule cannot suit every destination: quiet hours refuse (as reject) under defer too."""
        entry = self.accounts.get(system_id)
        mobile = mobile_key(address.ton, address.addr, self.p.plan) if entry is not None else None
        found = assign(entry, origin, raw) if entry is not None else None
        if found is None or mobile is None or mobile == INVALID:
            return None
        key, action, status = found
        other = international_reading(address.ton, address.addr, self.p.plan)
        if self.p.index.program_blocked(mobile, key) or (other is not None and self.p.index.program_blocked(other, key)):
            return "program", address, self.block_status
        if action and self._multi_held(raw, mobile):
            return "quiet_hours", address, status
        return None

    def _multi_held(self, raw: bytes, mobile: int) -> bool:
        """A submit_multi destination inside quiet hours, at the application's schedule if it set one."""
        now = self.p.clock()
        try:
            start = F.submit_multi_dests(raw)[2] + 3  # after esm_class, protocol_id, priority_flag
        except MalformedPduError:
            start = -1
        end = raw.find(0, start, start + 17) if start > 0 else -1
        requested = parse_schedule(raw[start:end], now) if end > start else None
        if requested is None or requested <= now:
            return self.cache.memo(mobile, now).result is not None
        return self.cache.hold_at(mobile, requested) is not None

    def _refused(self, esme: EsmeSession, reason: str, program: str, mobile: int) -> None:
        """Counted; a refusal (not a deferral) is evidence per number too, its account the program."""
        self.count(esme, reason)
        if reason != "quiet_hours_deferred":
            self.p.refusals.note(mobile, reason, program)
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


def parse_relative(value: bytes, now: float) -> float | None:
    """A relative SMPP time 'YYMMDDhhmmss000R' (SMPP 3.4 section 7.1.1.2) as unix seconds after now."""
    if len(value) != 16 or value[15:16] != b"R" or not value[:15].isdigit():
        return None
    y, mo, d, h, mi, sec = (int(value[i:i + 2]) for i in range(0, 12, 2))
    base = dt.datetime.fromtimestamp(now, dt.UTC)
    months = base.month - 1 + mo + 12 * y
    year, month = base.year + months // 12, months % 12 + 1
    day = min(base.day, calendar.monthrange(year, month)[1])
    moved = base.replace(year=year, month=month, day=day) if year <= dt.MAXYEAR else None
    if moved is None:
        return None
    return moved.timestamp() + d * 86400 + h * 3600 + mi * 60 + sec


def parse_schedule(value: bytes, now: float) -> float | None:
    """schedule_delivery_time (absolute or relative) as unix seconds, None when unreadable."""
    return parse_relative(value, now) if value[15:16] == b"R" else parse_absolute(value)


def schedule_span(raw: bytes) -> tuple[int, int] | None:
    """(start, end) of a submit_sm's schedule_delivery_time (end at its NUL), None when unreadable."""
    find = raw.find
    pos = find(0, 16, 22)  # service_type's NUL
    if pos > 0:
        pos = find(0, pos + 3, pos + 68)  # source_addr's, after its TON and NPI
    if pos > 0:
        pos = find(0, pos + 3, pos + 68)  # destination_addr's
    start = pos + 4  # after esm_class, protocol_id, priority_flag
    end = find(0, start, start + 17) if pos > 0 else -1
    return None if end < 0 else (start, end)


def with_schedule(raw: bytes, span: tuple[int, int], stamp: bytes) -> bytes:
    """raw with the schedule_delivery_time at span replaced by stamp, every other byte as it was."""
    start, end = span
    length = len(raw) - (end - start) + len(stamp)
    return length.to_bytes(4, "big") + raw[4:start] + stamp + raw[end:]


def defer_raw(raw: bytes, hold: float, stamp: bytes = b"") -> bytes | None:
    """raw with schedule_delivery_time set to hold (stamp: hold already formatted), every other byte
    as it was; raw itself when the application already scheduled it at or after hold; None when the
    body cannot be read."""
    span = schedule_span(raw)
    if span is None:
        return None
    if span[1] > span[0]:
        current = parse_absolute(raw[span[0]:span[1]])
        if current is not None and current >= hold:
            return raw
    return with_schedule(raw, span, stamp or smpp_absolute(hold))


def program_enforcer(policy: OptoutPolicy, count: Callable[[EsmeSession, str], None]) -> ProgramEnforcer | None:
    """The per-program step for policy's accounts, None when no account declares programs."""
    accounts = index_programs([state.config for state in policy.proxy.accounts.values()])
    if not accounts:
        return None
    settings = policy.o.programs
    cache = QuietCache(settings.quiet_hours.rules(), settings.quiet_cache_max)
    enforcer = ProgramEnforcer(accounts, policy, cache, count)
    enforcer.marketing = frozenset(f"{state.config.system_id}/{p.name}" for state in policy.proxy.accounts.values()
                                   for p in state.config.programs if p.category == "marketing")
    return enforcer
