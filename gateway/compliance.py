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

import asyncio
import logging
import struct
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
from gateway.smpp.schedule import (
    expires_by,
    parse_schedule,
    schedule_span,
    schedule_start,
    smpp_absolute,
    with_schedule,
)

if TYPE_CHECKING:
    from gateway.config import Account
    from gateway.optout import OptoutPolicy
    from gateway.store.index import ProgramBlocks

log = logging.getLogger(__name__)
_LENGTH = struct.Struct("!I").pack


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
    __slots__ = ("minute", "profiles", "result", "stamp")

    def __init__(self, profiles: tuple[qh.Profile, ...]) -> None:
        self.profiles = profiles
        self.minute = -1
        self.result: float | None = None
        self.stamp = b""  # result as an SMPP absolute time (defer), computed once per minute


class QuietCache:
    """Recipient -> window profile, profile -> per-minute verdict.

    Keyed by the whole number: phonenumbers assigns zones and states per exchange prefix, so one
    area code can span zones (850: Central and Eastern). A recipient's memo is the one shared by
    every number with the same profile (zones, rule, holidays), so the per-minute work is per
    profile; an ambiguous destination (two readings) shares the memo of its two profiles, the
    window open under both. by_key and by_pair are bounded by max_entries (cleared when full)."""

    def __init__(self, rules: qh.QuietRules, max_entries: int) -> None:
        self.rules = rules
        self.max_entries = max_entries
        self.by_key: dict[int, _Memo] = {}
        self.by_pair: dict[int, tuple[int, _Memo]] = {}  # national reading -> (international, memo)
        self._memos: dict[tuple[qh.Profile, ...], _Memo] = {}
        self._profiles: dict[int, qh.Profile] = {}

    def hold_until(self, mobile: int, now: float, other: int | None = None) -> float | None:
        return self.memo(mobile, now, other).result

    def memo(self, mobile: int, now: float, other: int | None = None) -> _Memo:
        """The recipient's verdict for now's minute: .result (None: open) and .stamp. other: the
        international reading of an ambiguous destination (numbers.international_reading)."""
        memo = self.by_key.get(mobile) if other is None else self._pair(mobile, other)
        if memo is None:
            memo = self._memo_for(mobile)
        minute = int(now // 60)
        if memo.minute != minute:
            result = memo.result = qh.next_allowed_all(memo.profiles, now)
            memo.stamp = b"" if result is None else smpp_absolute(result)
            memo.minute = minute
        return memo

    def hold_at(self, mobile: int, at: float, other: int | None = None) -> float | None:
        """The recipient's verdict at a scheduled instant (not memoised: scheduled MTs are rare)."""
        memo = (self.by_key.get(mobile) if other is None else self._pair(mobile, other)) or self._memo_for(mobile)
        return qh.next_allowed_all(memo.profiles, at)

    def _pair(self, mobile: int, other: int) -> _Memo:
        found = self.by_pair.get(mobile)
        if found is not None and found[0] == other:
            return found[1]
        if len(self.by_pair) >= self.max_entries:
            self.by_pair.clear()
        profiles = tuple(dict.fromkeys((self._profile(mobile), self._profile(other))))  # the same one: once
        memo = self._shared(profiles)
        self.by_pair[mobile] = (other, memo)
        return memo

    def _memo_for(self, mobile: int) -> _Memo:
        if len(self.by_key) >= self.max_entries:
            self.by_key.clear()
        memo = self.by_key[mobile] = self._shared((self._profile(mobile),))
        return memo

    def _profile(self, mobile: int) -> qh.Profile:
        profile = self._profiles.get(mobile)
        if profile is None:
            if len(self._profiles) >= self.max_entries:
                self._profiles.clear()
            profile = self._profiles[mobile] = qh.profile_for(f"+{mobile}", self.rules)
        return profile

    def _shared(self, profiles: tuple[qh.Profile, ...]) -> _Memo:
        memo = self._memos.get(profiles)
        if memo is None:
            memo = self._memos[profiles] = _Memo(profiles)
        return memo


class ProgramEnforcer:
    """The per-program step of MT enforcement (see module docstring)."""

    def __init__(self, accounts: dict[str, AccountPrograms], policy: OptoutPolicy, cache: QuietCache,
                 count: Callable[[str, str, int], None]) -> None:
        self.accounts, self.p, self.cache = accounts, policy, cache
        self.block_status = policy.o.block_status
        self.count = count  # (system_id, reason, n)
        self.marketing: frozenset[str] = frozenset()  # "<account>/<program>" of marketing programs
        self.deactivated: dict[str, str] = {}  # "<account>/<program>" -> its own deactivated (refuse | allow)
        self._deferred: dict[str, int] = {}  # deferrals per account not yet counted (one loop iteration)
        # MtEnforcer._refuse_blocked: a program opt-out answered as any block (block_mode "receipt" too)
        self.refuse_blocked: Callable[[EsmeSession, P.Pdu, bytes, str, int, str], MtVerdict] | None = None

    def deactivated_refuses(self, system_id: str, origin: str, raw: bytes, action: str) -> bool:
        """An MT to a number whose consent epoch ended: refused? Its program's own `deactivated`,
        else optout.deactivated_action (action; "marketing": refused unless assigned to a program
        that is not marketing). Cold path: after an index hit."""
        entry = self.accounts.get(system_id)
        found = assign(entry, origin, raw) if entry is not None else None
        own = self.deactivated.get(found[0]) if found is not None else None
        if own is not None:
            return own == "refuse"
        if action == "marketing":
            return found is None or found[0] in self.marketing
        return action != "allow"

    def check(self, esme: EsmeSession, pdu: P.Pdu, mobile: int, origin: str, dst_ton: int = 1,
              dst_addr: bytes = b"", src_len: int = -1) -> MtVerdict | None:
        """An ambiguous destination (dst_ton not 1) is refused when either of its readings opted out of
        the program (numbers.international_reading), as for a block, and held when either reading is
        in quiet hours. src_len: the source_addr's length from mt_scan (finds the schedule at once)."""
        entry = self.accounts.get(esme.system_id)
        if entry is None:
            return None
        raw = pdu.raw
        found = entry.by_number.get(origin)
        if found is None:  # no service_type (its first byte NUL) and no TLV programs: the default at once
            found = entry.default if entry.by_number_only or not (raw[16] or entry.by_tlv) else assign(
                entry, origin, raw)
            if found is None:
                return None
        key, action, status = found
        opted_out = self.p.index.programs.get(key)
        if opted_out and (mobile in opted_out or (dst_ton != 1 and self._other_in(opted_out, dst_ton, dst_addr))):
            if self.refuse_blocked is not None:  # as any block: optout.block_mode, evidence for the program
                return self.refuse_blocked(esme, pdu, dst_addr, "program", mobile, key)
            self._refused(esme, "program", key, mobile)
            return MtVerdict(status=self.block_status)
        if not action:  # transactional, informational, or quiet hours off
            return None
        now = self.p.clock()
        start = schedule_start(raw, src_len, len(dst_addr)) if pdu.command_id == P.SUBMIT_SM else -1
        if start > 0 and raw[start]:  # the application scheduled it: judge at that time
            return self._scheduled(esme, raw, now, found, mobile, dst_ton, dst_addr)
        memo = self.cache.by_key.get(mobile) if dst_ton == 1 else None  # the common case: one lookup
        if memo is None or memo.minute != int(now // 60):  # once per recipient profile and minute
            other = international_reading(dst_ton, dst_addr, self.p.plan) if dst_ton != 1 else None
            memo = self.cache.memo(mobile, now, other)
        if memo.result is None:
            return None
        if action == "defer" and start > 0 and not (raw[start + 1] and expires_by(raw, start + 1, memo.result, now)):
            self._defer_counted(esme.system_id)
            return MtVerdict(raw=_LENGTH(len(raw) + len(memo.stamp)) + raw[4:start] + memo.stamp + raw[start:])
        self._refused(esme, "quiet_hours", key, mobile)
        return MtVerdict(status=status)

    def _other_in(self, opted_out: ProgramBlocks, ton: int, addr: bytes) -> bool:
        other = international_reading(ton, addr, self.p.plan)
        return other is not None and other in opted_out

    def _scheduled(self, esme: EsmeSession, raw: bytes, now: float, found: Assigned, mobile: int,
                   dst_ton: int, dst_addr: bytes) -> MtVerdict | None:
        """An MT with a schedule_delivery_time: quiet hours at the requested time (now when it is past
        or unreadable); defer moves it to the next allowed minute at or after it, never earlier."""
        key, action, status = found
        span = schedule_span(raw)
        if span is None:  # cannot happen after mt_scan; judged as unscheduled data_sm would be
            span = (0, 0)
        requested = parse_schedule(raw[span[0]:span[1]], now) if span[1] > span[0] else None
        other = international_reading(dst_ton, dst_addr, self.p.plan) if dst_ton != 1 else None
        hold = self.cache.hold_at(mobile, now if requested is None else max(requested, now), other)
        if hold is None:
            return None
        if action == "defer" and span[1] > span[0] and not expires_by(raw, span[1] + 1, hold, now):
            self._defer_counted(esme.system_id)
            return MtVerdict(raw=with_schedule(raw, span, smpp_absolute(hold)))
        self._refused(esme, "quiet_hours", key, mobile)
        return MtVerdict(status=status)

    def _defer_counted(self, system_id: str) -> None:
        """A deferral: counted per account once per loop iteration (metric and INFO summary), not per
        message; deferrals are no evidence (the message goes)."""
        deferred = self._deferred
        n = deferred.get(system_id)
        if n is None:
            if not deferred:
                asyncio.get_running_loop().call_soon(self.flush_deferred)
            deferred[system_id] = 1
        else:
            deferred[system_id] = n + 1

    def flush_deferred(self) -> None:
        deferred, self._deferred = self._deferred, {}
        for system_id, n in deferred.items():
            self.count(system_id, "quiet_hours_deferred", n)

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
        if action and self._multi_held(raw, mobile, other):
            return "quiet_hours", address, status
        return None

    def _multi_held(self, raw: bytes, mobile: int, other: int | None) -> bool:
        """A submit_multi destination inside quiet hours (under either reading), at the application's
        schedule if it set one."""
        now = self.p.clock()
        try:
            start = F.submit_multi_dests(raw)[2] + 3  # after esm_class, protocol_id, priority_flag
        except MalformedPduError:
            start = -1
        end = raw.find(0, start, start + 17) if start > 0 else -1
        requested = parse_schedule(raw[start:end], now) if end > start else None
        if requested is None or requested <= now:
            return self.cache.memo(mobile, now, other).result is not None
        return self.cache.hold_at(mobile, requested, other) is not None

    def _refused(self, esme: EsmeSession, reason: str, program: str, mobile: int) -> None:
        """Counted, and evidence per number too, its account the program."""
        self.count(esme.system_id, reason, 1)
        self.p.refusals.note(mobile, reason, program)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("mt_program", extra={"system_id": esme.system_id, "reason": reason, "program": program,
                                           "address": redact(str(mobile).encode())})


def program_enforcer(policy: OptoutPolicy, count: Callable[[str, str, int], None]) -> ProgramEnforcer | None:
    """The per-program step for policy's accounts, None when no account declares programs."""
    accounts = index_programs([state.config for state in policy.proxy.accounts.values()])
    if not accounts:
        return None
    settings = policy.o.programs
    cache = QuietCache(settings.quiet_hours.rules(), settings.quiet_cache_max)
    enforcer = ProgramEnforcer(accounts, policy, cache, count)
    programs = [(state.config.system_id, p) for state in policy.proxy.accounts.values() for p in state.config.programs]
    enforcer.marketing = frozenset(f"{sid}/{p.name}" for sid, p in programs if p.category == "marketing")
    enforcer.deactivated = {f"{sid}/{p.name}": p.deactivated for sid, p in programs if p.deactivated is not None}
    return enforcer
