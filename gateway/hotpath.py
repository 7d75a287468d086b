"""The MT hot path, fused: one loop per read on each side, no Pdu object and no call per message
for the common case.

Application side (`esme_read`): a single-segment submit_sm from a bound session, with window room,
a source the enforcer already judged acceptable, an international digit destination the index
does not block, tokens in the account and carrier buckets, no one waiting for the carrier rate and
a carrier bind with room, is forwarded right here: the inline form of EsmeConnection.on_pdus ->
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

from bisect import bisect_left
from typing import TYPE_CHECKING

from gateway.metrics import LATENCY_BUCKETS, count_new
from gateway.proxy import Pending
from gateway.smpp import pdu as P
from gateway.smpp.fields import fast_submit_scan
from gateway.smpp.segments import ONE_SEGMENT_BELOW
from gateway.smpp.session import CAN_SUBMIT

if TYPE_CHECKING:
    from gateway.carrier import CarrierConnection
    from gateway.esme_server import EsmeConnection
    from gateway.limits.bucket import TokenBucket
    from gateway.shaping import Pacer

_unpack_header = P.HEADER.unpack_from
_pack_seq_into = P.SEQ.pack_into
_new_pending = tuple.__new__
HEADER_SIZE = P.HEADER_SIZE
SUBMIT_SM, SUBMIT_SM_RESP, MAX_SEQUENCE = P.SUBMIT_SM, P.SUBMIT_SM_RESP, P.MAX_SEQUENCE
INF = float("inf")
ENABLED = True  # False: every PDU takes the generic path (the differential tests compare the two)


def esme_read(esme: EsmeConnection, data: bytes) -> None:
    """One read from an application session."""
    now = esme.last_rx = esme.loop.time()
    framer = esme.framer
    whole = framer.join(data)
    if whole is None:
        return
    data = whole
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
        memo, origin = b"", ""  # the last source (ton, npi, addr) judged, and its originator
    # The state the fast messages use, in locals: loaded here and after each generic PDU, written
    # back (spent) before each generic PDU and at the end. ready: the session may submit and nothing
    # waits for the carrier rate (what waits goes first); room: its window; tokens: its account's
    # bucket and the carrier's (inf: no limit), refilled to `now` as TokenBucket.take does.
    ready = view is not None and _ready(esme, pacer)
    if ready:
        room, tokens, paced, rr, n = _load(esme, bucket, pacer_bucket, now)
    spent = 0  # fast messages since the state was last written back
    while end - pos >= HEADER_SIZE:
        length, cid, status, seq = _unpack_header(data, pos)
        if length < HEADER_SIZE or length > max_pdu:
            esme.framing_failed(f"command_length={length}", seq)
            pos = -1  # nothing kept: the session closes
            break
        stop = pos + length
        if stop > end:
            break
        if cid == SUBMIT_SM and ready and length < ONE_SEGMENT_BELOW and room > 0 and tokens >= 1.0 \
                and paced >= 1.0 and n:
            m = fast_submit_scan(data, pos + HEADER_SIZE, stop)
            if m is not None:
                source, dst, registered = m.groups()
                if source != memo:  # MtEnforcer.source's verdict, when it has one and it lets the source send
                    verdict = sources.get((system_id, source[0], source[2:]))
                    if verdict is not None and verdict[0] is not None:
                        memo, origin = source, verdict[0]
                if source == memo and not is_blocked(int(dst), origin, system_id):
                    i = (rr + 1) % n
                    link = carriers[i]
                    if len(link.pending) < link.window and not link.closed:
                        rr = i
                        room -= 1
                        tokens -= 1.0
                        paced -= 1.0
                        spent += 1
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
        if spent:
            _spend(esme, bucket, pacer_bucket, spent, tokens, paced, rr, now)
            fast += spent
            spent = 0
        try:
            counts[cid] += 1
        except KeyError:
            count_new(counts, cid)
        handle(P.Pdu(cid, status, seq, data[pos:stop]))
        pos = stop
        if view is not None:
            ready = _ready(esme, pacer)  # the generic path may have changed any of it
            if ready:
                room, tokens, paced, rr, n = _load(esme, bucket, pacer_bucket, now)
    if pos >= 0:
        framer.keep(data, pos)
    if spent:
        _spend(esme, bucket, pacer_bucket, spent, tokens, paced, rr, now)
        fast += spent
    if fast:
        counts[SUBMIT_SM] = counts.get(SUBMIT_SM, 0) + fast
        out_counts = proxy.stats.pdu_counter("carrier", "out")  # every carrier bind's (Connection.__init__)
        out_counts[SUBMIT_SM] = out_counts.get(SUBMIT_SM, 0) + fast


def _ready(esme: EsmeConnection, pacer: Pacer | None) -> bool:
    return not esme.binding and esme.state in CAN_SUBMIT and (pacer is None or not (pacer.queue or pacer.own))


def _load(esme: EsmeConnection, bucket: TokenBucket | None, pacer_bucket: TokenBucket | None,
          now: float) -> tuple[int, float, float, int, int]:
    """(window room, account tokens, carrier tokens, carrier round robin, carrier binds)."""
    proxy = esme.proxy
    return (esme.window - esme.outstanding, _tokens(bucket, now), _tokens(pacer_bucket, now), proxy._carrier_rr,
            len(proxy.carriers))


def _tokens(bucket: TokenBucket | None, now: float) -> float:
    """What TokenBucket.take would find at now (a burst is at least 1, so take(1) passes from 1 token)."""
    if bucket is None:
        return INF
    return min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)


def _spend(esme: EsmeConnection, bucket: TokenBucket | None, pacer_bucket: TokenBucket | None, spent: int,
           tokens: float, paced: float, rr: int, now: float) -> None:
    """Write back what `spent` fast messages took: as many TokenBucket.take(now), window slots and
    carrier picks."""
    esme.outstanding += spent
    proxy = esme.proxy
    proxy._carrier_rr = rr
    proxy.inflight["carrier"] += spent
    if bucket is not None:
        bucket.tokens, bucket.stamp = tokens, now
    if pacer_bucket is not None:
        pacer_bucket.tokens, pacer_bucket.stamp = paced, now


def carrier_read(link: CarrierConnection, data: bytes) -> None:
    """One read from a carrier bind."""
    now = link.last_rx = link.loop.time()
    framer = link.framer
    whole = framer.join(data)
    if whole is None:
        return
    data = whole
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
        pending = pop(seq, None) if cid & P.RESPONSE_BIT else None
        if pending is not None:
            esme, origin_seq, _, started, on_response, extra, wants_receipt = pending  # type: ignore[assignment]
            if cid == SUBMIT_SM_RESP and not status and simple and esme is not None and on_response is None \
                    and extra is None and not wants_receipt:
                if grow:  # resuming after a throttle: one more per answer
                    link.window += 1
                    grow = link.window < link.full_window
                esme.outstanding -= 1
                seconds = now - started
                stats = esme.account_stats
                stats.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
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
            try:
                counts[cid] += 1
            except KeyError:
                count_new(counts, cid)
            answered(P.Pdu(cid, status, seq, data[pos:stop]), pending)
        else:
            try:
                counts[cid] += 1
            except KeyError:
                count_new(counts, cid)
            handle(P.Pdu(cid, status, seq, data[pos:stop]))
        pos = stop
        simple = ENABLED and not own_waiting and not receipts.parked
        grow = link.window < link.full_window
    if pos >= 0:
        framer.keep(data, pos)
    if fast:
        counts[SUBMIT_SM_RESP] = counts.get(SUBMIT_SM_RESP, 0) + fast
        proxy.inflight["carrier"] -= fast
