"""decide_mo: what one mobile-originated message does; ReplyLimiter and the redelivery rule.

Pure: values in, a frozen MoDecision out. The shell applies it (store change + audit
event, reply through the carrier, forward or drop) and asks the limiter before replying.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Literal

from gateway.policy.keywords import KeywordTable, Match, is_network_msg, normalise
from gateway.policy.numbers import region_of
from gateway.policy.settings import OptoutSettings

BlockAction = Literal["add", "remove"]
LIFT_KEYWORD = ("optout",)  # YES and other opt-in keywords: never a carrier or admin block
LIFT_CARRIER_KEYWORD = ("optout", "carrier")  # START/UNSTOP: never an admin block
LIFT_IMPLICIT = ("optout",)  # implicit re-opt-in never crosses a consent epoch (see _lifts)


@dataclass(frozen=True, slots=True)
class MoDecision:
    op: str | None = None  # stop | start | help | custom op | possible_optout | None
    rule: str = ""  # 'stop:STOP', 'carrier:STOP', 'possible_optout:STOP', 'implicit', or ''
    source: str = ""  # keyword | carrier | implicit ('' when op is None)
    block_action: BlockAction | None = None
    block_kind: str | None = None  # add: optout | carrier
    lift_kinds: tuple[str, ...] = ()  # remove: kinds this MO may lift
    reply: str | None = None  # text to send back (ask ReplyLimiter first)
    forward: bool = True  # deliver the MO to the application
    annotate: bool = False  # add the op TLV (settings.annotate_tlv) to the forwarded deliver_sm
    reason: str = ""  # why nothing or less happened: network_msg, segment, undecodable, ...
    offers_clarification: bool = False  # revoke-all: the reply offers the one clarification (program_mo)

    @property
    def record(self) -> bool:
        """Write an audit event (and apply block_action atomically with it)."""
        return self.op is not None


@dataclass(frozen=True, slots=True)
class MoContext:
    """What the shell knows about one MO besides its text."""

    mobile: str | None  # source_addr as E.164, None for alphanumeric / short codes
    business: str | None  # destination_addr as E.164 (the number the mobile texted)
    toll_free: bool = False  # business is toll-free
    block: str | None = None  # current block kind for the pair: optout | carrier | admin | None
    can_reply: bool = True  # the mobile can receive a reply (not alphanumeric / short code)
    epoch: bool = False  # a "deactivated" block: the number's consent epoch ended (deactivations import)


def decide_mo(
    text: str | None,
    is_segment: bool,
    ctx: MoContext,
    table: KeywordTable,
    settings: OptoutSettings,
) -> MoDecision:
    """Classify one MO and say what to do; never raises."""
    if text is None:
        return MoDecision(reason="undecodable")
    text = text.replace("\x00", "")  # a NUL (UCS-2 padding) is no part of a keyword
    if is_network_msg(text):
        return MoDecision(reason="network_msg")
    if ctx.mobile is None or ctx.business is None:
        return MoDecision(reason="no_pair_key")
    if is_segment:
        return _implicit(ctx, settings) or MoDecision(reason="segment")
    region = region_of(ctx.mobile)
    carrier_op = table.carrier_op(text) if ctx.toll_free else None
    if carrier_op is not None:
        decision = _carrier(carrier_op, text, ctx)
    else:
        match = table.classify(text, region)
        decision = (
            _keyword(match, ctx, table, settings, region)
            if match is not None
            else _non_keyword(text, ctx, table, settings, region)
        )
    return _finish(decision, ctx, settings)


def _finish(decision: MoDecision, ctx: MoContext, settings: OptoutSettings) -> MoDecision:
    """Apply the reply and forwarding rules that hold for every op."""
    reply = decision.reply
    if not ctx.can_reply or (ctx.toll_free and ctx.block == "carrier"):
        reply = None  # unreachable, or the network drops replies under its own block
    if ctx.toll_free:  # every MO to a toll-free number is forwarded untouched
        return replace(decision, reply=reply, forward=True, annotate=False)
    op = decision.op
    keyword_op = op is not None and decision.source == "keyword"
    forward = settings.forwards(op) if keyword_op and op is not None else True
    annotate = settings.annotate_tlv is not None and keyword_op
    return replace(decision, reply=reply, forward=forward, annotate=annotate)


def _carrier(op: str, text: str, ctx: MoContext) -> MoDecision:
    """The toll-free network's own STOP / START / UNSTOP: mirror it, no reply of ours."""
    rule = f"carrier:{normalise(text)}"
    if op == "stop":
        return MoDecision("stop", rule, "carrier", "add", "carrier")
    lift = _lifts(LIFT_CARRIER_KEYWORD, ctx)
    if ctx.block in lift:
        return MoDecision("start", rule, "carrier", "remove", lift_kinds=lift)
    return MoDecision("start", rule, "carrier", reason=_no_lift_reason(ctx.block))


def _keyword(
    match: Match, ctx: MoContext, table: KeywordTable, settings: OptoutSettings, region: str | None
) -> MoDecision:
    reply = settings.reply_text(match.op, region, match.language)
    base = MoDecision(match.op, match.rule, "keyword", reply=reply)
    if match.op == "stop":
        return replace(base, block_action="add", block_kind="optout")
    if match.op != "start":
        return base  # help and custom ops: reply, no block change
    carrier_kw = match.keyword in table.carrier_start
    lift = _lifts(LIFT_CARRIER_KEYWORD if carrier_kw else LIFT_KEYWORD, ctx)
    if ctx.block in lift:
        return replace(base, block_action="remove", lift_kinds=lift)
    if ctx.block is None and settings.start_without_block_reply:
        return replace(base, reason="no_block")
    return replace(base, reply=None, reason=_no_lift_reason(ctx.block))


def _non_keyword(
    text: str, ctx: MoContext, table: KeywordTable, settings: OptoutSettings, region: str | None
) -> MoDecision:
    keyword = table.possible_optout(text)
    if keyword is None:
        return _implicit(ctx, settings) or MoDecision()
    rule = f"possible_optout:{keyword}"
    if not settings.possible_optout_acts:
        return MoDecision("possible_optout", rule, "keyword", reason="not_acted")
    reply = settings.reply_text("stop", region)
    return MoDecision("possible_optout", rule, "keyword", "add", "optout", reply=reply)


def _implicit(ctx: MoContext, settings: OptoutSettings) -> MoDecision | None:
    """Implicit re-opt-in: any other message lifts a keyword block (setting, off by default)."""
    if settings.implicit_reopt_in and ctx.block == "optout":
        return MoDecision("start", "implicit", "implicit", "remove", lift_kinds=LIFT_IMPLICIT)
    return None


def _lifts(kinds: tuple[str, ...], ctx: MoContext) -> tuple[str, ...]:
    """An opt-in keyword also opens a deactivated number's new consent epoch; an implicit one never."""
    return (*kinds, "deactivated") if ctx.epoch else kinds


def _no_lift_reason(block: str | None) -> str:
    return "no_block" if block is None else f"{block}_block_kept"


def annotation_tlv(tag: int, op: str) -> bytes:
    """Vendor TLV for a forwarded deliver_sm: tag, length, the op upper-cased (STOP)."""
    value = op.upper().encode("ascii", "replace")
    return struct.pack("!HH", tag, len(value)) + value


class ReplyLimiter:
    """At most one reply per key, e.g. (mobile, business, op), per window; bounded memory."""

    def __init__(self, window: float, max_entries: int = 100_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._sent: OrderedDict[Hashable, float] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> bool:
        """True (and the reply is counted) when no reply for key was allowed within the window."""
        self._expire(now)
        last = self._sent.get(key)
        if last is not None and now - last < self.window:
            return False
        self._sent[key] = now
        self._sent.move_to_end(key)
        while len(self._sent) > self.max_entries:
            self._sent.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        while self._sent:
            key, at = next(iter(self._sent.items()))
            if now - at < self.window:
                break
            del self._sent[key]

    def __len__(self) -> int:
        return len(self._sent)


def mo_fingerprint(text: str | None, payload: bytes, carrier_message_id: str | None = None) -> str:
    """What makes an MO the same MO: the carrier's id when it sends one, else text or payload."""
    h = hashlib.blake2b(digest_size=12)
    if carrier_message_id:
        h.update(b"id\0" + carrier_message_id.encode("utf-8", "replace"))
    elif text is not None:
        h.update(b"text\0" + text.encode("utf-8", "surrogatepass"))
    else:
        h.update(b"bytes\0" + payload)
    return h.hexdigest()


REDELIVERY_OPS = frozenset({"stop", "start", "possible_optout"})  # HELP and custom ops: every one answered


def is_redelivery(
    op: str | None, fingerprint: str, business: str,
    last: tuple[str, str, float], now: float, window: float,
) -> bool:
    """A state-changing keyword MO identical to the pair's latest state event in the store.

    last = (fingerprint, counterpart, at) of that event: the same text to the same number,
    nothing changed the pair's blocks since (an operator's or another MO's event would be
    the latest instead), within window seconds (unix time). HELP and custom ops are never
    redeliveries here: a HELP is only a copy while the first is still unanswered.
    """
    last_fingerprint, last_counterpart, last_at = last
    return (
        op in REDELIVERY_OPS and fingerprint == last_fingerprint
        and business == last_counterpart and now - last_at < window
    )
