"""Keyword MO round trips: `python -m bench.mo smsc|app|probe ...`.

smsc   An SMSC the gateway binds to (its own process, so bench.sink's submit path stays
       header-only). After SIGUSR1 it sends deliver_sm "STOP" from distinct mobiles to the
       business number over the gateway's carrier binds, `inflight` at a time per phase,
       and times per MO: deliver_sm -> deliver_sm_resp (block durable, MO forwarded, the
       application's ack) and deliver_sm -> the auto-reply submit_sm (matched by its
       destination). Prints {"port"}, then {"event": "result", "phases": [...]}.
app    The application: binds as receiver to the gateway, acks every deliver_sm.
probe  Binds as transmitter to a gateway and sends submit_sm from the business number to
       each mobile every `interval` s until each one is refused (0x0B): first refusal
       times (CLOCK_MONOTONIC, comparable across processes) for the propagation figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
import sys
import time

from bench import wire as W
from bench.procs import use_uvloop

perf = time.perf_counter  # CLOCK_MONOTONIC on Linux: one clock for every process
RESP = struct.Struct("!IIII8sx")


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def deliver_sm(source: str, destination: str, text: bytes, seq: int) -> bytes:
    """deliver_sm (4.6.1) of a plain MO: international addresses, GSM default coding."""
    body = (W.cstr("") + bytes([1, 1]) + W.cstr(source) + bytes([1, 1]) + W.cstr(destination)
            + bytes([0, 0, 0]) + W.cstr("") + W.cstr("") + bytes([0, 0, 0, 0, len(text)]) + text)
    return W.pdu(W.DELIVER_SM, 0, seq, body)


def submit_dest(body: bytes) -> str:
    """destination_addr of a submit_sm body (service_type, src ton/npi/addr, dst ton/npi/addr)."""
    pos = body.index(b"\x00") + 3
    pos = body.index(b"\x00", pos) + 3
    return body[pos:body.index(b"\x00", pos)].decode("latin-1")


def mobiles(base: int, count: int) -> list[str]:
    return [str(base + i) for i in range(count)]


class Frames(asyncio.Protocol):
    """PDU framing; subclasses handle (cid, status, seq, body)."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self.buf + data
        pos = 0
        while len(data) - pos >= 16:
            length, cid, status, seq = W.HEADER.unpack_from(data, pos)
            if len(data) - pos < length:
                break
            self.pdu(cid, status, seq, data[pos + 16:pos + length])
            pos += length
        self.buf = data[pos:]

    def write(self, raw: bytes) -> None:
        assert self.transport is not None
        self.transport.write(raw)

    def pdu(self, cid: int, status: int, seq: int, body: bytes) -> None:
        if cid == W.ENQUIRE_LINK:
            self.write(W.pdu(W.ENQUIRE_LINK_RESP, 0, seq))
        elif cid == W.UNBIND:
            self.write(W.pdu(W.UNBIND_RESP, 0, seq))
            assert self.transport is not None
            self.transport.close()


# --- smsc ------------------------------------------------------------------------


class Smsc:
    def __init__(self) -> None:
        self.links: list[CarrierSide] = []
        self.resp: dict[int, asyncio.Future[float]] = {}
        self.reply: dict[str, asyncio.Future[float]] = {}
        self.seq = 0
        self.ids = 0


class CarrierSide(Frames):
    def __init__(self, smsc: Smsc) -> None:
        super().__init__()
        self.smsc = smsc

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.smsc.links:
            self.smsc.links.remove(self)

    def pdu(self, cid: int, status: int, seq: int, body: bytes) -> None:
        now = perf()
        s = self.smsc
        if cid == W.SUBMIT_SM:
            s.ids += 1
            self.write(RESP.pack(25, W.SUBMIT_SM_RESP, 0, seq, b"%08x" % s.ids))
            fut = s.reply.get(submit_dest(body))
            if fut is not None and not fut.done():
                fut.set_result(now)
        elif cid == W.DELIVER_SM | W.RESPONSE_BIT:
            fut = s.resp.pop(seq, None)
            if fut is not None and not fut.done():
                fut.set_result(now if status == 0 else -float(status))
        elif cid in W.BINDS:
            self.write(W.bind_resp(cid, seq))
            s.links.append(self)
        else:
            super().pdu(cid, status, seq, body)


async def one_mo(smsc: Smsc, mobile: str, business: str, timeout: float) -> dict[str, float | str]:
    loop = asyncio.get_running_loop()
    smsc.seq += 1
    seq = smsc.seq
    link = smsc.links[seq % len(smsc.links)]
    resp = smsc.resp[seq] = loop.create_future()
    reply = smsc.reply[mobile] = loop.create_future()
    t0 = perf()
    link.write(deliver_sm(mobile, business, b"STOP", seq))
    out: dict[str, float | str] = {"mobile": mobile, "sent": t0}
    try:
        t_resp = await asyncio.wait_for(resp, timeout)
        out["resp"] = t_resp
        out["reply"] = await asyncio.wait_for(reply, timeout)
    except TimeoutError:
        pass
    smsc.reply.pop(mobile, None)
    return out


async def phase(smsc: Smsc, mobs: list[str], business: str, inflight: int, gap: float) -> dict[str, object]:
    queue = list(reversed(mobs))
    done: list[dict[str, float | str]] = []

    async def worker() -> None:
        while queue:
            done.append(await one_mo(smsc, queue.pop(), business, 10.0))
            if gap:
                await asyncio.sleep(gap)

    t0 = perf()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return {"inflight": inflight, "seconds": perf() - t0, "mos": done}


async def smsc_main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    smsc = Smsc()
    server = await loop.create_server(lambda: CarrierSide(smsc), args.host, args.port)
    go, stop = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    emit(port=server.sockets[0].getsockname()[1])
    waiter = asyncio.ensure_future(go.wait())
    await asyncio.wait([waiter, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if go.is_set():
        phases = []
        base = args.mobile_base
        for inflight in (int(x) for x in args.inflight.split(",")):
            phases.append(await phase(smsc, mobiles(base, args.count), args.business, inflight, args.gap))
            base += args.count
        emit(event="result", links=len(smsc.links), phases=phases)
        await stop.wait()
    server.close()


# --- app (receiver) and probe (transmitter) --------------------------------------


class AppSide(Frames):
    def __init__(self, bind_cid: int) -> None:
        super().__init__()
        self.bind_cid = bind_cid
        self.bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.received = 0
        self.on_resp: dict[int, str] = {}
        self.refused: dict[str, float] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write(W.bind(self.bind_cid, "bench", "bench", seq=0x7FFFFFFF))

    def pdu(self, cid: int, status: int, seq: int, body: bytes) -> None:
        if cid == self.bind_cid | W.RESPONSE_BIT:
            if not self.bound.done():
                self.bound.set_result(status)
        elif cid == W.DELIVER_SM:
            self.received += 1
            self.write(W.pdu(W.DELIVER_SM | W.RESPONSE_BIT, 0, seq, b"\x00"))
        elif cid == W.SUBMIT_SM_RESP:
            mobile = self.on_resp.pop(seq, None)
            if mobile is not None and status == 0x0B and mobile not in self.refused:
                self.refused[mobile] = perf()
        else:
            super().pdu(cid, status, seq, body)


async def client_main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    cid = W.BIND_RECEIVER if args.mode == "app" else W.BIND_TRANSMITTER
    _, side = await loop.create_connection(lambda: AppSide(cid), args.host, args.port)
    status = await asyncio.wait_for(side.bound, 10)
    if status:
        raise SystemExit(f"bind failed: 0x{status:x}")
    emit(event="bound")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.mode == "app":
        await stop.wait()
        emit(event="result", received=side.received)
        return
    targets = mobiles(args.mobile_base, args.count)
    seq = 0
    deadline = perf() + args.timeout
    while len(side.refused) < len(targets) and perf() < deadline and not stop.is_set():
        for mobile in targets:
            if mobile not in side.refused:
                seq += 1
                side.on_resp[seq] = mobile
                side.write(W.submit_sm(args.business, mobile, b"probe", 0, seq))
        await asyncio.sleep(args.interval)
    emit(event="result", refused=side.refused, sent=seq)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.mo")
    p.add_argument("mode", choices=["smsc", "app", "probe"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--business", default="14155550000", help="the number the mobiles text")
    p.add_argument("--mobile-base", type=int, default=16505550000)
    p.add_argument("--count", type=int, default=200, help="MOs per phase (smsc), mobiles (probe)")
    p.add_argument("--inflight", default="1,8", help="smsc: MOs in flight, one phase each")
    p.add_argument("--gap", type=float, default=0.0, help="smsc: pause after each MO")
    p.add_argument("--interval", type=float, default=0.001, help="probe: seconds between rounds")
    p.add_argument("--timeout", type=float, default=15.0, help="probe: give up after")
    args = p.parse_args(argv)
    use_uvloop()
    asyncio.run(smsc_main(args) if args.mode == "smsc" else client_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
