"""MT enforcement: every submit_sm, data_sm and submit_multi is checked here before the carrier.

- Source: tenants send only from what they own (policy.senders); ESME_RINVSRCADR otherwise.
- Destination: keyed as a carrier reads it (policy.numbers.parse_number). A block refuses it
  (optout.block_status); an ambiguous one (TON 0, 3-6, digits read as national by their length)
  also when its international reading is blocked (numbers.international_reading). An address
  that looks like a number but cannot be normalised is refused with ESME_RINVDSTADR, never
  forwarded unchecked. submit_multi distribution lists: refused unless optout.distribution_lists
  is "forward".
- Refusals are counted per reason (gateway_mt_rejected_total) and logged as one INFO line per
  account per LOG_INTERVAL; each refusal only at DEBUG.
- block_mode "receipt": the REJECTD receipt goes to a bound receiver of the account, else into
  the outbox within optout.rejected_receipt_queue_max per account; beyond it, it is dropped and
  counted (gateway_rejected_receipts_total{result="dropped"}).

Hot path: one dict lookup for the source verdict, the mobile as an int, one index lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aiosmpplib import DeliverSm
from aiosmpplib.state import OptionalParam

from gateway.compliance import program_enforcer
from gateway.errors import MalformedPduError
from gateway.logs import redact
from gateway.policy.numbers import (
    INVALID,
    TON_INTERNATIONAL,
    international_reading,
    mobile_key,
    parse_number,
)
from gateway.policy.senders import SenderRules
from gateway.proxy import TEMPORARY, EsmeSession, MtVerdict, OnStatus
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.smpp.own import phone as _phone

if TYPE_CHECKING:
    from gateway.optout import OptoutPolicy

log = logging.getLogger(__name__)
LOG_INTERVAL = 10.0  # seconds between a refusing account's INFO summaries
MAX_SOURCES = 100_000
MESSAGE_STATE_REJECTED = 8
REASONS = ("blocked", "invalid_destination", "invalid_source", "sender_not_allowed", "distribution_list",
           "deactivated", "program", "quiet_hours", "quiet_hours_deferred")
Source = tuple[str | None, str | None]  # (originator as the index keys it, refusal reason)


EVIDENCE = frozenset({"blocked", "deactivated", "program", "quiet_hours"})  # refusals noted per number


class RefusalTally:
    """Refusals per (account, reason) since the last summary. Pure."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, account: str, reason: str, n: int = 1) -> bool:
        """Count; True when this opens a new interval (schedule the summary)."""
        first = not self.counts
        key = (account, reason)
        self.counts[key] = self.counts.get(key, 0) + n
        return first

    def drain(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (account, reason), n in self.counts.items():
            out.setdefault(account, {})[reason] = n
        self.counts = {}
        return out


class MtEnforcer:
    def __init__(self, policy: OptoutPolicy) -> None:
        self.p = policy
        self.o = policy.o
        accounts = policy.proxy.accounts.values()
        self.rules = SenderRules((a.config.system_id, a.config.numbers, a.config.senders) for a in accounts)
        self._sources: dict[tuple[str, int, bytes], Source] = {}
        self._counters = {reason: policy.metrics.mt_rejected.labels(reason) for reason in REASONS}
        self.tally = RefusalTally()
        self._queued: dict[str, int] = {}  # rejected receipts this gateway put in the outbox, per account
        self._gateway_ids = 0
        self.programs = program_enforcer(policy, self._count_for)  # None: no account declares programs
        if self.programs is not None:
            self.programs.refuse_blocked = self._refuse_blocked

    def carry_over(self, old: MtEnforcer) -> None:
        """A reload rebuilt the enforcer: the refusal tally and the outbox counts go on."""
        self.tally, self._queued, self._gateway_ids = old.tally, old._queued, old._gateway_ids

    # --- the check -----------------------------------------------------------------
    def check(self, esme: EsmeSession, pdu: P.Pdu, scan: F.MtScan | None) -> MtVerdict | None:
        if scan is None:
            return self._check_multi(esme, pdu) if pdu.command_id == P.SUBMIT_MULTI else None
        src_ton, src_addr, dst_ton, dst_addr, _ = scan
        origin, refused = self._sources.get((esme.system_id, src_ton, src_addr)) or self.source(
            esme.system_id, src_ton, src_addr)
        if origin is None:
            return self._refuse(esme, pdu, refused or "invalid_source", st.ESME_RINVSRCADR, src_addr)
        mobile = mobile_key(dst_ton, dst_addr, self.p.plan)
        if mobile is None:
            return None
        if mobile == INVALID:
            return self._refuse(esme, pdu, "invalid_destination", st.ESME_RINVDSTADR, dst_addr)
        if self.p.index.is_blocked(mobile, origin, esme.system_id) or (
                dst_ton != TON_INTERNATIONAL and self._other_blocked(dst_ton, dst_addr, origin, esme.system_id)):
            reason = self.block_reason(mobile, origin, esme.system_id, pdu.raw)
            if reason is not None:
                return self._refuse_blocked(esme, pdu, dst_addr, reason, mobile)
        return None if self.programs is None else self.programs.check(esme, pdu, mobile, origin, dst_ton, dst_addr,
                                                                      len(src_addr))

    def block_reason(self, mobile: int, origin: str, system_id: str, raw: bytes = b"") -> str | None:
        """A blocked destination (cold path): "blocked", or "deactivated" when only its ended consent
        epoch blocks it (None when the MT's program says `deactivated = "allow"`, or, without a
        program's own setting, under optout.deactivated_action "allow", and under "marketing" for
        an MT assigned to a program that is not marketing: an unassigned MT is refused)."""
        if self.p.index.kinds_for(mobile, origin, system_id) != {"deactivated"}:
            return "blocked"
        action = self.o.deactivated_action
        if self.programs is not None:
            return "deactivated" if self.programs.deactivated_refuses(system_id, origin, raw, action) else None
        return None if action == "allow" else "deactivated"

    def _other_blocked(self, ton: int, addr: bytes, origin: str, system_id: str) -> bool:
        """An ambiguous destination (TON 0, 3-6 without '+'): its international reading blocked too?"""
        other = international_reading(ton, addr, self.p.plan)
        return other is not None and self.p.index.is_blocked(other, origin, system_id)

    def source(self, system_id: str, ton: int, addr: bytes) -> Source:
        """The originator as the index keys it, or (None, reason); cached: applications use few."""
        key = (system_id, ton, addr)
        found = self._sources.get(key)
        if found is None:
            if len(self._sources) >= MAX_SOURCES:
                self._sources.clear()
            found = self._sources[key] = self._judge_source(system_id, ton, addr)
        return found

    def _judge_source(self, system_id: str, ton: int, addr: bytes) -> Source:
        digits, numeric = parse_number(ton, addr, self.p.plan)
        if digits is None and numeric:  # looks like a number we cannot read: only a listed name passes
            text = addr.decode("latin-1")
            return (text, None) if self.rules.lists(system_id, text) else (None, "invalid_source")
        origin = self.p._originator(ton, addr)
        return (origin, None) if self.rules.allows(system_id, origin) else (None, "sender_not_allowed")

    def _refusal(self, system_id: str, origin: str, dst: F.Address, raw: bytes = b"") -> str | None:
        """Why a destination is refused ("blocked", "invalid_destination"), or None to send it."""
        mobile = mobile_key(dst.ton, dst.addr, self.p.plan)
        if mobile is None:
            return None
        if mobile == INVALID:
            return "invalid_destination"
        if self.p.index.is_blocked(mobile, origin, system_id):
            return self.block_reason(mobile, origin, system_id, raw)
        return "blocked" if self._other_blocked(dst.ton, dst.addr, origin, system_id) else None

    def _refused_dest(self, system_id: str, origin: str, d: F.MultiDest,
                      raw: bytes = b"") -> tuple[str, F.Address, int] | None:
        """(reason, address for unsuccess_sme, status) of a refused submit_multi destination, else None.
        A distribution list (dest_flag 2) is expanded by the carrier, out of our sight: refused with
        ESME_RINVDESTFLAG unless optout.distribution_lists = "forward"; unsuccess_sme names it
        with TON/NPI 0 and its dl_name."""
        if d.address is None:
            if self.o.distribution_lists == "forward":
                return None
            return "distribution_list", F.Address(0, 0, d.dl_name), st.ESME_RINVDESTFLAG
        reason = self._refusal(system_id, origin, d.address, raw)
        if reason is None:
            return None if self.programs is None else self.programs.multi_refusal(system_id, origin, raw, d.address)
        return reason, d.address, st.ESME_RINVDSTADR if reason == "invalid_destination" else self.o.block_status

    def _check_multi(self, esme: EsmeSession, pdu: P.Pdu) -> MtVerdict | None:
        try:
            source = F.submit_multi_source(pdu.raw)
            dests, count_at, end = F.submit_multi_dests(pdu.raw)
        except MalformedPduError as exc:
            return MtVerdict(status=exc.command_status)
        origin, refused = self.source(esme.system_id, source.ton, source.addr)
        if origin is None:
            return self._refuse(esme, pdu, refused or "invalid_source", st.ESME_RINVSRCADR, source.addr)
        keep: list[F.MultiDest] = []
        unsuccess: list[tuple[F.Address, int]] = []
        counts: dict[str, int] = {}
        for d in dests:  # one pass: no list membership tests
            verdict = self._refused_dest(esme.system_id, origin, d, pdu.raw)
            if verdict is None:
                keep.append(d)
                continue
            reason, address, status = verdict
            unsuccess.append((address, status))
            counts[reason] = counts.get(reason, 0) + 1
            self._note(esme, reason, address)
            self._detail(esme, reason, "submit_multi", address.addr)
        if not unsuccess:
            return None
        for reason, n in counts.items():
            self._count(esme, reason, n)
        if not keep:
            return MtVerdict(status=all_refused_status(unsuccess), body=F.submit_multi_resp_body(b"", unsuccess))
        return MtVerdict(raw=F.submit_multi_without(pdu.raw, keep, count_at, end), extra=unsuccess)

    # --- refusals ------------------------------------------------------------------
    def _note(self, esme: EsmeSession, reason: str, address: F.Address) -> None:
        """A submit_multi destination refused for a block: into the per-number evidence."""
        mobile = mobile_key(address.ton, address.addr, self.p.plan) if reason in EVIDENCE else None
        if mobile is not None and mobile != INVALID:
            self.p.refusals.note(mobile, reason, esme.system_id)

    def _count(self, esme: EsmeSession, reason: str, n: int = 1) -> None:
        self._count_for(esme.system_id, reason, n)

    def _count_for(self, system_id: str, reason: str, n: int) -> None:
        self._counters[reason].inc(n)
        if self.tally.add(system_id, reason, n):
            asyncio.get_running_loop().call_later(LOG_INTERVAL, self.flush_log)

    def _detail(self, esme: EsmeSession, reason: str, command: str, addr: bytes) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("mt_refused", extra={"system_id": esme.system_id, "reason": reason, "command": command,
                                           "address": redact(addr)})

    def flush_log(self) -> None:
        """One INFO line per account that had refusals since the last one."""
        for account, counts in self.tally.drain().items():
            log.info("mt_refused", extra={"system_id": account, "interval": LOG_INTERVAL, **counts})

    def _refuse(self, esme: EsmeSession, pdu: P.Pdu, reason: str, status: int, addr: bytes) -> MtVerdict:
        self._count(esme, reason)
        self._detail(esme, reason, P.command_name(pdu.command_id), addr)
        return MtVerdict(status=status)

    def _refuse_blocked(self, esme: EsmeSession, pdu: P.Pdu, dst_addr: bytes, reason: str = "blocked",
                        mobile: int | None = None, account: str = "") -> MtVerdict:
        """account: whose refusal the evidence names (a program's "<system_id>/<program>"), else the sender."""
        self._count(esme, reason)
        if mobile is not None:
            self.p.refusals.note(mobile, reason, account or esme.system_id)  # evidence per number (refusals.py)
        self._detail(esme, reason, P.command_name(pdu.command_id), dst_addr)
        if self.o.block_mode == "status":
            return MtVerdict(status=self.o.block_status)
        self._gateway_ids += 1
        message_id = f"gw{int(time.time())}{self._gateway_ids:06d}"
        body = P.cstring(message_id)
        if not F.wants_receipt(pdu.raw):
            return MtVerdict(status=0, body=body)
        src, dst = F.submit_addresses(pdu.raw)  # cold path: the full addresses
        account = esme.system_id
        # the receipt follows the answer that carries its message_id, never precedes it
        return MtVerdict(status=0, body=body, extra=lambda: self._rejected_receipt(account, message_id, src, dst))

    # --- block_mode "receipt" -------------------------------------------------------
    def _rejected_receipt(self, account: str, message_id: str, src: F.Address, dst: F.Address) -> None:
        try:
            self._send_rejected_receipt(account, rejected_receipt(message_id, src, dst))
        except Exception:  # runs in a loop callback: never let it escape
            log.exception("rejected_receipt_failed", extra={"system_id": account})

    def _send_rejected_receipt(self, account: str, raw: bytes) -> None:
        """To a bound receiver (a synthetic receipt need not queue behind the account's outbox
        backlog), else into the outbox within the cap."""
        proxy = self.p.proxy
        state = proxy.accounts.get(account)
        session = state.receiver() if state is not None else None
        outbox = proxy.outbox
        if session is not None:
            if outbox is None or account not in outbox.backlog:
                self._queued.pop(account, None)  # none of the account's rows wait: the cap counts afresh
            pdu = P.Framer().feed(raw)[0]
            session.deliver(pdu, raw, self._receipt_answered(account, raw))
            proxy.metrics.rejected_receipts.labels("delivered").inc()
            return
        self._queue_receipt(account, raw)

    def _receipt_answered(self, account: str, raw: bytes) -> OnStatus:
        def done(status: int, resp: P.Pdu | None) -> None:
            if status in TEMPORARY:  # the application asked for a retry: queue it, within the cap
                self._queue_receipt(account, raw)

        return done

    def _queue_receipt(self, account: str, raw: bytes) -> None:
        outbox = self.p.proxy.outbox
        queued = self._queued.get(account, 0)
        if outbox is None or queued >= self.o.rejected_receipt_queue_max:
            self.p.proxy.metrics.rejected_receipts.labels("dropped").inc()
            return
        self._queued[account] = queued + 1
        outbox.keep(account, raw, lambda status, resp: None)
        self.p.proxy.metrics.rejected_receipts.labels("queued").inc()


def all_refused_status(unsuccess: list[tuple[F.Address, int]]) -> int:
    """submit_multi_resp when no destination was submitted: their common status, else
    ESME_RSUBMITFAIL (see README, "submit_multi")."""
    statuses = {status for _, status in unsuccess}
    return statuses.pop() if len(statuses) == 1 else st.ESME_RSUBMITFAIL



def rejected_receipt(message_id: str, src: F.Address, dst: F.Address) -> bytes:
    """A deliver_sm receipt with stat:REJECTD for a refused MT (block_mode "receipt")."""
    stamp = time.strftime("%y%m%d%H%M", time.gmtime())
    text = f"id:{message_id} sub:001 dlvrd:000 submit date:{stamp} done date:{stamp} stat:REJECTD err:000 text:"
    raw: bytes = DeliverSm(
        short_message=text, source=_phone(dst), destination=_phone(src), esm_class=P.ESM_RECEIPT,
        registered_delivery=0,
        optional_params=[OptionalParam(P.TAG_RECEIPTED_MESSAGE_ID, message_id),
                         OptionalParam(P.TAG_MESSAGE_STATE, MESSAGE_STATE_REJECTED)],
    ).pdu()
    return raw
