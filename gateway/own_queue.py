"""The gateway's own requests (STOP/HELP auto-replies) waiting for carrier window room.

With a carrier bound but every window full, Proxy.send_own puts a reply here instead of dropping
it: first in, first out, at most MAX_WAITING, each until its deadline (carrier.response_timeout
after it was built). As soon as a window slot frees (Proxy._drain_own: a carrier answered or
failed a request, or a carrier bound) they go out before any application request can take the
slot. A reply past its deadline is answered None, like a request the carrier never answered.
Pure: values and `now` in; the proxy owns the clock and the sockets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.smpp import pdu as P

MAX_WAITING = 10_000
OnResponse = Callable[[P.Pdu | None], None]
Link = TypeVar("Link")


@dataclass(slots=True)
class OwnRequest:
    pdu: P.Pdu
    on_response: OnResponse
    deadline: float


class OwnQueue(Generic[Link]):
    def __init__(self, timeout: float, max_waiting: int = MAX_WAITING) -> None:
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.waiting: deque[OwnRequest] = deque()

    def __len__(self) -> int:
        return len(self.waiting)

    def put(self, pdu: P.Pdu, now: float, on_response: OnResponse) -> bool:
        """Queue it; False when the queue is full (the caller counts it as not sent)."""
        if len(self.waiting) >= self.max_waiting:
            return False
        self.waiting.append(OwnRequest(pdu, on_response, now + self.timeout))
        return True

    def drain(self, pick: Callable[[], Link | int], send: Callable[[Link, OwnRequest], None], now: float) -> None:
        """Expired ones answered None; then the oldest to carriers with room (pick) until none has."""
        waiting = self.waiting
        while waiting and waiting[0].deadline <= now:
            waiting.popleft().on_response(None)
        while waiting:
            link = pick()
            if isinstance(link, int):
                return
            send(link, waiting.popleft())
