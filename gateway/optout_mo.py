"""Keyword MOs in order: one (mobile, business) pair at a time, decided against the store.

PairQueue runs a pair's MOs one after another in arrival order (a later MO's store work
begins after the earlier one's ended) and answers an identical copy of the pair's latest
MO, while that one is unanswered, with the very status the carrier got for it. MoJob reads
the pair's state and version from the store, decides, and writes only while that version
is still the latest (Store.record_mo); then the index, the reply and the forward.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosmpplib import SubmitSm

from gateway.errors import StoreError
from gateway.logs import redact
from gateway.policy.decide import (
    REDELIVERY_OPS,
    MoContext,
    MoDecision,
    annotation_tlv,
    is_redelivery,
)
from gateway.policy.program_keywords import ProgramMatch
from gateway.policy.text import encode_reply, segment
from gateway.program_mo import clarification_write, clarify_changes
from gateway.proxy import OWN, AccountState, CarrierLink, Proxy
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.smpp.own import phone
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, MoItem, PairState

if TYPE_CHECKING:
    from gateway.optout import OptoutPolicy

log = logging.getLogger(__name__)
Pair = tuple[str, str]  # (mobile, business)
MAX_ATTEMPTS = 5  # record_mo found a newer version: read and decide again, this often


@dataclass(frozen=True, slots=True)
class MoInput:
    """One MO as on_mo read it: what a decision needs besides the blocks."""

    link: CarrierLink
    pdu: P.Pdu
    sm: F.ShortMessage | F.DataSm
    text: str | None
    is_segment: bool
    mobile: str
    business: str
    state: AccountState | None  # the account it goes to: the number's owner, else a default route
    toll_free: bool
    can_reply: bool
    keys: dict[str, BlockKey]  # scope -> key ("program" only when the text is a program keyword)
    fingerprint: str
    alphabet: str = ""  # data_coding 0 under several candidate alphabets: the reading that counted
    program: ProgramMatch | None = None  # a program keyword of the texted account (policy.program_keywords)

    @property
    def account(self) -> str:
        return self.state.config.system_id if self.state else ""


class PairQueue:
    """Per-pair chains of MO tasks, and the latest MO of each pair until it is answered."""

    def __init__(self, tasks: set[asyncio.Task[None]]) -> None:
        self.tasks = tasks  # the policy's: shutdown drains them
        self._tail: dict[Pair, asyncio.Task[None]] = {}
        self._latest: dict[Pair, tuple[str, asyncio.Future[int]]] = {}  # fingerprint '' for a plain MO

    def busy(self, pair: Pair) -> bool:
        """An MO of the pair is queued or being written: every later one queues behind it."""
        return pair in self._tail

    def submit(self, pair: Pair, fingerprint: str, link: CarrierLink, pdu: P.Pdu,
               job: Callable[[asyncio.Future[int]], Awaitable[None]]) -> None:
        """Queue job behind the pair's earlier MOs. fingerprint '' (a plain MO that only queues
        behind a keyword MO) is never taken for a copy: two "ok" in a row are two messages."""
        latest = self._latest.get(pair)
        if fingerprint and latest is not None and latest[0] == fingerprint:  # a copy, still unanswered
            log.info("mo_redelivered", extra={"mobile": redact(pair[0]), "while": "in_flight"})
            self._spawn(_answer_like(latest[1], link, pdu))
            return
        outcome: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (fingerprint, outcome)
        self._latest[pair] = entry
        outcome.add_done_callback(lambda _: self._drop(self._latest, pair, entry))
        task = self._spawn(_after(self._tail.get(pair), job(outcome)))
        self._tail[pair] = task
        task.add_done_callback(lambda _: self._drop(self._tail, pair, task))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    @staticmethod
    def _drop(table: dict[Pair, Any], pair: Pair, value: object) -> None:
        if table.get(pair) is value:
            del table[pair]


async def _after(previous: asyncio.Task[None] | None, job: Awaitable[None]) -> None:
    if previous is not None:
        await asyncio.wait([previous])  # its outcome is its own; ours starts once it ended
    await job


async def _answer_like(outcome: asyncio.Future[int], link: CarrierLink, pdu: P.Pdu) -> None:
    status = await asyncio.shield(outcome)
    link.send(P.response_for(pdu, status, b"\x00"))


class MoJob:
    """One MO of a busy or keyword pair: decide on the store's state, record, reply, forward, answer."""

    def __init__(self, policy: OptoutPolicy, proxy: Proxy, mo: MoInput, outcome: asyncio.Future[int]) -> None:
        self.p, self.proxy, self.mo, self.outcome = policy, proxy, mo, outcome
        self.d = MoDecision()
        self.ctx = MoContext(mo.mobile, mo.business)
        self.key = mo.keys.get(policy.scope, mo.keys["number"])  # for the audit record
        self.version = policy.version  # the keyword configuration it was decided under (a reload moves it)

    async def run(self) -> None:
        try:
            await self._run()
        except StoreError as exc:
            self.p.metrics.store_errors.inc()
            log.error("mo_not_durable", extra={"error": str(exc), "op": self.d.op})
            self._answer(self.proxy.unbound_status, None)
        except Exception:  # our bug: the carrier still gets an answer, and may retry
            log.exception("mo_failed", extra={"op": self.d.op})
            self._answer(self.proxy.unbound_status, None)
        except asyncio.CancelledError:  # stopping: the carrier retries later
            self._answer(self.proxy.unbound_status, None)
            raise

    async def _run(self) -> None:
        p, mo = self.p, self.mo
        if not p.decide(mo, p.index.kind_of)[0].record and not p.o.implicit_reopt_in:
            self._deliver(mo.pdu.raw)  # queued behind a keyword MO of its pair, nothing more
            return
        for _ in range(MAX_ATTEMPTS):
            state = await p.store.pair_state(mo.mobile, mo.business, list(mo.keys.values()))
            self.d, self.ctx, targets = p.decide(mo, state.kind_of, state.clarify_at)
            self.version = p.version
            self.key = targets[0] if targets else self.key
            if not self.d.record or self._redelivered(state):
                self._agree(state)
                self._deliver(mo.pdu.raw)  # as any MO: no event, no reply
                return
            items = [self._item(change) for change in self._changes(targets)]
            started = time.perf_counter()
            results = await p.store.record_mo(items, state, clarification_write(self.d, mo.keys, p.clock()))
            p.metrics.store_latency.observe(time.perf_counter() - started)
            if results is not None:
                self._applied(items, results, state)
                self._done()
                return
        raise StoreError("the pair's blocks kept changing under this MO; not recorded")

    def _agree(self, state: PairState, keys: list[BlockKey] | None = None) -> bool:
        """Blocks the store holds for the pair that the index lacks, added with the store's kind: the
        store had them already (another gateway's STOP, an operator's block) and the log follower
        has not brought them in yet (e.g. reconnecting after a store outage). A STOP this gateway
        just acked refuses MT now. True when the index changed."""
        p, added = self.p, False
        for key in keys if keys is not None else self.mo.keys.values():
            kind = state.kind_of(key)
            if kind is not None and p.index.kind_of(key) is None:
                added = p.index.add(key, kind) or added
        if added:
            p.refresh_gauges()
        return added

    def _redelivered(self, state: PairState) -> bool:
        last = (state.last_fingerprint, state.last_counterpart, state.last_at)
        if not is_redelivery(self.d.op, self.mo.fingerprint, self.mo.business, last, time.time(),
                             self.p.o.mo_dedup_window):
            return False
        log.info("mo_redelivered", extra={"op": self.d.op, "mobile": redact(self.mo.mobile), "while": "stored"})
        return True

    def _changes(self, targets: list[BlockKey]) -> list[BlockChange | None]:
        d, now = self.d, time.time()
        if d.op == "clarify":  # revoke-all's one clarification: lifts and adds (gateway/program_mo.py)
            return clarify_changes(targets, d.source, now, self.mo.business,
                                   self.p.account_unassigned.get(self.mo.account, frozenset()))
        if d.block_action == "add":  # a carrier mirror is the number's; revoke-all's account key is ours
            return [BlockChange("add", Block(k, d.block_kind if d.block_kind and k.scope == "number" else "optout",
                                             d.source, now)) for k in targets]
        if d.block_action == "remove":
            return [BlockChange("remove", Block(k, "optout", d.source, now), d.lift_kinds) for k in targets]
        return [None]

    def _item(self, change: BlockChange | None) -> MoItem:
        d, mo, key = self.d, self.mo, change.block.key if change else self.key
        event = AuditEvent(
            at=time.time(), op=d.op or "", number=key.number, counterpart=mo.business,
            account=key.counterpart if key.scope == "program" else mo.account, source=d.source, text=mo.text or "", data_coding=mo.sm.data_coding,
            rule=d.rule, config_version=self.version, reply_text=d.reply or "",
            scope=key.scope, kind=change.block.kind if change and change.action == "add" else d.block_kind or "",
            mo_fingerprint=mo.fingerprint if d.op in REDELIVERY_OPS else "",  # HELP is no state
            alphabet=mo.alphabet,
        )
        return event, change

    def _applied(self, items: list[MoItem], results: list[tuple[int, bool]], state: PairState) -> None:
        p = self.p
        for (event, change), (event_id, changed) in zip(items, results, strict=True):
            if changed and change is not None:
                key = change.block.key
                if change.action == "add":
                    p.index.add(key, change.block.kind)
                else:
                    p.index.remove(key, change.lift_kinds)
                p.applied(key, event_id)
                p.refresh_gauges()
            elif change is not None and change.action == "add" and self._agree(state, [change.block.key]):
                p.applied(change.block.key, event_id)
            log.info("optout_event", extra={"op": self.d.op, "rule": self.d.rule, "mobile": redact(event.number),
                                            "account": self.mo.account, "scope": event.scope, "changed": changed})

    def _done(self) -> None:
        d, p = self.d, self.p
        now = asyncio.get_running_loop().time()
        number_type = "toll_free" if self.ctx.toll_free else "long_code"
        p.metrics.optout_events.labels(d.op or "", number_type).inc()
        if d.reply and self.ctx.can_reply:
            # every HELP is answered (CTIA); the window only stops STOP/START reply loops
            if d.op == "help" or p.limiter.allow((self.key.number, self.mo.business, d.op), now):
                self._reply(d.reply, now)
            else:
                p.metrics.autoreplies.labels(d.op or "", "rate_limited").inc()
        self._forward()

    def _answer(self, status: int, resp: P.Pdu | None) -> None:
        """The carrier's answer for this MO (the application's bytes when it answered), once."""
        if self.outcome.done():
            return
        pdu = self.mo.pdu
        if resp is not None and resp.command_id == pdu.command_id | P.RESPONSE_BIT:
            self.mo.link.send(resp.with_sequence(pdu.sequence_number))
            status = resp.command_status
        else:
            self.mo.link.send(P.response_for(pdu, status, b"\x00"))
        self.outcome.set_result(status)

    def _deliver(self, raw: bytes) -> None:
        self.proxy.deliver(self.mo.state, self.mo.pdu, raw, self._answer)

    def _forward(self) -> None:
        d = self.d
        if not d.forward:
            self._answer(st.ESME_ROK, None)
            return
        raw = self.mo.pdu.raw
        tag = self.p.o.annotate_tlv
        if d.annotate and tag is not None and d.op:
            tlv = annotation_tlv(tag, d.op)
            raw = P.HEADER.pack(len(raw) + len(tlv), *P.HEADER.unpack_from(raw)[1:]) + raw[16:] + tlv
        self._deliver(raw)

    def _reply(self, text: str, now: float) -> None:
        op = self.d.op or ""
        for raw in build_reply(self.p, self.mo.sm.destination, self.mo.sm.source, text):
            pdu = P.Framer().feed(raw)[0]
            sent = self.proxy.send_own(pdu, now, self._reply_answered(op, text))
            if not sent:  # waiting for window room is "sent" (own_queue); this is no carrier or a full queue
                reason = "no_carrier" if not self.proxy.carriers else "queue_full"
                self.p.metrics.autoreplies.labels(op, reason).inc()
                log.warning("autoreply_not_sent", extra={"op": op, "reason": reason})
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
                               counterpart=self.mo.business, account=self.mo.account, source="gateway",
                               reply_text=text, reply_message_id=message_id.decode("latin-1"),
                               config_version=self.version, scope=self.key.scope)
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



def build_reply(policy: OptoutPolicy, business: F.Address, mobile: F.Address, text: str) -> list[bytes]:
    """submit_sm PDUs for a reply from the number the mobile texted, TON/NPI mirrored."""
    data_coding, encoded = encode_reply(text, policy.o.smsc_default_alphabet)
    encoding = "ucs2" if data_coding == 8 else None
    source, destination = phone(business), phone(mobile)
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
