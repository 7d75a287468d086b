"""The gateway's MT hot path in one process, no sockets:
`python -m bench.hotloop [--limits] [--programs off|open|defer|reject] [--profile]`.

A real Gateway (SQLite, the opt-out policy, the real EsmeConnection and CarrierConnection)
whose two connections get fake transports: batches of submit_sm go into the application
session's data_received, the forwarded bytes the carrier transport receives are answered
with submit_sm_resp into the carrier session's data_received, and the answers reach the
application's transport. The figure is process CPU per message of that round trip: the
Python cost of the path (framing, checks, shaping, remapping, counters), without the
syscalls the real bench adds. A steady number for comparing two versions of the code;
`make bench` remains the measure of record. --programs: the account declares bench.run's
programs (a marketing default) with the clock at noon in California (open) or at 23:00 there
(defer: every MT gets schedule_delivery_time; reject: every MT refused).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import sys
import tempfile
import time
from typing import Any

from bench import wire as W
from bench.procs import use_uvloop

RESP = struct.Struct("!IIII8sx")
SEQ = struct.Struct("!I")


class FakeTransport:
    """Enough of asyncio.Transport for Connection: writes are kept (carrier) or dropped."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.data: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.keep:
            self.data.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def answers(data: bytes) -> bytes:
    """A submit_sm_resp for every PDU in the forwarded bytes."""
    out = []
    pos = 0
    unpack = W.HEADER.unpack_from
    n = 0
    while pos < len(data):
        length, _cid, _st, seq = unpack(data, pos)
        n += 1
        out.append(RESP.pack(25, W.SUBMIT_SM_RESP, 0, seq, b"%08x" % n))
        pos += length
    return b"".join(out)


NOON_PST, NIGHT_PST = 1796155200.0, 1796194800.0  # 2026-12-01 12:00 and 23:00 in California


class SteppedLoop:
    """The running loop, but for time(): a clock the caller moves (Rig.step)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = loop.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


class Rig:
    """A started Gateway on SQLite whose carrier binds (to a Simulator, left idle) and one bound
    application session write into FakeTransports: the hot path without sockets."""

    def __init__(self, gw: Any, sim: Any, links: list[Any], esme: Any, clock: SteppedLoop | None) -> None:
        self.gw, self.sim, self.links, self.esme, self.clock = gw, sim, links, esme, clock

    def step(self, seconds: float) -> None:
        """Move the sessions' clock (stepped rigs): reads from now on see that much later."""
        assert self.clock is not None
        self.clock.now += seconds

    @classmethod
    async def start(cls, account: dict[str, Any], carrier: dict[str, Any], stepped: bool = False) -> Rig:
        """stepped: the sessions read a clock only step() moves, so two rigs fed alike see the same times."""
        from gateway.app import Gateway
        from gateway.config import load_settings
        from gateway.esme_server import EsmeConnection
        from gateway.simulator import Simulator

        sim = Simulator(host="127.0.0.1", smpp_port=0, http_port=0)
        await sim.start()
        carrier = {"host": "127.0.0.1", "port": sim.smpp_port, "system_id": "gw", "password": "gw", **carrier}
        tmp = tempfile.mkdtemp(prefix="hotloop-")
        gw = Gateway(load_settings(None, listen={"host": "127.0.0.1", "port": 0}, http={"host": "127.0.0.1", "port": 0},
                                   carrier=carrier, accounts=[account], database_url=f"sqlite:///{tmp}/gw.db",
                                   log_level="WARNING", drain_timeout=0.1))
        await gw.start()
        async with asyncio.timeout(10):
            while len(gw.proxy.carriers) < carrier.get("sessions", 1):
                await asyncio.sleep(0.01)
        links = sorted(gw.proxy.carriers, key=gw.proxy.carriers.index)
        for link in links:
            link.real_transport = link.transport  # back at stop, for the unbind
            link.transport = FakeTransport(keep=True)  # the simulator's socket stays idle
        clock = SteppedLoop(asyncio.get_running_loop()) if stepped else None
        esme = EsmeConnection(gw.esme)
        if clock is not None:
            for conn in (esme, *links):
                conn.loop = clock
        esme.connection_made(FakeTransport(keep=True))
        esme.data_received(W.bind(W.BIND_TRANSMITTER, account["system_id"], account["password"]))
        async with asyncio.timeout(10):
            while esme.system_id != account["system_id"]:
                await asyncio.sleep(0.01)
        esme.transport.data.clear()
        return cls(gw, sim, links, esme, clock)

    def carrier_bytes(self, link: Any) -> bytes:
        """What link wrote since the last call."""
        data = b"".join(link.transport.data)
        link.transport.data.clear()
        return data

    async def stop(self) -> None:
        self.esme.abort()
        self.esme.connection_lost(None)  # what a real transport would call
        for link in self.links:
            link._out.clear()
            link.transport = link.real_transport
        await self.gw.stop()
        await self.sim.stop()


async def run(batches: int, batch: int, limits: bool, profile: bool, programs: str = "off") -> dict[str, float]:
    from bench.run import BENCH_PROGRAMS

    account: dict[str, Any] = {"system_id": "bench", "password": "bench", "window": 10 * batch}
    carrier: dict[str, Any] = {"sessions": 1, "window": 10 * batch}
    if limits:
        account["max_tps"] = carrier["max_tps"] = 1e9
    if programs != "off":
        quiet = "reject" if programs == "reject" else "defer"
        account["programs"] = [{**p, "quiet_hours": quiet} if p.get("default") else p
                               for p in BENCH_PROGRAMS["programs"]]
    rig = await Rig.start(account, carrier)
    gw, esme, link = rig.gw, rig.esme, rig.links[0]
    esme.transport.keep = False
    if programs != "off":
        assert gw.optout is not None
        at = NOON_PST if programs == "open" else NIGHT_PST
        gw.optout.clock = lambda: at
    subs = [W.submit_sm("14155550100", f"1415555{i % 10000:04d}", b"Bench message: your code is 123456.")
            for i in range(batch)]
    template = b"".join(s[:12] + SEQ.pack(i + 1) + s[16:] for i, s in enumerate(subs))
    await asyncio.sleep(1.0)  # start-up work on other threads (index load, first sync) out of the way
    prof = cProfile.Profile() if profile else None
    cpu0 = time.process_time()
    thread0 = time.thread_time()
    wall0 = time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(batches):
        esme.data_received(template)
        await asyncio.sleep(0)  # the connections' flushes
        link.data_received(answers(rig.carrier_bytes(link)))
        await asyncio.sleep(0)
    if prof:
        prof.disable()
    cpu = time.process_time() - cpu0
    thread = time.thread_time() - thread0
    wall = time.perf_counter() - wall0
    n = batches * batch
    assert esme.outstanding == 0, esme.outstanding
    await rig.stop()
    calls = 0.0
    if prof:
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(40)
        calls = stats.total_calls / n  # type: ignore[attr-defined]
    return {"calls_per_msg": calls, "messages": n, "us_per_msg": 1e6 * cpu / n, "wall_us_per_msg": 1e6 * wall / n,
            "thread_us_per_msg": 1e6 * thread / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.hotloop", description=__doc__)
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100, help="submit_sm per read")
    p.add_argument("--limits", action="store_true", help="account and carrier max_tps 1e9 (shaping on)")
    p.add_argument("--profile", action="store_true", help="cProfile the loop (slower; for the shape)")
    p.add_argument("--programs", choices=("off", "open", "defer", "reject"), default="off",
                   help="programs and quiet hours: off, window open, or night (defer / reject every MT)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    use_uvloop()
    results = [asyncio.run(run(args.batches, args.batch, args.limits, args.profile, args.programs))
               for _ in range(args.repeat)]
    best = min(r["us_per_msg"] for r in results)
    if args.profile:
        print(f"function calls per message (cProfile): {results[0]['calls_per_msg']:.1f}")
    each = ", ".join(f"{r['us_per_msg']:.2f} (loop thread {r['thread_us_per_msg']:.2f}, wall {r['wall_us_per_msg']:.2f})"
                     for r in results)
    print(f"hotloop ({'shaping on' if args.limits else 'shaping off'}, programs {args.programs}): {each} µs CPU/msg (best {best:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
