"""An MO that expires in the outbox leaves an audit event with the evidence, not the raw PDU."""

from __future__ import annotations

import asyncio

from gateway.simulator import Simulator
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, Store
from tests.integration.conftest import GatewayFactory


async def _expired(store: Store, count: int) -> list[AuditEvent]:
    async with asyncio.timeout(5):
        while True:
            events = [e for e in await store.events_after(0) if e.op == "outbox_expired"]
            if len(events) >= count:
                return events
            await asyncio.sleep(0.02)


async def test_expired_mo_event_keeps_numbers_text_and_coding_only(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(routing={"outbox_ttl": 0.2, "outbox_retry_interval": 0.05})
    assert await sim.inject_mo("14155550123", "14155550100", "too late") == st.ESME_ROK
    assert await sim.inject_mo("14155550124", "14155550100", "caf\u00e9 \u20ac\u0000", data_coding=8) == st.ESME_ROK
    assert gateway.store is not None
    events = sorted(await _expired(gateway.store, 2), key=lambda e: e.number)
    assert [(e.number, e.counterpart, e.account, e.text, e.data_coding) for e in events] == [
        ("+14155550123", "+14155550100", "acme", "too late", 0),
        ("+14155550124", "+14155550100", "acme", "caf\u00e9 \u20ac\u2400", 8),
    ]
    for event in events:  # no hex dump of the PDU anywhere in the event
        assert all("0000000" not in str(getattr(event, name)) for name in event.__slots__)
