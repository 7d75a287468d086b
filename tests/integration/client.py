"""A raw asyncio SMPP client for tests that need bytes the friendly libraries won't send."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from aiosmpplib import NPI, TON, BindTransceiver, PhoneNumber, SubmitSm

from gateway.smpp import pdu as P


def submit_sm(dst: str = "14155550123", src: str = "14155550100", text: str = "hello",
              registered_delivery: int = 0, seq: int = 1) -> bytes:
    return SubmitSm(
        sequence_num=seq,
        short_message=text,
        source=PhoneNumber(src, TON.INTERNATIONAL, NPI.ISDN),
        destination=PhoneNumber(dst, TON.INTERNATIONAL, NPI.ISDN),
        registered_delivery=registered_delivery,
    ).pdu()


def bind_pdu(command_id: int, system_id: str, password: str, seq: int = 1) -> bytes:
    raw = BindTransceiver(system_id=system_id, password=password, address_range="").pdu()
    return raw[:4] + struct.pack("!I", command_id) + raw[8:12] + struct.pack("!I", seq) + raw[16:]


class RawClient:
    """One reader task frames everything; `read(match)` waits for a matching PDU.

    With auto_ack, every deliver_sm is answered ESME_ROK and kept in `delivered`.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = P.Framer()
        self.queue: list[P.Pdu] = []
        self.delivered: list[P.Pdu] = []
        self.auto_ack = False
        self.seq = 100
        self.eof = False
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._pump())

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _pump(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for pdu in self.framer.feed(data):
                    if self.auto_ack and pdu.command_id == P.DELIVER_SM:
                        self.delivered.append(pdu)
                        self.respond(pdu)
                    else:
                        self.queue.append(pdu)
                async with self._changed:
                    self._changed.notify_all()
        except (ConnectionError, OSError):
            pass
        self.eof = True
        async with self._changed:
            self._changed.notify_all()

    async def bind(self, system_id: str = "acme", password: str = "secret",
                   command_id: int = P.BIND_TRANSCEIVER) -> P.Pdu:
        return await self.request(bind_pdu(command_id, system_id, password))

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def request(self, raw: bytes, timeout: float = 5.0) -> P.Pdu:
        """Send raw with a fresh sequence number; return the PDU answering it."""
        self.seq += 1
        seq = self.seq
        self.send(raw[:12] + struct.pack("!I", seq) + raw[16:])
        return await self.read(lambda p: p.sequence_number == seq and p.is_response, timeout)

    async def read(self, match: Callable[[P.Pdu], bool] = lambda p: True, timeout: float = 5.0) -> P.Pdu:
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    for i, pdu in enumerate(self.queue):
                        if match(pdu):
                            return self.queue.pop(i)
                    if self.eof:
                        raise ConnectionError("closed by peer")
                    await self._changed.wait()

    async def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(condition)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the peer closes."""
        try:
            await self.wait(lambda: self.eof, timeout)
            return True
        finally:
            await self.close()

    def respond(self, pdu: P.Pdu, status: int = 0, body: bytes = b"\x00") -> None:
        self.send(P.response_for(pdu, status, body))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
