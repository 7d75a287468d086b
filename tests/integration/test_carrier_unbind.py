"""The gateway's own unbind to the carrier: the session stays bound until unbind_resp (SMPP 3.4 2.3, 4.2).

A raw SMSC answers the bind, and on receiving our unbind first writes a deliver_sm and an
enquire_link, reads both answers, and only then sends unbind_resp.
"""

from __future__ import annotations

import asyncio

from aiosmpplib import NPI, TON, DeliverSm, PhoneNumber

from gateway.smpp import pdu as P
from tests.integration.conftest import GatewayFactory


class RawSmsc:
    def __init__(self) -> None:
        self.framer = P.Framer()
        self.answers: dict[int, P.Pdu] = {}
        self.bound = asyncio.Event()
        self.done = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._queue: list[P.Pdu] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _next(self, reader: asyncio.StreamReader) -> P.Pdu:
        while not self._queue:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("gateway closed")
            self._queue.extend(self.framer.feed(data))
        return self._queue.pop(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bind = await self._next(reader)
        assert bind.command_id == P.BIND_TRANSCEIVER
        writer.write(P.response_for(bind, 0, b"smsc\x00"))
        self.bound.set()
        while (pdu := await self._next(reader)).command_id != P.UNBIND:
            if not pdu.is_response:
                writer.write(P.response_for(pdu, 0, b"\x00"))
        mo = DeliverSm(
            sequence_num=7001, short_message="hello",
            source=PhoneNumber("14155550123", TON.INTERNATIONAL, NPI.ISDN),
            destination=PhoneNumber("14155550100", TON.INTERNATIONAL, NPI.ISDN),
        ).pdu()
        writer.write(mo + P.encode(P.ENQUIRE_LINK, 0, 7002))
        while len(self.answers) < 2:
            answer = await self._next(reader)
            if answer.is_response:
                self.answers[answer.sequence_number] = answer
        writer.write(P.response_for(pdu, 0))
        self.done.set()
        await reader.read()  # the gateway closes after our unbind_resp
        writer.close()


async def test_deliver_sm_and_enquire_link_during_our_unbind_are_answered(
    make_gateway: GatewayFactory,
) -> None:
    smsc = RawSmsc()
    port = await smsc.start()
    try:
        gateway = await make_gateway(carrier={"port": port}, routing={"unbound_status": 0x58})
        await asyncio.wait_for(smsc.bound.wait(), 5)
        await asyncio.wait_for(gateway.stop(), 10)
        await asyncio.wait_for(smsc.done.wait(), 1)
        deliver_resp, enquire_resp = smsc.answers[7001], smsc.answers[7002]
        assert deliver_resp.command_id == P.DELIVER_SM_RESP
        assert deliver_resp.command_status == 0x58  # routing.unbound_status: the carrier retries
        assert enquire_resp.command_id == P.ENQUIRE_LINK_RESP
        assert enquire_resp.command_status == 0
    finally:
        await smsc.stop()
