"""A scriptable SMSC for tests that need an exact order on the wire.

It accepts binds and answers enquire_link and unbind; every other PDU is queued and left
unanswered, and the test writes what it wants, in the TCP writes it wants (`write`).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from gateway.smpp import pdu as P

BINDS = {P.BIND_TRANSCEIVER, P.BIND_TRANSMITTER, P.BIND_RECEIVER}


def deliver_sm(seq: int, source: bytes, destination: bytes, text: bytes, esm_class: int = 0,
               tlvs: bytes = b"") -> bytes:
    """deliver_sm (4.6.1) with international ISDN addresses; esm_class 0x04 for a receipt."""
    body = (b"\x00" + b"\x01\x01" + source + b"\x00" + b"\x01\x01" + destination + b"\x00"
            + bytes([esm_class, 0, 0]) + b"\x00\x00" + b"\x00\x00\x00\x00" + bytes([len(text)]) + text + tlvs)
    return P.encode(P.DELIVER_SM, 0, seq, body)


def receipt(seq: int, message_id: bytes, mobile: bytes = b"14155550123", business: bytes = b"14155550100",
            tlv_id: bytes | None = None) -> bytes:
    """An SMSC delivery receipt (Appendix B text; receipted_message_id TLV when tlv_id is given)."""
    text = b"id:" + message_id + b" sub:001 dlvrd:001 submit date:2601010000 done date:2601010000 stat:DELIVRD err:000"
    tlvs = b"" if tlv_id is None else struct.pack("!HH", P.TAG_RECEIPTED_MESSAGE_ID, len(tlv_id) + 1) + tlv_id + b"\x00"
    return deliver_sm(seq, mobile, business, text, esm_class=0x04, tlvs=tlvs)


def submit_sm_resp(seq: int, message_id: bytes, status: int = 0) -> bytes:
    return P.encode(P.SUBMIT_SM_RESP, status, seq, message_id + b"\x00")


class RawSmsc:
    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.queue: list[P.Pdu] = []
        self._origin: dict[int, asyncio.StreamWriter] = {}
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def write(self, data: bytes, session: int = 0) -> None:
        """One TCP write on the given bound session."""
        self.writers[session].write(data)

    async def read(self, match: Callable[[P.Pdu], bool], timeout: float = 5.0) -> P.Pdu:
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    for i, pdu in enumerate(self.queue):
                        if match(pdu):
                            return self.queue.pop(i)
                    await self._changed.wait()

    def session_of(self, pdu: P.Pdu) -> int:
        """The index (for `write`) of the bound session pdu came on."""
        return self.writers.index(self._origin[id(pdu)])

    async def bound(self, sessions: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.writers) >= sessions)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        framer = P.Framer()
        try:
            while data := await reader.read(65536):
                for pdu in framer.feed(data):
                    await self._on_pdu(pdu, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _on_pdu(self, pdu: P.Pdu, writer: asyncio.StreamWriter) -> None:
        cid = pdu.command_id
        if cid in BINDS:
            writer.write(P.response_for(pdu, 0, b"rawsmsc\x00"))
            self.writers.append(writer)
        elif cid in (P.ENQUIRE_LINK, P.UNBIND):
            writer.write(P.response_for(pdu, 0))
        else:
            self.queue.append(pdu)
            self._origin[id(pdu)] = writer
        async with self._changed:
            self._changed.notify_all()
