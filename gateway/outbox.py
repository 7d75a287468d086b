"""Durable outbox: MO and receipts no application can take now are stored, acked to the
carrier, and delivered in order per account once a receiver binds.

Several gateways share one outbox: a row is claimed with a lease (SKIP LOCKED on
PostgreSQL) by one gateway at a time and deleted only after the application's ESME_ROK,
so each row reaches the application once. The poll also refreshes the backlog gauges
(rows and oldest age per account, read from the store: every gateway shows the whole outbox).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.errors import FramingError, StoreError
from gateway.outbox_events import expiry_event
from gateway.proxy import TEMPORARY
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, OutboxItem, Store

if TYPE_CHECKING:
    from gateway.proxy import AccountState, OnStatus, Proxy

log = logging.getLogger(__name__)
LEASE = 60.0  # renewed before each delivery, so it only has to cover one
BATCH = 100
MAX_BACKOFF = 300.0
SUMMARY_INTERVAL = 10.0  # backlog gauges: one GROUP BY on the outbox this often, at most


class Outbox:
    def __init__(self, proxy: Proxy, store: Store, ttl: float, retry_interval: float = 2.0,
                 poll_interval: float = 2.0) -> None:
        self.proxy = proxy
        self.store = store
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.poll_interval = poll_interval
        self.owner = f"gw-{uuid.uuid4().hex[:12]}"
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.backlog: set[str] = set()  # accounts with rows queued here: live MOs queue behind them
        self.summary_interval = SUMMARY_INTERVAL
        self._summary_at = 0.0  # time.time() of the next gauge refresh
        self.stranded: set[int] = set()  # rows we claimed when the store failed: released once it is back

    # --- in: keep what cannot be delivered now ----------------------------------------
    def keep(self, account: str, raw: bytes, on_status: OnStatus) -> None:
        """Store raw for account; answer the carrier ESME_ROK only once it is durable."""
        task = asyncio.create_task(self._keep(account, raw, on_status))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _keep(self, account: str, raw: bytes, on_status: OnStatus) -> None:
        now = time.time()
        started = time.perf_counter()
        try:
            await self.store.outbox_put(account, raw, now, now + self.ttl)
            self.proxy.metrics.store_latency.observe(time.perf_counter() - started)
        except StoreError as exc:
            self.proxy.metrics.store_errors.inc()
            log.error("outbox_put_failed", extra={"system_id": account, "error": str(exc)})
            on_status(self.proxy.unbound_status, None)
            return
        self.proxy.metrics.outbox_stored.inc()
        self.backlog.add(account)
        on_status(st.ESME_ROK, None)
        self.wake(account)

    # --- out: deliver in order when a receiver is bound ---------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    def wake(self, account: str | None = None) -> None:
        if account is not None and account in self.proxy.accounts:
            self._drain(account)
        else:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._release_stranded()
                await self._expire()
                if time.time() >= self._summary_at:
                    await self._refresh_gauges()
                for account in await self.store.outbox_accounts(time.time()):
                    self._drain(account)
            except StoreError as exc:
                log.warning("outbox_poll_failed", extra={"error": str(exc)})
            except Exception:  # our bug: log it and keep polling
                log.exception("outbox_poll_crashed")

    def _drain(self, account: str) -> None:
        state = self.proxy.accounts.get(account)
        running = self._draining.get(account)
        if state is None or (running is not None and not running.done()) or state.receiver() is None:
            return
        self._draining[account] = asyncio.create_task(self._deliver_all(state), name=f"outbox-{account}")

    async def _release_stranded(self) -> None:
        """Rows a failed drain left under our lease would hold the account's queue for LEASE
        seconds: hand them back (a row delivered before the failure is delivered again)."""
        for item_id in sorted(self.stranded):
            await self.store.outbox_renew(item_id, self.owner, 0.0)
            self.stranded.discard(item_id)

    async def _deliver_all(self, state: AccountState) -> None:
        account = state.config.system_id
        held: list[int] = []
        try:
            while state.receiver() is not None:
                items = await self.store.outbox_claim(account, self.owner, time.time(), LEASE, BATCH)
                held = [item.id for item in items]
                if not items:  # nothing due now; the backlog ends only when nothing is queued at all
                    if not (await self.store.outbox_counts()).get(account):
                        self.backlog.discard(account)
                    return
                for n, item in enumerate(items):
                    retry_at = await self._deliver_one(state, item)
                    held.remove(item.id)
                    if retry_at is not None:  # the rest wait behind it (claims keep per-account order)
                        for later in items[n + 1 :]:
                            await self.store.outbox_renew(later.id, self.owner, 0.0)  # only rows we hold
                        return
        except StoreError as exc:
            self.stranded.update(held)
            log.warning("outbox_drain_failed", extra={"system_id": account, "error": str(exc)})
        except Exception:  # our bug: log it, the next poll tries again
            log.exception("outbox_drain_crashed", extra={"system_id": account})

    async def _deliver_one(self, state: AccountState, item: OutboxItem) -> float | None:
        """None when the row is finished (delivered or refused for good), else when to retry."""
        session = state.receiver()
        if session is None:
            await self.store.outbox_retry(item.id, time.time())
            return time.time()
        # the lease must outlive this delivery: renew it, and skip a row another gateway now holds
        if not await self.store.outbox_renew(item.id, self.owner, time.time() + LEASE):
            return time.time()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[int] = loop.create_future()
        try:
            pdu = P.Framer(max_pdu=1 << 20).feed(item.raw)[0]
        except (FramingError, IndexError):  # a row we cannot frame must not block the queue
            log.error("outbox_row_unreadable", extra={"system_id": item.account, "id": item.id})
            await self.store.outbox_done([item.id])
            return None
        session.deliver(pdu, item.raw, _resolver(answer))
        status = await answer
        if session.closed and status == self.proxy.unbound_status:
            # the session ended before it answered: no refusal, so no backoff; the next bind takes it
            await self.store.outbox_renew(item.id, self.owner, 0.0)
            return time.time()
        if status == st.ESME_ROK or status not in TEMPORARY:
            await self.store.outbox_done([item.id])
            self.proxy.metrics.outbox_delivered.labels("ok" if status == 0 else "refused").inc()
            return None
        retry_at = time.time() + min(MAX_BACKOFF, self.retry_interval * 2.0 ** min(item.attempts, 16))
        await self.store.outbox_retry(item.id, retry_at)
        return retry_at

    async def _refresh_gauges(self) -> None:
        """gateway_outbox_backlog / _oldest_age_seconds: every configured account (0 when empty),
        and any other account that still has rows."""
        summary = await self.store.outbox_summary()
        now = time.time()
        self._summary_at = now + self.summary_interval
        metrics = self.proxy.metrics
        metrics.outbox_backlog.clear()
        metrics.outbox_oldest_age.clear()
        for account in self.proxy.accounts:
            summary.setdefault(account, (0, now))
        for account, (rows, oldest) in summary.items():
            metrics.outbox_backlog.labels(account).set(rows)
            metrics.outbox_oldest_age.labels(account).set(max(0.0, now - oldest) if rows else 0.0)

    async def _expire(self) -> None:
        """Expired rows go, each with its audit event in the same transaction."""
        alphabet = self.proxy.settings.optout.smsc_default_alphabet
        region = self.proxy.region

        def event_for(item: OutboxItem) -> AuditEvent:
            return expiry_event(item, region, alphabet)

        for item in await self.store.outbox_expire(time.time(), event_for=event_for):
            log.warning("outbox_expired", extra={"system_id": item.account, "id": item.id})
            self.proxy.metrics.outbox_delivered.labels("expired").inc()

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._draining.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        try:
            await self.store.outbox_release(self.owner)
        except StoreError:
            pass


def _resolver(answer: asyncio.Future[int]) -> Callable[[int, P.Pdu | None], None]:
    def done(status: int, resp: P.Pdu | None) -> None:
        if not answer.done():
            answer.set_result(status)

    return done
