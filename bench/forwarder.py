"""The bench's own minimal SMPP-aware forwarder: `python -m bench.forwarder --sink-port N`.

The bar the gateway is measured against (issue 10): the least a proxy that forwards SMPP
must do. It binds `--sessions` transceivers to the sink, answers every application bind
itself (no password check), frames PDUs by their header, forwards each request with only
sequence_number rewritten (round robin over the sink binds), and maps each answer back to
the application's sequence_number. Nothing else: no policy, no window, no counters, no
timeouts. Writes are collected per read and sent once (as the gateway does per loop turn).
Prints {"port": N} once the sink binds are up; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
import sys

from bench import wire as W
from bench.procs import use_uvloop

SEQ = struct.Struct("!I")
MAX_PDU = 64 * 1024


class Upstream(asyncio.Protocol):
    """One bind to the sink: requests out with our sequence numbers, answers back to their origin."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[Downstream, int]] = {}
        self.seq = 1
        self.bound: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(W.bind(W.BIND_TRANSCEIVER, "fwd", "fwd", seq=1))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        end = len(data)
        pos = 0
        unpack = W.HEADER.unpack_from
        pack = SEQ.pack
        pop = self.pending.pop
        touched: set[Downstream] = set()
        while end - pos >= 16:
            length, cid, _status, seq = unpack(data, pos)
            if end - pos < length:
                break
            if cid & W.RESPONSE_BIT:
                origin = pop(seq, None)
                if origin is not None:
                    down, oseq = origin
                    down.out.append(data[pos:pos + 12] + pack(oseq) + data[pos + 16:pos + length])
                    touched.add(down)
                elif not self.bound.done():
                    self.bound.set_result(None)
            pos += length
        self.buf = data[pos:] if pos < end else b""
        for down in touched:
            down.flush()

    def forward(self, pdus: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(pdus))


class Downstream(asyncio.Protocol):
    """One application connection."""

    def __init__(self, ups: list[Upstream]) -> None:
        self.ups = ups
        self.rr = 0
        self.buf = b""
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        end = len(data)
        pos = 0
        unpack = W.HEADER.unpack_from
        pack = SEQ.pack
        ups = self.ups
        n = len(ups)
        batches: dict[int, list[bytes]] = {}
        while end - pos >= 16:
            length, cid, _status, seq = unpack(data, pos)
            if length < 16 or length > MAX_PDU:
                self.transport.abort()  # type: ignore[union-attr]
                return
            if end - pos < length:
                break
            if cid & W.RESPONSE_BIT:
                pass
            elif cid in W.BINDS:
                self.out.append(W.bind_resp(cid, seq, "fwd"))
            elif cid == W.ENQUIRE_LINK:
                self.out.append(W.pdu(W.ENQUIRE_LINK_RESP, 0, seq))
            elif cid == W.UNBIND:
                self.out.append(W.pdu(W.UNBIND_RESP, 0, seq))
            else:
                self.rr = i = (self.rr + 1) % n
                up = ups[i]
                useq = up.seq = up.seq + 1 if up.seq < 0x7FFFFFFF else 1
                up.pending[useq] = (self, seq)
                batches.setdefault(i, []).append(data[pos:pos + 12] + pack(useq) + data[pos + 16:pos + length])
            pos += length
        self.buf = data[pos:] if pos < end else b""
        for i, pdus in batches.items():
            ups[i].forward(pdus)
        if self.out:
            self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()


async def serve(host: str, port: int, sink_port: int, sessions: int) -> None:
    loop = asyncio.get_running_loop()
    ups = []
    for _ in range(sessions):
        _, up = await loop.create_connection(Upstream, host, sink_port)
        await asyncio.wait_for(up.bound, 30)
        ups.append(up)
    server = await loop.create_server(lambda: Downstream(ups), host, port, reuse_address=True, backlog=256)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.forwarder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--sink-port", type=int, required=True)
    p.add_argument("--sessions", type=int, default=2, help="binds to the sink (default 2, like the gateway's)")
    args = p.parse_args(argv)
    use_uvloop("bench.forwarder")
    asyncio.run(serve(args.host, args.port, args.sink_port, args.sessions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
