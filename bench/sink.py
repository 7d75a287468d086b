"""A sink SMSC that costs as little as possible: `python -m bench.sink --port 0`.

Reads headers only (struct), answers every submit_sm from a pre-built struct with a
message id counter, accepts any bind, answers enquire_link and unbind, never decodes
a body. Prints {"port": N} on stdout once listening; runs until SIGTERM/SIGINT.
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

# submit_sm_resp: header + 8 hex digits of message id + NUL (25 bytes, always)
RESP = struct.Struct("!IIII8sx")
MAX_PDU = 64 * 1024


class Counter:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class SinkProtocol(asyncio.Protocol):
    __slots__ = ("buf", "ids", "transport")

    def __init__(self, ids: Counter) -> None:
        self.ids = ids
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        end = len(data)
        pos = 0
        out: list[bytes] = []
        unpack = W.HEADER.unpack_from
        pack = RESP.pack
        ids = self.ids
        n = ids.n
        closing = False
        while end - pos >= 16:
            length, cid, _status, seq = unpack(data, pos)
            if length < 16 or length > MAX_PDU:
                self.transport.abort()  # type: ignore[union-attr]
                return
            if end - pos < length:
                break
            pos += length
            if cid == W.SUBMIT_SM:
                n += 1
                out.append(pack(25, W.SUBMIT_SM_RESP, 0, seq, b"%08x" % (n & 0xFFFFFFFF)))
            elif cid & W.RESPONSE_BIT:
                continue
            elif cid == W.ENQUIRE_LINK:
                out.append(W.pdu(W.ENQUIRE_LINK_RESP, 0, seq))
            elif cid in W.BINDS:
                out.append(W.bind_resp(cid, seq))
            elif cid == W.UNBIND:
                out.append(W.pdu(W.UNBIND_RESP, 0, seq))
                closing = True
            else:
                out.append(W.pdu(W.GENERIC_NACK, W.ESME_RINVCMDID, seq))
        ids.n = n
        self.buf = data[pos:] if pos < end else b""
        transport = self.transport
        assert transport is not None
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if closing:
            transport.close()


async def serve(host: str, port: int, cert: str | None = None, key: str | None = None) -> None:
    loop = asyncio.get_running_loop()
    ids = Counter()
    tls = None
    if cert and key:  # the same hardened context the gateway builds for its listener
        from pathlib import Path

        from gateway.tls import ServerFiles, build_server_context

        tls = build_server_context(ServerFiles("sink", Path(cert), Path(key)))
    server = await loop.create_server(lambda: SinkProtocol(ids), host, port, reuse_address=True, backlog=256,
                                      ssl=tls)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.sink")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls-cert", help="with --tls-key: SMPP over TLS")
    p.add_argument("--tls-key")
    args = p.parse_args(argv)
    use_uvloop("bench.sink")
    asyncio.run(serve(args.host, args.port, args.tls_cert, args.tls_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
