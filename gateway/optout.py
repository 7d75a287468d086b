"""The opt-out engine's shell: applies the pure policy decisions to the wire and the store.

MT (hot path): addresses read with struct, the mobile as an int, one in-memory index
lookup; never a database call. MO: keyword messages are acked to the carrier only after
the block change and its audit event are durable; the reply goes out through the carrier
from the number the mobile texted, and the MO is still forwarded to the application.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from aiosmpplib import NPI, TON, PhoneNumber, SubmitSm

from gateway.enforcement import MtEnforcer
from gateway.errors import StoreError
from gateway.logs import redact
from gateway.policy.decide import (
    MoContext,
    MoDecision,
    MoDeduper,
    ReplyLimiter,
    annotation_tlv,
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
    plan_for_region,
)
from gateway.policy.settings import OptoutSettings
from gateway.policy.text import decode_text, encode_reply, segment
from gateway.proxy import OWN, AccountState, CarrierLink, EsmeSession, MtVerdict, Proxy
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, Store
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
        self.table = KeywordTable(settings)
        self.version = settings.config_version
        self.region = settings.default_region
        self.plan = plan_for_region(settings.default_region)
        self.scope = settings.scope
        self.toll_free_extra = frozenset(settings.toll_free.extra_numbers)
        self.limiter = ReplyLimiter(settings.reply_window)
        self.deduper = MoDeduper(settings.mo_dedup_window, settings.dedup_max_entries)
        self._originators: dict[tuple[int, bytes], str] = {}
        self._reply_ref = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._in_progress: set[tuple[str, str, str]] = set()  # keyword MOs whose store write is under way
        self.on_applied: Callable[[BlockKey, int], None] | None = None
        self.mt = MtEnforcer(self)
        self.refresh_gauges()

    # --- MT (gateway/enforcement.py) ------------------------------------------------
    def check_mt(self, esme: EsmeSession, pdu: P.Pdu, scan: F.MtScan | None) -> MtVerdict | None:
        return self.mt.check(esme, pdu, scan)

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
        has_sar = P.TAG_SAR_TOTAL_SEGMENTS in sm.tlvs
        decoded = decode_text(sm.data_coding, sm.esm_class, sm.payload, self.o.smsc_default_alphabet, has_sar)
        digits = e164_digits(sm.source.ton, sm.source.addr, self.plan)  # the very key MT lookups compute
        mobile = "+" + digits if digits else None
        business = self._business(sm.destination)
        state = proxy.account_for(sm.destination)  # chosen once: the block key and the delivery agree
        account = state.config.system_id if state else ""
        toll_free = business is not None and business.startswith("+") and is_toll_free(business, self.toll_free_extra)
        keys = self._keys(mobile, business, account)
        ctx = MoContext(
            mobile if keys else None, business, toll_free=toll_free, block=self._strongest(keys),
            can_reply=can_receive_reply(sm.source.ton, sm.source.addr),
        )
        decision = decide_mo(decoded.text, decoded.is_segment, ctx, self.table, self.o)
        if not decision.record or not keys or mobile is None or business is None:
            return False
        targets = self._targets(decision, keys)
        if decision.block_action == "remove" and self._admin_remains(keys):
            decision = replace(decision, reply=None)  # still blocked by an operator: no "resubscribed"
        base = mo_fingerprint(decoded.text, sm.payload)
        seen = (mobile, business, base)
        now = asyncio.get_running_loop().time()
        # a redelivery is the same MO while the blocks are as it left them; after an operator or
        # another gateway changed them, the same text is a new request
        if seen in self._in_progress or self.deduper.is_duplicate(mobile, business, self._sig(base, keys), now):
            log.info("mo_redelivered", extra={"op": decision.op, "mobile": redact(mobile)})
            return False  # forwarded as any MO; no second event, no second reply
        self._in_progress.add(seen)
        job = _MoJob(self, proxy, link, pdu, sm, decision, ctx, targets, keys, state, decoded.text or "", base)
        task = asyncio.create_task(job.run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(lambda _: self._in_progress.discard(seen))
        return True

    def _business(self, address: F.Address) -> str | None:
        """The number the mobile texted: E.164, or a short code's digits (the same key MT uses)."""
        if not address.addr.isdigit() and not (address.addr[:1] == b"+" and address.addr[1:].isdigit()):
            return None
        return self._originator(address.ton, address.addr)

    def _keys(self, mobile: str | None, business: str | None, account: str) -> dict[str, BlockKey]:
        """Every key that can block this pair, by scope; the configured scope's may be missing
        (scope account with no owning account), scope number's never is."""
        if mobile is None or business is None:
            return {}
        scopes = ("number", "account", "global") if account else ("number", "global")
        return {scope: BlockKey(mobile, counterpart_for(scope, business, account), scope) for scope in scopes}

    def _strongest(self, keys: dict[str, BlockKey]) -> str | None:
        """The block that decides what an MO may do: the network's (carrier), then ours (optout);
        admin only when nothing else is there, since START must still lift what it may."""
        kinds = {self.index.kind_of(k) for k in keys.values()}
        return next((kind for kind in ("carrier", "optout", "admin") if kind in kinds), None)

    def _admin_remains(self, keys: dict[str, BlockKey]) -> bool:
        return any(self.index.kind_of(k) == "admin" for k in keys.values())

    def _targets(self, decision: MoDecision, keys: dict[str, BlockKey]) -> list[BlockKey]:
        """Where the decision writes: an add goes to the configured scope (a carrier mirror to the
        toll-free number itself); a lift takes every liftable block the pair has."""
        if decision.block_action == "add":  # no owning account in scope account: the number's own key
            return [keys["number"] if decision.block_kind == "carrier" else keys.get(self.scope, keys["number"])]
        if decision.block_action == "remove":
            return [k for k in keys.values() if self.index.kind_of(k) in decision.lift_kinds]
        return []

    def _sig(self, base: str, keys: dict[str, BlockKey]) -> str:
        return base + "|" + ",".join(str(self.index.kind_of(k)) for k in keys.values())

    def applied(self, key: BlockKey, event_id: int) -> None:
        """A change this gateway made to its index: the log follower must not replay older events over it."""
        if self.on_applied is not None:
            self.on_applied(key, event_id)

    def refresh_gauges(self) -> None:
        for kind, n in self.index.counts_by_kind().items():
            self.metrics.blocks.labels(kind).set(n)


class _MoJob:
    """One keyword MO: durable change, reply, forward, carrier answer."""

    def __init__(self, policy: OptoutPolicy, proxy: Proxy, link: CarrierLink, pdu: P.Pdu,
                 sm: F.ShortMessage | F.DataSm, decision: MoDecision, ctx: MoContext, targets: list[BlockKey],
                 keys: dict[str, BlockKey], state: AccountState | None, text: str, fingerprint: str) -> None:
        self.p, self.proxy, self.link, self.pdu, self.sm = policy, proxy, link, pdu, sm
        self.d, self.ctx, self.text, self.fp = decision, ctx, text, fingerprint
        self.targets, self.keys = targets, keys
        self.key = targets[0] if targets else keys.get(policy.scope, keys["number"])  # for the audit record
        self.state = state
        self.account = state.config.system_id if state else ""

    async def run(self) -> None:
        d, p = self.d, self.p
        if not await self._record():
            return
        now = asyncio.get_running_loop().time()
        p.deduper.remember(self.ctx.mobile or "", self.ctx.business or "", p._sig(self.fp, self.keys), now)
        number_type = "toll_free" if self.ctx.toll_free else "long_code"
        p.metrics.optout_events.labels(d.op or "", number_type).inc()
        if d.reply and self.ctx.can_reply:
            if p.limiter.allow((self.key.number, self.ctx.business, d.op), now):
                self._reply(d.reply, now)
            else:
                p.metrics.autoreplies.labels(d.op or "", "rate_limited").inc()
        self._forward()

    async def _record(self) -> bool:
        """The event, and each block change with an event of its own; durable before we go on."""
        changes: list[BlockChange | None] = [self._change(key) for key in self.targets] or [None]
        try:
            for change in changes:
                await self._record_one(change)
        except StoreError as exc:
            self.p.metrics.store_errors.inc()
            log.error("mo_not_durable", extra={"error": str(exc), "op": self.d.op})
            self.link.send(P.response_for(self.pdu, self.proxy.unbound_status, b"\x00"))
            return False
        return True

    def _change(self, key: BlockKey) -> BlockChange:
        d = self.d
        if d.block_action == "add":
            return BlockChange("add", Block(key, d.block_kind or "optout", d.source, time.time()))
        return BlockChange("remove", Block(key, "optout", d.source, time.time()), d.lift_kinds)

    async def _record_one(self, change: BlockChange | None) -> None:
        d, key = self.d, change.block.key if change else self.key
        event = AuditEvent(
            at=time.time(), op=d.op or "", number=key.number, counterpart=self.ctx.business or "",
            account=self.account, source=d.source, text=self.text, data_coding=self.sm.data_coding,
            rule=d.rule, config_version=self.p.version, reply_text=d.reply or "",
            scope=key.scope, kind=d.block_kind or "",
        )
        started = time.perf_counter()
        event_id, changed = await self.p.store.record(event, change)
        self.p.metrics.store_latency.observe(time.perf_counter() - started)
        if changed and change is not None:
            if change.action == "add":
                self.p.index.add(key, change.block.kind)
            else:
                self.p.index.remove(key, change.lift_kinds)
            self.p.applied(key, event_id)
            self.p.refresh_gauges()
        log.info("optout_event", extra={"op": d.op, "rule": d.rule, "mobile": redact(key.number),
                                        "account": self.account, "scope": key.scope, "changed": changed})

    def _reply(self, text: str, now: float) -> None:
        op = self.d.op or ""
        for raw in build_reply(self.p, self.sm.destination, self.sm.source, text):
            pdu = P.Framer().feed(raw)[0]
            sent = self.proxy.send_own(pdu, now, self._reply_answered(op, text))
            if not sent:
                self.p.metrics.autoreplies.labels(op, "no_carrier").inc()
                log.warning("autoreply_not_sent", extra={"op": op, "reason": "no carrier bound"})
                return

    def _reply_answered(self, op: str, text: str) -> Callable[[P.Pdu | None], None]:
        def done(resp: P.Pdu | None) -> None:
            if resp is None or resp.command_status != 0:
                status = "timeout" if resp is None else f"0x{resp.command_status:x}"
                self.p.metrics.autoreplies.labels(op, "failed").inc()
                log.warning("autoreply_failed", extra={"op": op, "status": status})
                return
            message_id = F.response_message_id(resp.raw)
            self.proxy.remember_route(message_id, OWN, asyncio.get_running_loop().time())
            self.p.metrics.autoreplies.labels(op, "sent").inc()
            event = AuditEvent(at=time.time(), op=f"{op}_reply", number=self.key.number,
                               counterpart=self.ctx.business or "", account=self.account, source="gateway",
                               reply_text=text, reply_message_id=message_id.decode("latin-1"),
                               config_version=self.p.version, scope=self.key.scope)
            task = asyncio.create_task(self._record_reply(event))
            self.p.tasks.add(task)
            task.add_done_callback(self.p.tasks.discard)

        return done

    async def _record_reply(self, event: AuditEvent) -> None:
        try:
            await self.p.store.record(event)
        except StoreError as exc:
            self.p.metrics.store_errors.inc()
            log.error("reply_event_not_recorded", extra={"error": str(exc)})

    def _forward(self) -> None:
        d = self.d
        if not d.forward:
            self.link.send(P.response_for(self.pdu, st.ESME_ROK, b"\x00"))
            return
        raw = self.pdu.raw
        tag = self.p.o.annotate_tlv
        if d.annotate and tag is not None and d.op:
            tlv = annotation_tlv(tag, d.op)
            raw = P.HEADER.pack(len(raw) + len(tlv), *P.HEADER.unpack_from(raw)[1:]) + raw[16:] + tlv
        self.proxy.deliver(self.state, self.pdu, raw, self.proxy.answer_carrier(self.link, self.pdu))


def _phone(address: F.Address) -> PhoneNumber:
    try:
        ton, npi = TON(address.ton), NPI(address.npi)
    except ValueError:
        ton, npi = TON.UNKNOWN, NPI.UNKNOWN
    return PhoneNumber(address.addr.decode("ascii", "ignore")[:20], ton, npi)


def build_reply(policy: OptoutPolicy, business: F.Address, mobile: F.Address, text: str) -> list[bytes]:
    """submit_sm PDUs for a reply from the number the mobile texted, TON/NPI mirrored."""
    data_coding, encoded = encode_reply(text, policy.o.smsc_default_alphabet)
    encoding = "ucs2" if data_coding == 8 else None
    source, destination = _phone(business), _phone(mobile)
    if policy.o.reply_long == "payload" or len(segment(data_coding, encoded, 0)) == 1:
        msg = SubmitSm(short_message=text, source=source, destination=destination, registered_delivery=1,
                       encoding=encoding, auto_message_payload=True)
        if len(encoded) <= 254:
            msg.set_encoded_message(encoded)
        else:
            msg = SubmitSm(message_payload=text, source=source, destination=destination,
                           registered_delivery=1, encoding=encoding)
        return [msg.pdu()]
    policy._reply_ref = (policy._reply_ref + 1) % 256
    out = []
    for part in segment(data_coding, encoded, policy._reply_ref):
        msg = SubmitSm(short_message=text, source=source, destination=destination, registered_delivery=1,
                       encoding=encoding, esm_class=P.ESM_UDHI)
        msg.set_encoded_message(part)
        out.append(msg.pdu())
    return out
