"""Traffic shaping: the account and carrier token buckets, the carrier queue, and cluster shares.

- Account `max_tps`: one bucket per account (limits.bucket), shared by its binds through
  `session.bucket`; every MT draws its segments (smpp.segments) before any other check, so
  refusals are not free. Empty: 0x58, nothing forwarded, gateway_mt_rejected_total{reason="throttled"}.
- Carrier `max_tps` (Pacer): one bucket over all carrier binds. A request beyond the rate waits
  in one FIFO (so each session's order is kept), holding a slot of its application's window;
  the gateway's own auto-replies wait in a queue of their own that always goes first. One that
  waited carrier.max_queue_delay gets 0x58 and is never forwarded.
- Shares (issue 10 item 4): `Shaper.set_share(fraction)` scales every configured rate and burst.
- Reload (gateway/reload.py): `Shaper.reconfigure` takes the new limits; unchanged buckets stay as they are.

Hot path: nothing when no limit is configured (one attribute check each); otherwise one
bucket.take() with the `now` the session already read. Timers run only while requests wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.limits.bucket import TokenBucket
from gateway.smpp import pdu as P
from gateway.smpp import status as st

if TYPE_CHECKING:
    from gateway.config import Account, Carrier
    from gateway.metrics import Metrics
    from gateway.proxy import EsmeSession, Proxy

log = logging.getLogger(__name__)
MIN_RATE = 1e-6  # a share never drops a limit to zero


@dataclass(slots=True)
class Waiting:
    """An application request waiting for the carrier rate (holds a window slot)."""

    esme: EsmeSession
    pdu: P.Pdu
    at: float
    extra: object
    receipt: bool
    raw: bytes | None


@dataclass(slots=True)
class OwnWaiting:
    pdu: P.Pdu
    at: float
    on_response: Callable[[P.Pdu | None], None]


class Pacer:
    """The carrier rate: a bucket and the queues of what waits for it."""

    def __init__(self, proxy: Proxy, rate: float, burst: float, max_queue_delay: float) -> None:
        self.proxy = proxy
        self.bucket = TokenBucket(rate, burst, 0.0)
        self.max_queue_delay = max_queue_delay
        self.queue: deque[Waiting] = deque()
        self.own: deque[OwnWaiting] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # when _timer fires (uvloop's timer handles have no when())
        self._expired = proxy.metrics.mt_rejected.labels("queue_delay")

    def wait(self, item: Waiting) -> None:
        item.esme.outstanding += 1  # waiting counts against the application's window
        self.queue.append(item)
        self.drain(item.at)

    def wait_own(self, item: OwnWaiting) -> None:
        self.own.append(item)
        self.drain(item.at)

    def drain(self, now: float) -> None:
        """Send what the rate allows, own requests first; answer the expired; re-arm the timer."""
        bucket = self.bucket
        self._expire(now)
        while self.own or self.queue:
            if not bucket.take(now):
                break
            if self.own:
                own = self.own.popleft()
                if not self.proxy.send_own_now(own.pdu, now, own.on_response):
                    own.on_response(None)
                continue
            item = self.queue.popleft()
            item.esme.outstanding -= 1
            if item.esme.closed:  # no one to answer: not forwarded
                bucket.refund()
                continue
            self.proxy.send_released(item, now)
        self._arm(now)

    def _expire(self, now: float) -> None:
        queue = self.queue
        limit = now - self.max_queue_delay
        while queue and queue[0].at <= limit:
            item = queue.popleft()
            item.esme.outstanding -= 1
            self._expired.inc()
            item.esme.send(P.response_for(item.pdu, st.ESME_RTHROTTLED))

    def _arm(self, now: float) -> None:
        """One timer at the next token or the next expiry, whichever is first (kept when due by then)."""
        timer = self._timer
        if not (self.own or self.queue):
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        at = now + self.bucket.delay(now)
        if self.queue:
            at = min(at, self.queue[0].at + self.max_queue_delay)
        if timer is not None:
            if self._due <= at:
                return
            timer.cancel()
        self._due = at
        self._timer = asyncio.get_running_loop().call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.drain(asyncio.get_running_loop().time())

    def release(self, now: float) -> None:
        """The carrier limit was removed (reload): everything that waits goes on at once, in order."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.own:
            own = self.own.popleft()
            if not self.proxy.send_own_now(own.pdu, now, own.on_response):
                own.on_response(None)
        while self.queue:
            item = self.queue.popleft()
            item.esme.outstanding -= 1
            if not item.esme.closed:
                self.proxy.send_released(item, now)

    def close(self) -> None:
        """Stopping: answer everything that waits (temporary status), cancel the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.queue:
            item = self.queue.popleft()
            item.esme.outstanding -= 1
            item.esme.send(P.response_for(item.pdu, st.ESME_RMSGQFUL))
        while self.own:
            self.own.popleft().on_response(None)


class Shaper:
    """Owns every bucket; `set_share` is the one knob cluster shares turn."""

    def __init__(self, proxy: Proxy, metrics: Metrics) -> None:
        settings = proxy.settings
        self.proxy = proxy
        self.share = 1.0
        self.metrics = metrics
        self.accounts: dict[str, tuple[float, float, TokenBucket]] = {}
        for account in settings.accounts:
            if account.max_tps is not None:
                burst = account.effective_burst
                self.accounts[account.system_id] = (account.max_tps, burst, TokenBucket(account.max_tps, burst, 0.0))
        carrier = settings.carrier
        self.pacer: Pacer | None = None
        self.carrier_limit: tuple[float, float] | None = None
        if carrier.max_tps is not None:
            self.carrier_limit = (carrier.max_tps, carrier.effective_burst)
            self.pacer = Pacer(proxy, carrier.max_tps, carrier.effective_burst, carrier.max_queue_delay)
        self.throttled = metrics.mt_rejected.labels("throttled")
        self._publish()

    def bucket_for(self, system_id: str) -> TokenBucket | None:
        entry = self.accounts.get(system_id)
        return entry[2] if entry is not None else None

    def set_share(self, fraction: float, now: float) -> None:
        """This gateway's share of every configured limit (1.0: the whole limit; clamped to (0, 1]).
        Rates and bursts are scaled (a burst never below 1); tokens earned so far are kept."""
        fraction = min(1.0, max(MIN_RATE, fraction))
        if fraction == self.share:
            return
        self.share = fraction
        for rate, burst, bucket in self.accounts.values():
            bucket.set_rate(rate * fraction, max(1.0, burst * fraction), now)
        if self.pacer is not None and self.carrier_limit is not None:
            rate, burst = self.carrier_limit
            self.pacer.bucket.set_rate(rate * fraction, max(1.0, burst * fraction), now)
            self.pacer.drain(now)
        self._publish()

    def reconfigure(self, accounts: list[Account], carrier: Carrier, now: float) -> None:
        """A reload's limits, at this gateway's share. A bucket whose limit is unchanged is kept as it
        is; a changed one keeps the tokens it holds (capped at the new burst); the carrier queue drains
        at the new rate, or all at once when the carrier limit is gone."""
        share = self.share
        fresh: dict[str, tuple[float, float, TokenBucket]] = {}
        for account in accounts:
            if account.max_tps is None:
                continue
            rate, burst = account.max_tps, account.effective_burst
            old = self.accounts.get(account.system_id)
            if old is None:
                bucket = TokenBucket(rate * share, max(1.0, burst * share), 0.0)
            else:
                bucket = old[2]
                if old[:2] != (rate, burst):
                    bucket.set_rate(rate * share, max(1.0, burst * share), now)
            fresh[account.system_id] = (rate, burst, bucket)
        for gone in set(self.accounts) - set(fresh):
            self._unpublish(f"account:{gone}")
        self.accounts = fresh
        self._reconfigure_carrier(carrier, now)
        self._publish()

    def _reconfigure_carrier(self, carrier: Carrier, now: float) -> None:
        pacer, share = self.pacer, self.share
        if carrier.max_tps is None:
            self.carrier_limit = None
            if pacer is not None:
                self.pacer = self.proxy.pacer = None  # first: what is released must not wait again
                pacer.release(now)
                self._unpublish("carrier")
            return
        limit = (carrier.max_tps, carrier.effective_burst)
        if pacer is None:
            self.pacer = self.proxy.pacer = Pacer(self.proxy, limit[0] * share, max(1.0, limit[1] * share),
                                                  carrier.max_queue_delay)
        else:
            if limit != self.carrier_limit:
                pacer.bucket.set_rate(limit[0] * share, max(1.0, limit[1] * share), now)
            pacer.max_queue_delay = carrier.max_queue_delay
            pacer.drain(now)
        self.carrier_limit = limit

    def _unpublish(self, label: str) -> None:
        try:
            self.metrics.limit_rate.remove(label)
        except KeyError:
            pass

    def _publish(self) -> None:
        gauge = self.metrics.limit_rate
        for system_id, (_, _, bucket) in self.accounts.items():
            gauge.labels(f"account:{system_id}").set(bucket.rate)
        if self.pacer is not None:
            gauge.labels("carrier").set(self.pacer.bucket.rate)
