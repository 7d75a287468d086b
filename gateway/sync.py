"""Keeps this gateway's in-memory block index in step with the store's event log.

Every change anywhere (a keyword on another gateway, the operator CLI) is an event with
an increasing id. PostgreSQL NOTIFY wakes us at once; a poll every `interval` seconds
catches up by id after any gap (reconnect, SQLite, a lost notification), so nothing is
missed and replaying our own events is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import StoreError
from gateway.store.base import AuditEvent, BlockKey, Store, event_key
from gateway.store.index import BlockIndex

log = logging.getLogger(__name__)
RELOAD_OPS = frozenset({"admin_import"})


class IndexSync:
    def __init__(self, store: Store, index: BlockIndex, last_event_id: int,
                 on_swap: Callable[[BlockIndex], None], on_change: Callable[[], None],
                 interval: float = 0.5) -> None:
        self.store = store
        self.index = index
        self.last_event_id = last_event_id
        self.on_swap = on_swap
        self.on_change = on_change
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_listen: Callable[[], Awaitable[None]] | None = None
        self.healthy = True
        # keys this gateway changed itself -> the event id of that change: older events never undo it
        self._local: dict[tuple[str, str, str], int] = {}
        # one catch-up at a time (the poll, the admin API's): one that ran while another rebuilt the
        # index after an import applied its events to the index about to be replaced, and lost them
        self._catching_up = asyncio.Lock()

    def note_local(self, key: BlockKey, event_id: int) -> None:
        k = (key.number, key.counterpart, key.scope)
        self._local[k] = max(self._local.get(k, 0), event_id)

    def _superseded(self, event: AuditEvent) -> bool:
        key = event_key(event)
        # strictly older only: our own event replays harmlessly (and repairs an index swapped by a reload)
        return key is not None and self._local.get((key.number, key.counterpart, key.scope), 0) > event.id

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="index-sync")

    async def _listen(self) -> None:
        listen = getattr(self.store, "listen", None)
        if listen is None or self._stop_listen is not None:
            return
        try:
            self._stop_listen = await listen(self._notified, self._lost)
        except StoreError as exc:
            log.warning("store_listen_failed", extra={"error": str(exc)})

    def _notified(self, event_id: int) -> None:
        if event_id > self.last_event_id:
            self._wake.set()

    def _lost(self) -> None:
        log.warning("store_listen_lost")
        self._stop_listen = None
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.catch_up()
                await self._listen()
                self.healthy = True
            except StoreError as exc:
                if self.healthy:
                    log.warning("index_sync_failed", extra={"error": str(exc)})
                self.healthy = False

    async def catch_up(self) -> int:
        """Apply every event after the last one seen; returns how many were read."""
        async with self._catching_up:
            return await self._catch_up()

    async def _catch_up(self) -> int:
        seen = 0
        reload = False
        while True:
            events = await self.store.events_after(self.last_event_id, limit=1000)
            if not events:
                break
            changed = False
            for event in events:
                if event.id <= self.last_event_id:
                    continue  # a catch-up that read after this one applied it already: never replay it late
                if event.op in RELOAD_OPS:
                    reload = True  # one reload after the batch, however many imports it holds
                elif not self._superseded(event):
                    changed = self.index.apply_event(event) or changed
                self.last_event_id = event.id
            seen += len(events)
            if changed:
                self.on_change()
        if reload:
            await self.reload()
        if self._local:  # the log has caught up past these: nothing older can arrive any more
            self._local = {k: v for k, v in self._local.items() if v > self.last_event_id}
        return seen

    async def reload(self) -> None:
        """Rebuild the index from the store (after a bulk import) and swap it in."""
        fresh = BlockIndex()
        await fresh.load_store(self.store)
        self.index = fresh
        self.on_swap(fresh)
        log.info("index_reloaded", extra={"blocks": len(fresh)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._stop_listen is not None:
            try:
                await self._stop_listen()
            except StoreError:
                pass
            self._stop_listen = None
