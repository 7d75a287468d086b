"""The MT hot path, fused: one loop per read on each side, no Pdu object and no call per message
for the common case.

Application side (`esme_read`): a single-segment submit_sm from a bound session, with window room,
a source the enforcer already judged acceptable, an international digit destination the index
does not block, tokens in the account and carrier buckets, no one waiting for the carrier rate and
a carrier bind with room, is forwarded right here: the inline form of EsmeConnection.on_pdu ->
Proxy.forward_mt -> MtEnforcer.check -> Proxy.to_carrier -> CarrierConnection.forward.
Carrier side (`carrier_read`): an ESME_ROK submit_sm_resp to such a request goes straight back to
its application with its sequence_number: CarrierConnection.on_pdu -> Proxy.mt_answered ->
Connection.send_with_sequence.

Anything else, and every message the checks above do not all pass, takes the generic path as a
Pdu, in wire order: checks come first and nothing is changed until the message is known to go
through, so the generic path sees exactly the state it would have seen without this module.
Counters are bumped as the generic path bumps them (the fast messages' once per read).
tests/unit/test_hotpath.py holds the two paths to the same bytes out, PDU by PDU.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import TYPE_CHECKING

from gateway.metrics import LATENCY_BUCKETS, count, count_new
from gateway.proxy import Pending
from gateway.smpp import pdu as P
from gateway.smpp.fields import fast_submit_scan
from gateway.smpp.segments import ONE_SEGMENT_BELOW
from gateway.smpp.session import CAN_SUBMIT
from gateway.store.index import ASK, CLEAR

if TYPE_CHECKING:
    from gateway.carrier import CarrierConnection
    from gateway.connection import Connection
    from gateway.esme_server import EsmeConnection
    from gateway.limits.bucket import TokenBucket
    from gateway.shaping import Pacer

_unpack_header = P.HEADER.unpack_from
_pack_seq_into = P.SEQ.pack_into
_new_pending = tuple.__new__
HEADER_SIZE = P.HEADER_SIZE
SUBMIT_SM, SUBMIT_SM_RESP, MAX_SEQUENCE, RESPONSE_BIT = P.SUBMIT_SM, P.SUBMIT_SM_RESP, P.MAX_SEQUENCE, P.RESPONSE_BIT
ENABLED = True  # False: every PDU takes the generic path (the differential tests compare the two)


def esme_read(esme: EsmeConnection, data: bytes) -> None:
    """One read from an application session."""
    begun = _begin(esme, data)
    if begun is None:
        return
    now, data = begun
    framer = esme.framer
    proxy = esme.proxy
    view = proxy.policy.mt_fast() if ENABLED else None  # (sources, index) or None: generic path only
    handle = esme.handle
    counts = esme._in_counts
    max_pdu = framer.max_pdu
    end = len(data)
    pos = 0
    fast = 0  # submit_sm forwarded here this read
    if view is not None:
        sources, index = view
        is_blocked = index.is_blocked
        system_id = esme.system_id
        carriers: list[CarrierConnection] = proxy.carriers  # type: ignore[assignment]  # the links are these
        pacer = proxy.pacer
        bucket, pacer_bucket = esme.bucket, pacer.bucket if pacer is not None else None
        memo, origin = b"", ""  # the last source (ton, npi, addr) judged, its originator and its probe
        prefix, bloom, mobile_max = ASK, index.keys.bloom, 0  # until a source is judged
    # The state the fast messages use, in locals: loaded here and after each generic PDU, written
    # back (_spend) before each generic PDU and at the end. budget: how many submit_sm may go this
    # way before the session's window, its account's bucket or the carrier's is exhausted (0: the
    # session may not submit, something waits for the carrier rate and goes first, or no carrier).
        budget, rr, n = _load(esme, pacer, now)
    else:
        budget = rr = n = 0
    left = budget
    while end - pos >= HEADER_SIZE:
        length, cid, status, seq = _unpack_header(data, pos)
        if length < HEADER_SIZE or length > max_pdu:
            esme.framing_failed(f"command_length={length}", seq)
            pos = -1  # nothing kept: the session closes
            break
        stop = pos + length
        if stop > end:
            break
        if cid == SUBMIT_SM and left and length < ONE_SEGMENT_BELOW:
            m = fast_submit_scan(data, pos + HEADER_SIZE, stop)
            if m is not None:
                source, dst, registered = m.groups()
                if source != memo:  # MtEnforcer.source's verdict, when it has one and it lets the source send
                    verdict = sources.get((system_id, source[0], source[2:]))
                    if verdict is not None and verdict[0] is not None:
                        memo, origin = source, verdict[0]
                        prefix, bloom, mobile_max = index.probe(origin, system_id)
                mobile = int(dst)  # index.probe_clear, inline; else ask the index
                if source == memo and (prefix == CLEAR or (prefix >= 0 and mobile <= mobile_max and (
                        prefix | mobile) not in bloom) or not is_blocked(mobile, origin, system_id)):
                    i = (rr + 1) % n
                    link = carriers[i]
                    if len(link.pending) < link.window and not link.closed:
                        rr = i
                        left -= 1
                        sequencer = link.seq  # CarrierConnection.forward, inline
                        out_seq = sequencer.value
                        sequencer.value = 1 if out_seq >= MAX_SEQUENCE else out_seq + 1
                        link.pending[out_seq] = _new_pending(Pending, (esme, seq, SUBMIT_SM, now, None, None,
                                                                       registered[0] & 0x1F != 0))
                        out = link._out
                        at = len(out) + 12
                        out += data[pos:stop]
                        _pack_seq_into(out, at, out_seq)
                        if not link._flush_scheduled:
                            link._flush_scheduled = True
                            link.loop.call_soon(link._flush)
                        pos = stop
                        continue
        if left < budget:
            fast += _spend(esme, bucket, pacer_bucket, budget - left, rr, now)
        count(counts, cid)
        handle(P.Pdu(cid, status, seq, data[pos:stop]))
        pos = stop
        if view is not None:  # the generic path may have changed any of it
            budget, rr, n = _load(esme, pacer, now)
            left = budget
            memo = b""
    if pos >= 0:
        framer.keep(data, pos)
    if left < budget:
        fast += _spend(esme, bucket, pacer_bucket, budget - left, rr, now)
    if fast:
        counts[SUBMIT_SM] = counts.get(SUBMIT_SM, 0) + fast
        out_counts = proxy.stats.pdu_counter("carrier", "out")  # every carrier bind's (Connection.__init__)
        out_counts[SUBMIT_SM] = out_counts.get(SUBMIT_SM, 0) + fast


def _begin(conn: Connection, data: bytes) -> tuple[float, bytes] | None:
    """(now, the bytes to frame from offset 0: this read after what the last one left), or None
    while a PDU is still incomplete."""
    now = conn.last_rx = conn.loop.time()
    whole = conn.framer.join(data)
    return None if whole is None else (now, whole)


def _load(esme: EsmeConnection, pacer: Pacer | None, now: float) -> tuple[int, int, int]:
    """(budget, carrier round robin, carrier binds): the budget is the least of the window's room
    and the whole tokens in the account's and the carrier's buckets (each submit_sm takes one: a burst is at
    least 1, so TokenBucket.take(1) passes from 1 token), 0 when the session may not submit, when
    requests wait for the carrier rate (they go first), or with no carrier bound."""
    proxy = esme.proxy
    n = len(proxy.carriers)
    if not n or esme.binding or esme.state not in CAN_SUBMIT or (pacer is not None and (pacer.queue or pacer.own)):
        return 0, proxy._carrier_rr, n
    budget = esme.window - esme.outstanding
    for bucket in (esme.bucket, None if pacer is None else pacer.bucket):
        if bucket is not None:
            budget = min(budget, math.floor(_tokens(bucket, now)))
    return max(budget, 0), proxy._carrier_rr, n


def _tokens(bucket: TokenBucket, now: float) -> float:
    """What TokenBucket.take would find at now."""
    return min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)


def _spend(esme: EsmeConnection, bucket: TokenBucket | None, pacer_bucket: TokenBucket | None, spent: int,
           rr: int, now: float) -> int:
    """Write back what `spent` fast messages took: as many window slots, carrier picks and
    TokenBucket.take(now) from each bucket. Returns spent."""
    esme.outstanding += spent
    proxy = esme.proxy
    proxy._carrier_rr = rr
    proxy.inflight["carrier"] += spent
    for b in (bucket, pacer_bucket):
        if b is not None:
            b.tokens, b.stamp = _tokens(b, now) - spent, now
    return spent


def carrier_read(link: CarrierConnection, data: bytes) -> None:
    """One read from a carrier bind."""
    begun = _begin(link, data)
    if begun is None:
        return
    now, data = begun
    framer = link.framer
    proxy = link.proxy
    handle = link.handle
    answered = link.answered
    counts = link._in_counts
    pop = link.pending.pop
    own_waiting = proxy._own_waiting.waiting
    receipts = proxy.receipts
    max_pdu = framer.max_pdu
    end = len(data)
    pos = 0
    fast = 0
    # simple: Proxy.mt_answered has nothing else to do first (own replies waiting for this slot,
    # receipts parked for an answer); loaded here and after each generic PDU
    simple = ENABLED and not own_waiting and not receipts.parked
    grow = link.window < link.full_window
    last_started, seconds, bucket = -1.0, 0.0, 0  # the latency of the last answer's send time
    esme: EsmeConnection | None
    while end - pos >= HEADER_SIZE:
        length, cid, status, seq = _unpack_header(data, pos)
        if length < HEADER_SIZE or length > max_pdu:
            link.framing_failed(f"command_length={length}", seq)
            pos = -1  # nothing kept: the session closes
            break
        stop = pos + length
        if stop > end:
            break
        pending = pop(seq, None) if cid & RESPONSE_BIT else None
        if pending is not None:
            esme, origin_seq, _, started, on_response, extra, wants_receipt = pending  # type: ignore[assignment]
            if cid == SUBMIT_SM_RESP and not status and simple and esme is not None and on_response is None \
                    and extra is None and not wants_receipt:
                if grow:  # resuming after a throttle: one more per answer
                    link.window += 1
                    grow = link.window < link.full_window
                esme.outstanding -= 1
                if started != last_started:  # a read's answers mostly share a few send times
                    last_started, seconds = started, now - started
                    bucket = bisect_left(LATENCY_BUCKETS, seconds)
                stats = esme.account_stats
                stats.latency_counts[bucket] += 1
                stats.latency_sum += seconds
                if not esme.closed:  # Connection.send_with_sequence, inline
                    out = esme._out
                    at = len(out) + 12
                    out += data[pos:stop]
                    _pack_seq_into(out, at, origin_seq)
                    out_counts = esme._out_counts
                    try:
                        out_counts[SUBMIT_SM_RESP] += 1
                    except KeyError:
                        count_new(out_counts, SUBMIT_SM_RESP)
                    if not esme._flush_scheduled:
                        esme._flush_scheduled = True
                        esme.loop.call_soon(esme._flush)
                fast += 1
                pos = stop
                continue
            count(counts, cid)
            answered(P.Pdu(cid, status, seq, data[pos:stop]), pending)
        else:
            count(counts, cid)
            handle(P.Pdu(cid, status, seq, data[pos:stop]))
        pos = stop
        simple = ENABLED and not own_waiting and not receipts.parked
        grow = link.window < link.full_window
    if pos >= 0:
        framer.keep(data, pos)
    if fast:
        counts[SUBMIT_SM_RESP] = counts.get(SUBMIT_SM_RESP, 0) + fast
        proxy.inflight["carrier"] -= fast
