"""Issue 12 review: probes over real sockets for what the first tests left out (races of the
index sync with admin API writes, reload with PDUs in flight, sessions on both listeners)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, BlockKey
from tests.integration.conftest import GatewayFactory
from tests.integration.test_admin_api import (
    LONG_CODE,
    MOBILE,
    WRITE,
    api_gateway,
    bound_client,
    call,
    submit_status,
)

KEY = BlockKey(MOBILE, LONG_CODE, "number")
BLOCK = {"number": MOBILE, "counterpart": LONG_CODE, "scope": "number", "reason": "r", "operator": "o"}
LIFT = {"counterpart": LONG_CODE, "scope": "number", "reason": "r", "operator": "o"}


def hold_first_fetch(gateway: Gateway) -> tuple[asyncio.Event, asyncio.Event]:
    """The store's next events_after that finds events returns them only once `release` is set
    (the read itself happens at once: its snapshot is then older than what follows)."""
    assert gateway.store is not None
    store = gateway.store
    real: Callable[..., Awaitable[list[AuditEvent]]] = store.events_after
    held, release = asyncio.Event(), asyncio.Event()

    async def events_after(event_id: int, limit: int = 1000) -> list[AuditEvent]:
        events = await real(event_id, limit)
        if events and not held.is_set():
            held.set()
            await release.wait()
        return events

    store.events_after = events_after  # type: ignore[method-assign]
    return held, release


async def test_a_stale_catch_up_never_undoes_a_newer_api_write(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    """Block, lift, block again through the API while one catch-up of the index sync is held
    with the lift: once it goes on, the mobile must still be blocked (the old code replayed the
    lift after the newer block and forwarded MT to a blocked mobile)."""
    gateway = await api_gateway(make_gateway, f"sqlite:///{tmp_path}/race.db")
    port = gateway.http_port
    client = await bound_client(gateway)
    assert (await call(port, "POST", "/v1/blocks", WRITE, BLOCK))[0] == 201
    assert await submit_status(client) == st.ESME_RINVDSTADR
    held, release = hold_first_fetch(gateway)
    lift = asyncio.create_task(call(port, "DELETE", f"/v1/blocks/{MOBILE}", WRITE, LIFT))
    await asyncio.wait_for(held.wait(), 5)  # a catch-up read the lift and waits
    status, _, again = await call(port, "POST", "/v1/blocks", WRITE, BLOCK)
    assert status == 201 and again["changed"]
    release.set()
    assert (await asyncio.wait_for(lift, 5))[0] == 200
    assert gateway.store is not None and await gateway.store.get_block(KEY) is not None
    assert KEY in gateway.index
    assert await submit_status(client) == st.ESME_RINVDSTADR
    await client.close()


async def test_concurrent_api_writes_leave_index_and_store_alike(make_gateway: GatewayFactory,
                                                                 tmp_path: Path) -> None:
    gateway = await api_gateway(make_gateway, f"sqlite:///{tmp_path}/many.db")
    port = gateway.http_port
    numbers = [f"+1415555{n:04d}" for n in range(300, 330)]

    async def churn(number: str) -> list[int]:
        body = {**BLOCK, "number": number}
        statuses = []
        for _ in range(3):
            statuses.append((await call(port, "POST", "/v1/blocks", WRITE, body))[0])
            statuses.append((await call(port, "DELETE", f"/v1/blocks/{number}", WRITE, LIFT))[0])
        statuses.append((await call(port, "POST", "/v1/blocks", WRITE, body))[0])
        return statuses

    results = await asyncio.gather(*(churn(n) for n in numbers))
    assert {s for r in results for s in r} <= {200, 201}, results
    assert gateway.store is not None
    stored = {b.key for b in await gateway.store.list_blocks(limit=1000)}
    assert stored == {BlockKey(n, LONG_CODE, "number") for n in numbers}
    assert all(key in gateway.index for key in stored)
