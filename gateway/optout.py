"""The opt-out engine's shell: applies the pure policy decisions to the wire and the store.

MT (hot path): addresses read with struct, the mobile as an int, one in-memory index
lookup; never a database call. MO: keyword messages are acked to the carrier only after
the block change and its audit event are durable; the reply goes out through the carrier
from the number the mobile texted, and the MO is still forwarded to the application.
on_mo reads and classifies; optout_mo orders a pair's MOs and does the durable work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.config import Account
from gateway.enforcement import MtEnforcer
from gateway.errors import StoreError
from gateway.optout_mo import MoInput, MoJob, PairQueue
from gateway.policy.decide import (
    MoContext,
    MoDecision,
    ReplyLimiter,
    decide_mo,
    mo_fingerprint,
)
from gateway.policy.keywords import KeywordTable
from gateway.policy.numbers import (
    can_receive_reply,
    counterpart_for,
    e164,
    e164_digits,
    is_toll_free,
    originator_text,
    parse_number,
    plan_for_region,
    region_of,
)
from gateway.policy.program_keywords import ProgramKeywordTable, ProgramMatch
from gateway.policy.readings import best_reading, decode_readings
from gateway.policy.settings import OptoutSettings
from gateway.policy.text import sar_is_segment
from gateway.program_mo import (
    clarify_decision,
    clarify_open,
    program_decision,
    revoke_all_targets,
)
from gateway.proxy import CarrierLink, EsmeSession, MtFastView, MtVerdict, Proxy
from gateway.refusals import RefusalLog
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.store.base import AuditEvent, BlockKey, Store
from gateway.store.index import BlockIndex

log = logging.getLogger(__name__)
MAX_ORIGINATORS = 100_000


class OptoutPolicy:
    """Implements proxy.Policy with the keyword engine, the block index and the store."""

    def __init__(self, settings: OptoutSettings, store: Store, index: BlockIndex, proxy: Proxy) -> None:
        metrics = proxy.metrics
        self.proxy = proxy
        self.o = settings
        self.store = store
        self.index = index
        self.metrics = metrics
        self.region = settings.default_region  # numbers are keyed by it: a restart changes it
        self.plan = plan_for_region(settings.default_region)
        self.limiter = ReplyLimiter(settings.reply_window)
        self._originators: dict[tuple[int, bytes], str] = {}
        self._reply_ref = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.queue = PairQueue(self.tasks)  # keyword MOs, one pair at a time
        self.on_applied: Callable[[BlockKey, int], None] | None = None
        self.refusals = RefusalLog()  # MT refused for a block, per mobile: flushed in batches (app)
        self.clock: Callable[[], float] = time.time  # revoke-all's date and quiet hours (tests inject)
        self.reconfigure(self.prepare(settings))
        self.refresh_gauges()

    # --- configuration (at start and on reload) -----------------------------------------
    def prepare(self, settings: OptoutSettings) -> Tables:
        """The keyword tables of settings, built aside (a reload swaps them in with reconfigure)."""
        return Tables(settings, KeywordTable(settings), ProgramKeywordTable(settings.programs.keywords))

    def reconfigure(self, tables: Tables) -> None:
        """Swap in the keyword configuration and what derives from the proxy's accounts (after the
        proxy took a reload's accounts). Synchronous: the next MO and MT see all of it at once. What
        MOs and MTs are under way keeps: the pair queue, reply windows, clarifications, tallies."""
        settings = self.o = tables.settings
        self.table, self.program_keywords = tables.table, tables.program_keywords
        self.version = settings.config_version
        self.alphabets = settings.mo_alphabets
        self.scope = settings.scope
        self.toll_free_extra = frozenset(settings.toll_free.extra_numbers)
        self.limiter.window = settings.reply_window
        accounts = self.proxy.accounts.values()
        self.account_programs = {s.config.system_id: frozenset(p.name for p in s.config.programs)
                                 for s in accounts if s.config.programs}
        self.account_unassigned = {s.config.system_id: unassigned_numbers(s.config)
                                   for s in accounts if s.config.programs}
        old = getattr(self, "mt", None)
        self.mt = MtEnforcer(self)
        if old is not None:
            self.mt.carry_over(old)

    # --- MT (gateway/enforcement.py) ------------------------------------------------
    def check_mt(self, esme: EsmeSession, pdu: P.Pdu, scan: F.MtScan | None) -> MtVerdict | None:
        return self.mt.check(esme, pdu, scan)

    def mt_fast(self) -> MtFastView | None:
        """MtEnforcer.check's source cache and the index, unless programs add checks of their own."""
        mt = self.mt
        return None if mt.programs is not None else (mt._sources, self.index)

    def _originator(self, ton: int, addr: bytes) -> str:
        """The originating number as the index keys it (E.164), cached: applications use few."""
        key = (ton, addr)
        found = self._originators.get(key)
        if found is None:
            if len(self._originators) >= MAX_ORIGINATORS:
                self._originators.clear()
            found = e164(ton, addr, self.region) or originator_text(addr)
            self._originators[key] = found
        return found

    # --- MO ------------------------------------------------------------------------
    def on_mo(self, proxy: Proxy, link: CarrierLink, pdu: P.Pdu, sm: F.ShortMessage | F.DataSm) -> bool:
        """True when the MO is ours to answer: a keyword MO, or any MO of a pair whose keyword
        MO is still being written (it queues behind it, see optout_mo.PairQueue)."""
        mo = self._read_mo(proxy, link, pdu, sm)
        if mo is None:
            return False
        pair = (mo.mobile, mo.business)
        keyword = self.decide(mo, self.index.kind_of)[0].record
        if not keyword and not self.queue.busy(pair):
            return False
        fingerprint = mo.fingerprint if keyword else ""
        self.queue.submit(pair, fingerprint, link, pdu, lambda outcome: MoJob(self, proxy, mo, outcome).run())
        return True

    def _read_mo(self, proxy: Proxy, link: CarrierLink, pdu: P.Pdu, sm: F.ShortMessage | F.DataSm) -> MoInput | None:
        digits = e164_digits(sm.source.ton, sm.source.addr, self.plan)  # the very key MT lookups compute
        business = self._business(sm.destination)
        if not digits or business is None:
            return None
        mobile = "+" + digits
        toll_free = business.startswith("+") and is_toll_free(business, self.toll_free_extra)
        has_sar = sar_is_segment(sm.tlvs.get(P.TAG_SAR_TOTAL_SEGMENTS))
        # scope account: the block belongs to the account owning the number; a number nobody owns
        # keys as itself (scope number), so every account sending from it is refused
        owner = proxy.number_owner.get(business)
        state = proxy.accounts[owner] if owner is not None else proxy.account_for(sm.destination)
        account = owner or ""
        readings = decode_readings(sm.data_coding, sm.esm_class, sm.payload, self.alphabets, has_sar)
        alphabet, decoded = best_reading(readings, self.table, region_of(mobile), toll_free,
                                         self._program_op(account)) if len(readings) > 1 else readings[0]
        keys = self._keys(mobile, business, account)
        program = None if decoded.is_segment else self._program_match(decoded.text, account)
        if program is not None:
            keys["program"] = BlockKey(mobile, f"{account}/{program.program}", "program")
        return MoInput(link, pdu, sm, decoded.text, decoded.is_segment, mobile, business, state, toll_free,
                       can_receive_reply(sm.source.ton, sm.source.addr), keys,
                       mo_fingerprint(decoded.text, sm.payload), alphabet if len(readings) > 1 else "", program)

    def _program_op(self, account: str) -> Callable[[str], str | None] | None:
        """For best_reading: the op of a program keyword of account, None when it has none."""
        if not self.program_keywords or account not in self.account_programs:
            return None

        def op(text: str) -> str | None:
            match = self._program_match(text, account)
            return None if match is None else match.op

        return op

    def _program_match(self, text: str | None, account: str) -> ProgramMatch | None:
        """A program keyword of the account owning the texted number (compliance: programs)."""
        programs = self.account_programs.get(account) if self.program_keywords else None
        return None if programs is None else self.program_keywords.classify(text, programs)

    def decide(self, mo: MoInput, kind_of: Callable[[BlockKey], str | None],
               clarify_at: float = 0.0) -> tuple[MoDecision, MoContext, list[BlockKey]]:
        """The decision for mo against blocks as kind_of tells them (the index, or the store's
        state in MoJob), with the keys it writes; clarify_at: when the pair's pending revoke-all
        clarification was offered (PairState.clarify_at, 0.0 none)."""
        if mo.program is not None:
            return self._admin_applied(mo, *self._program_decision(mo, kind_of, clarify_at), kind_of)
        ctx = MoContext(mo.mobile, mo.business, toll_free=mo.toll_free, block=_strongest(mo.keys, kind_of),
                        can_reply=mo.can_reply, epoch=any(kind_of(k) == "deactivated" for k in mo.keys.values()))
        decision = decide_mo(mo.text, mo.is_segment, ctx, self.table, self.o)
        targets = self._targets(decision, mo.keys, kind_of)
        admin = any(kind_of(k) == "admin" for k in mo.keys.values())
        if decision.block_action == "add" and decision.reply and self._offers_choice(targets):
            decision = replace(decision, reply=self.o.revoke_all.clarify_reply, offers_clarification=True)
        if decision.block_action == "remove" and admin:
            decision = replace(decision, reply=None)  # still blocked by an operator: no "resubscribed"
        if admin and self.o.admin_block_drops_mo and not mo.toll_free:
            decision = admin_dropped(decision)
        return decision, ctx, targets

    def _admin_applied(self, mo: MoInput, decision: MoDecision, ctx: MoContext, targets: list[BlockKey],
                       kind_of: Callable[[BlockKey], str | None]) -> tuple[MoDecision, MoContext, list[BlockKey]]:
        """A program keyword of a mobile an operator blocked: no "back in" reply, and under
        optout.admin_block_drops_mo not forwarded (as any other MO of it)."""
        if not any(kind_of(k) == "admin" for k in mo.keys.values()):
            return decision, ctx, targets
        if decision.block_action == "remove":
            decision = replace(decision, reply=None)
        if self.o.admin_block_drops_mo and not mo.toll_free:
            decision = admin_dropped(decision)
        return decision, ctx, targets

    def _program_decision(self, mo: MoInput, kind_of: Callable[[BlockKey], str | None], clarify_at: float) -> tuple[
            MoDecision, MoContext, list[BlockKey]]:
        """A program keyword; the one clarification of a revoke-all STOP when it answers one."""
        revoke = self.o.revoke_all
        if revoke.clarify_reply and clarify_open(clarify_at, self.clock(), revoke.clarify_window):
            programs = self.account_programs.get(mo.account, frozenset())
            found = clarify_decision(mo, programs, self.account_unassigned.get(mo.account, frozenset()), kind_of)
            if found is not None:
                return found
        return program_decision(mo, kind_of)

    def _offers_choice(self, targets: list[BlockKey]) -> bool:
        """Revoke-all's one clarification is offered: a STOP that revoked the whole account (revoke-all
        in force, or scope account), never under scope global, whose one block stops every sender
        of every account (see program_mo)."""
        return (bool(self.o.revoke_all.clarify_reply) and self.scope != "global"
                and any(k.scope == "account" for k in targets) and self.o.revoke_all.on(self.clock()))

    def _business(self, address: F.Address) -> str | None:
        """The number the mobile texted, keyed by the very function MT source_addr goes through
        (_originator): E.164, or a short code's digits; None when it is no number we can read."""
        digits, numeric = parse_number(address.ton, address.addr, self.plan)
        if digits is None and numeric:
            return None
        key = self._originator(address.ton, address.addr)
        return key if key[:1] == "+" or key.isdigit() else None

    def _keys(self, mobile: str | None, business: str | None, account: str) -> dict[str, BlockKey]:
        """Every key that can block this pair, by scope; the configured scope's may be missing
        (scope account with no owning account), scope number's never is."""
        if mobile is None or business is None:
            return {}
        scopes = ("number", "account", "global") if account else ("number", "global")
        return {scope: BlockKey(mobile, counterpart_for(scope, business, account), scope) for scope in scopes}

    def _targets(self, decision: MoDecision, keys: dict[str, BlockKey],
                 kind_of: Callable[[BlockKey], str | None]) -> list[BlockKey]:
        """Where the decision writes: an add goes to the configured scope (a carrier mirror to the
        toll-free number itself, and under revoke-all the account's key besides: the network's
        STOP is the consumer's revocation); a lift takes every liftable block the pair has."""
        if decision.block_action == "add":  # no owning account in scope account: the number's own key
            key = keys["number"] if decision.block_kind == "carrier" else keys.get(self.scope, keys["number"])
            return revoke_all_targets(key, keys, decision, self.o.revoke_all.on(self.clock()))
        if decision.block_action == "remove":
            return [k for k in keys.values() if kind_of(k) in decision.lift_kinds]
        return []

    def own_receipt(self, sm: F.ShortMessage | F.DataSm) -> None:
        """A receipt for one of our replies (a STOP confirmation...): evidence per number, recorded
        off the carrier's answer (reply_receipt: reply_message_id, rule = the receipt's stat)."""
        mobile = e164_digits(sm.source.ton, sm.source.addr, self.plan)
        message_id = F.receipt_message_id(sm)
        if not mobile or message_id is None:
            return
        text = sm.payload.decode("latin-1")[:200]
        stat = next((w[5:] for w in text.split() if w.startswith("stat:")), "")
        event = AuditEvent(at=time.time(), op="reply_receipt", number="+" + mobile, source="carrier",
                           counterpart=self._originator(sm.destination.ton, sm.destination.addr),
                           reply_message_id=message_id.decode("latin-1"), rule=stat, text=text,
                           config_version=self.version)
        self.record(event)

    def record(self, event: AuditEvent) -> None:
        """An audit event written in the background (the shutdown drain waits for it)."""
        task = asyncio.ensure_future(self._record_evidence(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _record_evidence(self, event: AuditEvent) -> None:
        try:
            await self.store.record(event)
        except StoreError as exc:
            self.metrics.store_errors.inc()
            log.error("evidence_not_recorded", extra={"op": event.op, "error": str(exc)})

    def applied(self, key: BlockKey, event_id: int) -> None:
        """A change this gateway made to its index: the log follower must not replay older events over it."""
        if self.on_applied is not None:
            self.on_applied(key, event_id)

    def refresh_gauges(self) -> None:
        for kind, n in self.index.counts_by_kind().items():
            self.metrics.blocks.labels(kind).set(n)
        self.metrics.index_bytes.set(self.index.memory_bytes())


@dataclass(frozen=True, slots=True)
class Tables:
    """A keyword configuration built aside (OptoutPolicy.prepare)."""

    settings: OptoutSettings
    table: KeywordTable
    program_keywords: ProgramKeywordTable


def unassigned_numbers(account: Account) -> frozenset[str]:
    """The account's numbers no program lists, none when a program is the default."""
    if any(p.default for p in account.programs):
        return frozenset()
    listed = {n for p in account.programs for n in p.numbers}
    return frozenset(n for n in account.numbers if n not in listed)


def admin_dropped(decision: MoDecision) -> MoDecision:
    """An operator blocked this mobile (optout.admin_block_drops_mo): its MO never reaches the
    application; a keyword still acts (a STOP is honoured) and every MO leaves an audit event."""
    if decision.op is None:
        return replace(decision, op="admin_dropped", rule="admin_block", source="operator", forward=False,
                       annotate=False, reason="admin_block")
    return replace(decision, forward=False, annotate=False)


def _strongest(keys: dict[str, BlockKey], kind_of: Callable[[BlockKey], str | None]) -> str | None:
    """The block that decides what an MO may do: the network's (carrier), then ours (optout);
    admin only when nothing else is there, since START must still lift what it may; a
    deactivated number's epoch block last (only an opt-in keyword lifts it)."""
    kinds = {kind_of(k) for k in keys.values()}
    return next((kind for kind in ("carrier", "optout", "admin", "deactivated") if kind in kinds), None)
