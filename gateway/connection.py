"""The asyncio Protocol both sides share: per-PDU handling, batched writes, PDU counters, close/abort.

Writes are collected and flushed once per loop iteration, so a burst of PDUs costs one
send() instead of one per PDU.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from gateway.metrics import Stats, count
from gateway.smpp import pdu as P
from gateway.smpp import status as st

log = logging.getLogger(__name__)


_pack_seq_into = P.SEQ.pack_into
_unpack_uint32 = P.SEQ.unpack_from  # the command_id at offset 4
MAX_WRITE_BUFFER = 16 * 1024 * 1024  # a peer that never reads is cut off past this


class Connection(asyncio.Protocol):
    side = "esme"
    error_status = st.ESME_RSYSERR  # answer to a request our own bug could not handle

    def __init__(self, stats: Stats, max_pdu: int = P.MAX_PDU) -> None:
        self.stats = stats
        self.framer = P.Framer(max_pdu=max_pdu)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.peer = "?"
        self.closed = False
        self.closed_future: asyncio.Future[None] = self.loop.create_future()
        self.last_rx = self.loop.time()
        self._out = bytearray()  # what this loop turn sends, PDUs back to back
        self._flush_scheduled = False
        self._in_counts = stats.pdu_counter(self.side, "in")
        self._out_counts = stats.pdu_counter(self.side, "out")

    # --- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.on_connected()

    # data_received: each session's fused read loop (gateway/hotpath.py) frames with self.framer,
    # counts each PDU in _in_counts and hands it to handle(), or forwards it itself

    def handle(self, pdu: P.Pdu) -> None:
        """One PDU in wire order; an exception is our bug: answer, keep the session."""
        try:
            self.on_pdu(pdu)
        except Exception:
            log.exception("pdu_handler_failed", extra=self.log_extra(pdu=repr(pdu)))
            self._handler_failed(pdu)

    def framing_failed(self, error: str, sequence_number: int) -> None:
        """A command_length that cannot be resynchronised (the PDUs before it were handled)."""
        log.warning("framing_error", extra={"peer": self.peer, "side": self.side, "error": error})
        self.send(P.generic_nack(st.ESME_RINVCMDLEN, sequence_number))
        self.close()

    def _handler_failed(self, pdu: P.Pdu) -> None:
        if not pdu.is_response:
            self.send(P.response_for(pdu, self.error_status))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
        if not self.closed_future.done():
            self.closed_future.set_result(None)
        self.on_closed()

    # --- writing ----------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.closed:
            return
        self._out += data
        key: int = _unpack_uint32(data, 4)[0]
        count(self._out_counts, key)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def send_with_sequence(self, data: bytes, sequence_number: int, command_id: int) -> None:
        """send(data) with only sequence_number rewritten (Pdu.with_sequence), written in place;
        command_id is data's (the caller has it: no read here)."""
        if self.closed:
            return
        out = self._out
        at = len(out) + 12
        out += data
        _pack_seq_into(out, at, sequence_number)
        count(self._out_counts, command_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        transport = self.transport
        out = self._out
        if out and transport is not None and not transport.is_closing():
            data = bytes(out)
            out.clear()
            transport.write(data)
            if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                log.warning("peer_not_reading", extra=self.log_extra())
                self.abort()

    # --- flow control: a peer that does not read our answers gets no more requests read
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        """Flush what is queued, then close."""
        if self.closed:
            return
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # --- hooks ------------------------------------------------------------------
    def on_connected(self) -> None: ...

    def on_pdu(self, pdu: P.Pdu) -> None: ...

    def on_closed(self) -> None: ...

    def log_extra(self, **kw: Any) -> dict[str, Any]:
        return {"peer": self.peer, "side": self.side, **kw}
