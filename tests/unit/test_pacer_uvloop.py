"""The carrier pacer on uvloop (what `gateway run` uses): uvloop's call_at for a time already past
returns a plain Handle, which has no when(). The `now` a session passes is read when its data
arrived, so a burst handled for a while arms the pacer's timer in the past."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import uvloop

from gateway.metrics import Metrics
from gateway.shaping import Pacer, Waiting
from gateway.smpp import pdu as P


class Released:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.sent: list[int] = []

    def send_released(self, item: Waiting, now: float) -> None:
        self.sent.append(item.pdu.sequence_number)


def request(esme: Any, n: int, now: float) -> Waiting:
    raw = P.encode(P.SUBMIT_SM, 0, n, b"")
    return Waiting(esme, P.Pdu(P.SUBMIT_SM, 0, n, raw), now, None, False, None)


async def queue_three() -> list[int]:
    loop = asyncio.get_running_loop()
    proxy = Released()
    pacer = Pacer(proxy, 200.0, 1.0, 5.0)  # type: ignore[arg-type]
    esme = SimpleNamespace(outstanding=0, closed=False)
    now = loop.time() - 0.5  # read when the data arrived, a while ago
    for n in (1, 2, 3):  # the first takes the burst; the second arms the timer; the third finds it armed
        pacer.wait(request(esme, n, now))
    async with asyncio.timeout(5):
        while len(proxy.sent) < 3:
            await asyncio.sleep(0.005)
    return proxy.sent


def test_pacer_queues_and_releases_on_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(queue_three()) == [1, 2, 3]
