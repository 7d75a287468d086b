"""Load generator: `python -m bench.loadgen --port P --binds 4 --window 100 --duration 5`.

N binds in one uvloop process, each an asyncio.Protocol keeping up to `window`
submit_sm outstanding. PDUs are pre-encoded; only sequence_number is patched
(struct.pack_into). Unpaced: every response frees a slot that is refilled at once.
Paced (--rate): a 1 ms timer releases rate*elapsed messages across the binds.

Stdout is JSON lines: {"event": "bound"}, {"event": "measure_start"},
{"event": "measure_end"}, then {"event": "result", ...}; the parent samples the
other processes' CPU time between the two measure events.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import struct
import sys
import time
from collections import Counter

from bench import wire as W
from bench.procs import use_uvloop

SEQ_AT = 12
pack_into = struct.Struct("!I").pack_into
perf = time.perf_counter

WARMUP, MEASURE, DRAIN = 0, 1, 2


def templates(n_dests: int, blocked_every: int, blocked_dest: str, registered_delivery: int,
              dest_prefix: str = "1415555") -> list[bytes]:
    """n_dests pre-encoded submit_sm, equal length; every blocked_every-th to blocked_dest."""
    text = b"Bench message: your code is 123456. Reply STOP to opt out."
    out = []
    for i in range(n_dests):
        dest = f"{dest_prefix}{i % 10000:04d}"
        if blocked_every and (i + 1) % blocked_every == 0:
            dest = blocked_dest
        out.append(W.submit_sm("14155550000", dest, text, registered_delivery))
    return out


class Gen:
    """State shared by the binds: phase, counters, latencies."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.window = args.window
        n_dests = max(args.blocked_every, 1) * max(1, 1000 // max(args.blocked_every, 1))
        self.templates = templates(n_dests, args.blocked_every, args.blocked_dest, args.registered_delivery,
                                   args.dest_prefix)
        self.phase = WARMUP
        self.count = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.sent = 0
        self.binds: list[Bind] = []
        self.window_full = 0
        # blocked_every: (went to the blocked dest, status) -> count, for all but (False, 0)
        self.check: Counter[tuple[bool, int]] = Counter()

    def outstanding(self) -> int:
        return sum(len(b.sent) for b in self.binds)


class Bind(asyncio.Protocol):
    def __init__(self, gen: Gen, index: int) -> None:
        self.gen = gen
        self.index = index
        self.buf = b""
        self.seq = 1
        self.tpl = index * 7  # binds start at different destinations
        self.sent: dict[int, float] = {}
        self.blocked: set[int] | None = set() if gen.args.blocked_every else None  # seqs to the blocked dest
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.bound: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.unbound: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        a = self.gen.args
        cid = W.BIND_TRANSCEIVER if a.bind == "transceiver" else W.BIND_TRANSMITTER
        transport.write(W.bind(cid, a.system_id, a.password, seq=0x7FFFFFFF))  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.bound.done():
            self.bound.set_result(-1)
        if not self.unbound.done():
            self.unbound.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, k: int, now: float) -> None:
        """Write k submit_sm in one write()."""
        tpls = self.gen.templates
        nt = len(tpls)
        ti = self.tpl
        seq = self.seq
        sent = self.sent
        track = self.blocked
        every = self.gen.args.blocked_every
        chunk = bytearray()
        for _ in range(k):
            off = len(chunk)
            chunk += tpls[ti]
            pack_into(chunk, off + SEQ_AT, seq)
            sent[seq] = now
            if track is not None and (ti + 1) % every == 0:
                track.add(seq)
            seq += 1
            ti += 1
            if ti == nt:
                ti = 0
        self.seq = seq if seq < 0x7FFF0000 else 1
        self.tpl = ti
        self.gen.sent += k
        self.transport.write(chunk)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = perf()
        if self.buf:
            data = self.buf + data
        end = len(data)
        pos = 0
        unpack = W.HEADER.unpack_from
        sent = self.sent
        gen = self.gen
        measuring = gen.phase == MEASURE
        lat = gen.latencies
        got = 0
        statuses = gen.statuses
        track = self.blocked
        while end - pos >= 16:
            length, cid, status, seq = unpack(data, pos)
            if end - pos < length:
                break
            pos += length
            if cid == W.SUBMIT_SM_RESP or cid == W.GENERIC_NACK:
                t0 = sent.pop(seq, None)
                if t0 is None:
                    continue
                got += 1
                if track is not None and (status or seq in track):
                    blocked = seq in track
                    track.discard(seq)
                    if measuring:
                        gen.check[(blocked, status)] += 1
                if measuring:
                    lat.append(now - t0)
                    if status:
                        statuses[status] += 1
            else:
                self._other(cid, status, seq)
        self.buf = data[pos:] if pos < end else b""
        if got:
            if measuring:
                gen.count += got
            if gen.args.rate == 0 and gen.phase != DRAIN:
                self.send(got, now)

    def _other(self, cid: int, status: int, seq: int) -> None:
        t = self.transport
        assert t is not None
        if cid & 0x7FFFFFFF in W.BINDS and cid & W.RESPONSE_BIT:
            if not self.bound.done():
                self.bound.set_result(status)
        elif cid == W.ENQUIRE_LINK:
            t.write(W.pdu(W.ENQUIRE_LINK_RESP, 0, seq))
        elif cid == W.UNBIND:
            t.write(W.pdu(W.UNBIND_RESP, 0, seq))
            t.close()
        elif cid == W.UNBIND_RESP:
            if not self.unbound.done():
                self.unbound.set_result(None)
        elif not cid & W.RESPONSE_BIT:  # deliver_sm (receipts): acknowledge
            t.write(W.pdu(cid | W.RESPONSE_BIT, 0, seq, b"\x00"))


class Pacer:
    """Releases rate*elapsed messages, round-robin over binds with window room, every ~1 ms."""

    def __init__(self, gen: Gen, rate: float) -> None:
        self.gen = gen
        self.rate = rate
        self.loop = asyncio.get_running_loop()
        self.start = perf()
        self.released = 0
        self.rr = 0
        self.handle: asyncio.TimerHandle | None = None

    def tick(self) -> None:
        gen = self.gen
        if gen.phase == DRAIN:
            return
        now = perf()
        due = int(self.rate * (now - self.start)) - self.released
        binds = gen.binds
        n = len(binds)
        per = [0] * n
        tries = 0
        while due > 0 and tries < n:
            self.rr = (self.rr + 1) % n
            b = binds[self.rr]
            if len(b.sent) + per[self.rr] < gen.window:
                per[self.rr] += 1
                due -= 1
                self.released += 1
                tries = 0
            else:
                tries += 1
        if due > 0:  # every window full: drop the backlog, count it
            gen.window_full += due
            self.released += due
        for i, k in enumerate(per):
            if k:
                binds[i].send(k, now)
        self.handle = self.loop.call_later(0.001, self.tick)


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def tls_args(args: argparse.Namespace) -> dict[str, object]:
    """--tls-ca: SMPP over TLS, the server's certificate checked against that CA for 'localhost'."""
    if not args.tls_ca:
        return {}
    import ssl

    return {"ssl": ssl.create_default_context(cafile=args.tls_ca), "server_hostname": "localhost"}


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    gen = Gen(args)
    for i in range(args.binds):
        _, b = await loop.create_connection(functools.partial(Bind, gen, i), args.host, args.port, **tls_args(args))
        gen.binds.append(b)
    statuses = await asyncio.wait_for(asyncio.gather(*(b.bound for b in gen.binds)), 10)
    if any(statuses):
        raise SystemExit(f"bind failed: statuses {statuses}")
    emit(event="bound")
    pacer = None
    now = perf()
    if args.rate:
        pacer = Pacer(gen, args.rate)
        pacer.tick()
    else:
        for b in gen.binds:
            b.send(gen.window, now)
    await asyncio.sleep(args.warmup)
    gen.phase = MEASURE
    t0, c0 = perf(), time.process_time()
    emit(event="measure_start")
    await asyncio.sleep(args.duration)
    gen.phase = DRAIN
    t1, c1 = perf(), time.process_time()
    emit(event="measure_end")
    if pacer is not None and pacer.handle is not None:
        pacer.handle.cancel()
    deadline = perf() + 5
    while gen.outstanding() and perf() < deadline:
        await asyncio.sleep(0.01)
    lost = gen.outstanding()
    for b in gen.binds:
        if b.transport is not None and not b.transport.is_closing():
            b.transport.write(W.pdu(W.UNBIND, 0, 0x7FFFFFFE))
    await asyncio.wait([asyncio.ensure_future(b.unbound) for b in gen.binds], timeout=2)
    for b in gen.binds:
        if b.transport is not None:
            b.transport.close()
    lat = sorted(gen.latencies)
    elapsed = t1 - t0
    return {
        "event": "result",
        "count": gen.count,
        "seconds": round(elapsed, 4),
        "rate": round(gen.count / elapsed, 1),
        "p50_ms": round(percentile(lat, 0.50) * 1e3, 3),
        "p90_ms": round(percentile(lat, 0.90) * 1e3, 3),
        "p99_ms": round(percentile(lat, 0.99) * 1e3, 3),
        "p999_ms": round(percentile(lat, 0.999) * 1e3, 3),
        "max_ms": round(lat[-1] * 1e3, 3) if lat else None,
        "statuses": {f"0x{k:x}": v for k, v in gen.statuses.items()},
        "window_full": gen.window_full,
        "unanswered": lost,
        "cpu_pct": round(100 * (c1 - c0) / elapsed, 1),
        "blocked_check": {f"{'blocked' if b else 'other'}:0x{st:x}": v for (b, st), v in gen.check.items()},
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.loadgen")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--binds", type=int, default=4)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=0, help="total msg/s; 0 = as fast as the window allows")
    p.add_argument("--bind", choices=["transmitter", "transceiver"], default="transmitter")
    p.add_argument("--system-id", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--registered-delivery", type=int, default=0)
    p.add_argument("--blocked-every", type=int, default=0, help="every Nth submit_sm to --blocked-dest")
    p.add_argument("--blocked-dest", default="14155559999")
    p.add_argument("--tls-ca", help="connect over TLS, trusting this CA file")
    p.add_argument("--dest-prefix", default="1415555", help="destinations: this prefix and 4 digits")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    use_uvloop("bench.loadgen")
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
