"""gateway/hotpath.py against the generic path: the same reads give the same bytes, PDU by PDU.

Each example drives two fresh gateways (bench.hotloop.Rig: a real Gateway on SQLite with its
sessions on fake transports) with one random script: reads made of submit_sm the fast path takes
and every kind it must leave to the generic path (a blocked, national, long or truncated one, an
unlisted sender, data_sm, enquire_link, an unknown command), cut at random points, against small
windows and token buckets that run dry; the carrier answers each forwarded PDU with a random status,
in order or not. One gateway runs with the fast path, one without (hotpath.ENABLED). Everything
the application and the carrier receive must be identical, and so must the counters.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as s

from bench import wire as W
from bench.hotloop import Rig
from gateway import hotpath
from gateway.smpp import pdu as P
from gateway.store.base import BlockKey

SOURCE, BLOCKED = "14155550100", "14155550123"
HEADER = struct.Struct("!IIII")


def submit(source: str, dest: str, text: bytes, ton: int = 1, src_ton: int = 1, registered: int = 0) -> bytes:
    body = (W.cstr("") + bytes([src_ton, 1]) + W.cstr(source) + bytes([ton, 1]) + W.cstr(dest) + bytes([0, 0, 0])
            + W.cstr("") + W.cstr("") + bytes([registered, 0, 0, 0, len(text)]) + text)
    return W.pdu(W.SUBMIT_SM, 0, 0, body)


def data_sm(dest: str) -> bytes:
    body = (W.cstr("") + bytes([1, 1]) + W.cstr(SOURCE) + bytes([1, 1]) + W.cstr(dest) + bytes([0, 0, 0])
            + struct.pack("!HH", 0x0424, 2) + b"hi")
    return W.pdu(P.DATA_SM, 0, 0, body)


KINDS: dict[str, bytes] = {
    "ok": submit(SOURCE, "14155550101", b"your code is 1234"),
    "ok2": submit(SOURCE, "447700900123", b"hello", registered=1),
    "ok3": submit(SOURCE, "14155550102", b"x"),
    "blocked": submit(SOURCE, BLOCKED, b"promo"),
    "national": submit(SOURCE, "4155550101", b"hi", ton=0),
    "short_code": submit(SOURCE, "12345", b"hi"),
    "zero": submit(SOURCE, "0155550101", b"hi"),
    "alnum": submit("ACME", "14155550101", b"hi", src_ton=5),
    "unlisted": submit("EVIL", "14155550101", b"hi", src_ton=5),
    "long": submit(SOURCE, "14155550101", b"L" * 160),
    "truncated": submit(SOURCE, "14155550101", b"hi")[:30],
    "data_sm": data_sm("14155550101"),
    "enquire": W.pdu(W.ENQUIRE_LINK, 0, 0),
    "unknown": W.pdu(0x00000099, 0, 0),
    "nack": W.pdu(0x80000000, 0, 0),
}
WEIGHTED = ["ok"] * 8 + ["ok2"] * 3 + ["ok3"] * 3 + sorted(k for k in KINDS if not k.startswith("ok"))


def framed(kinds: list[str], first_seq: int) -> bytes:
    out = []
    for n, kind in enumerate(kinds):
        raw = KINDS[kind]
        if kind == "truncated":  # its own command_length: a body too short to scan
            raw = struct.pack("!I", len(raw)) + raw[4:]
        out.append(raw[:12] + struct.pack("!I", first_seq + n) + raw[16:])
    return b"".join(out)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(marks) if b > a]


def answers(data: bytes, statuses: list[int], reverse: bool) -> bytes:
    out = []
    pos = 0
    n = 0
    while pos < len(data):
        length, cid, _st, seq = HEADER.unpack_from(data, pos)
        pos += length
        if cid & 0x80000000:
            continue  # our answers to the carrier (enquire_link_resp)
        status = statuses[n % len(statuses)] if statuses else 0
        n += 1
        if status == -1:
            out.append(W.pdu(0x80000000, 0x03, seq))  # generic_nack
        else:
            out.append(W.pdu(cid | 0x80000000, status, seq, b"" if status else W.cstr(f"id{seq:06d}")))
    if reverse:
        out.reverse()
    return b"".join(out)


Script = tuple[list[tuple[list[str], list[int]]], list[int], bool, dict[str, Any], dict[str, Any]]

reads = s.lists(s.tuples(s.lists(s.sampled_from(WEIGHTED), min_size=1, max_size=30),
                         s.lists(s.integers(0, 2000), max_size=3)), min_size=1, max_size=8)
statuses = s.lists(s.sampled_from([0, 0, 0, 0, 0x58, 0x14, 0x45, -1]), max_size=6)
accounts = s.fixed_dictionaries({"window": s.integers(2, 40)}, optional={
    "max_tps": s.sampled_from([0.001, 300.0, 2000.0]), "burst": s.integers(1, 120)})
carriers = s.fixed_dictionaries({"window": s.integers(1, 12), "throttle_pause": s.sampled_from([0.0, 30.0])}, optional={
    "max_tps": s.just(0.001), "burst": s.integers(1, 60)})


async def play(script: Script, fast: bool) -> dict[str, Any]:
    steps, answer_statuses, reverse, account_extra, carrier_extra = script
    hotpath.ENABLED = fast
    account = {"system_id": "app", "password": "pw", "numbers": ["+14155550100"], "senders": ["ACME"],
               **account_extra}
    if "burst" in account and "max_tps" not in account:
        del account["burst"]
    carrier = {"sessions": 2, **carrier_extra}
    if "burst" in carrier and "max_tps" not in carrier:
        del carrier["burst"]
    rig = await Rig.start(account, carrier, stepped=True)
    try:
        assert rig.gw.optout is not None
        rig.gw.optout.index.add(BlockKey("+" + BLOCKED, "+" + SOURCE, "number"), "optout")
        seq = 1
        carrier_seen = [b"", b""]
        unanswered = [b"", b""]
        for step, (kinds, points) in enumerate(steps):
            rig.step(0.003)  # the same clock in both runs: buckets refill alike, latencies match
            stream = framed(kinds, seq)
            seq += len(kinds)
            for chunk in cut(stream, points):
                rig.esme.data_received(chunk)
            for _ in range(3):
                await asyncio.sleep(0)
            rig.step(0.004 * (len(kinds) % 4))  # the carrier takes its time: latencies in different buckets
            for i, link in enumerate(rig.links):
                sent = rig.carrier_bytes(link)
                carrier_seen[i] += sent
                unanswered[i] += sent
                if unanswered[i] and not (reverse and step % 2 == 0):  # reverse: two steps' answers in one read
                    link.data_received(answers(unanswered[i], answer_statuses, reverse))
                    unanswered[i] = b""
            for _ in range(3):
                await asyncio.sleep(0)
        for i, link in enumerate(rig.links):  # what is still unanswered, answered last
            if unanswered[i]:
                link.data_received(answers(unanswered[i], answer_statuses, False))
        for _ in range(3):
            await asyncio.sleep(0)
        stats = rig.gw.metrics.stats
        account_stats = stats.account("app")
        metrics = rig.gw.metrics
        rejected = {s.labels["reason"]: s.value for m in metrics.mt_rejected.collect()
                    for s in m.samples if s.name.endswith("_total")}
        throttled = {s.labels["status"]: s.value for m in metrics.carrier_throttled.collect()
                     for s in m.samples if s.name.endswith("_total")}
        return {
            "esme": b"".join(rig.esme.transport.data),
            "carriers": carrier_seen,
            "pdus": {k: dict(v) for k, v in stats.pdus.items()},
            "account_in": dict(account_stats.pdus_in), "account_out": dict(account_stats.pdus_out),
            "latency": (list(account_stats.latency_counts), round(account_stats.latency_sum, 9)),
            "outstanding": rig.esme.outstanding, "inflight": dict(stats.inflight),
            "pending": [len(link.pending) for link in rig.links],
            "rejected": rejected, "carrier_throttled": throttled,
            "windows": [link.window for link in rig.links],
            "tokens": None if rig.esme.bucket is None else round(rig.esme.bucket.tokens, 2),
            "paced": None if rig.gw.proxy.pacer is None else round(rig.gw.proxy.pacer.bucket.tokens, 2),
        }
    finally:
        await rig.stop()
        hotpath.ENABLED = True


def run_both(script: Script) -> tuple[dict[str, Any], dict[str, Any]]:
    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        return await play(script, fast=True), await play(script, fast=False)
    return asyncio.run(both())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=(Phase.explicit, Phase.reuse, Phase.generate))  # no shrinking: each try is two gateways
@given(reads, statuses, s.booleans(), accounts, carriers)
def test_fast_and_generic_paths_write_the_same_bytes(steps: Any, answer_statuses: list[int], reverse: bool,
                                                      account: dict[str, Any], carrier: dict[str, Any]) -> None:
    fast, generic = run_both((steps, answer_statuses, reverse, account, carrier))
    assert fast == generic


def test_the_fast_path_takes_the_common_submit() -> None:
    """The comparison above means something only if the fast path runs: with it, a plain submit_sm
    never becomes a Pdu (no generic handling), and it is answered exactly as without it."""
    from gateway.esme_server import EsmeConnection

    original = EsmeConnection.on_pdu
    script: Script = ([(["ok"] * 10, [])], [0], False, {"window": 50}, {"window": 50})
    runs: dict[bool, list[int]] = {True: [], False: []}

    async def counted(fast: bool) -> dict[str, Any]:
        def counting(self: EsmeConnection, pdu: Any) -> None:
            runs[fast].append(pdu.command_id)
            original(self, pdu)
        EsmeConnection.on_pdu = counting  # type: ignore[method-assign]
        try:
            return await play(script, fast)
        finally:
            EsmeConnection.on_pdu = original  # type: ignore[method-assign]

    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        return await counted(True), await counted(False)

    fast, generic = asyncio.run(both())
    assert runs[False].count(W.SUBMIT_SM) == 10
    assert runs[True].count(W.SUBMIT_SM) == 1  # the first judges the sender (then cached); the rest never get here
    assert fast == generic
    assert fast["esme"].count(struct.pack("!I", W.SUBMIT_SM_RESP)) == 10


@pytest.mark.parametrize("kind", ["blocked", "unlisted", "national", "long", "truncated"])
def test_what_the_fast_path_leaves_is_refused_or_forwarded_as_before(kind: str) -> None:
    fast, generic = run_both(([(["ok", kind, "ok"], [])], [0], False, {"window": 50}, {"window": 50}))
    assert fast == generic
