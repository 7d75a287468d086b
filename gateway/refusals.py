"""Evidence of MT refused for a block, without a store write per MT.

RefusalLog counts refusals per (mobile, reason, account) in memory: count, first and last
time (one dict update per refused MT). Every FLUSH_INTERVAL the counts since the last flush go
to the store as one batch of "mt_refused" events (Store.record_events, one transaction), one per
key: number = the mobile, rule = the reason, account, text "count=N first=T last=T" (unix
seconds), at = the last time. `gateway events export --number` and `gateway report` add them up.
At most MAX_KEYS keys wait between flushes; beyond it refusals are only counted in `dropped`
(and still in gateway_mt_rejected_total). A failed flush keeps the counts for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.errors import StoreError
from gateway.store.base import AuditEvent, Store

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 5.0
MAX_KEYS = 100_000
Key = tuple[int, str, str]  # (mobile, reason, account)


class RefusalLog:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._open: dict[Key, list[float]] = {}  # key -> [count, first, last]
        self.dropped = 0

    def note(self, mobile: int, reason: str, account: str, n: int = 1) -> None:
        key = (mobile, reason, account)
        entry = self._open.get(key)
        now = time.time()
        if entry is not None:
            entry[0] += n
            entry[2] = now
        elif len(self._open) < self.max_keys:
            self._open[key] = [float(n), now, now]
        else:
            self.dropped += n

    def drain(self) -> list[AuditEvent]:
        entries, self._open = self._open, {}
        return [refusal_event(key, entry) for key, entry in entries.items()]

    def restore(self, events: list[AuditEvent]) -> None:
        """A flush failed: its counts wait for the next one (merged with newer ones)."""
        for event in events:
            count, first, last = parse_refusal(event.text)
            key = (int(event.number.lstrip("+")), event.rule, event.account)
            entry = self._open.setdefault(key, [0.0, first, last])
            entry[0] += count
            entry[1] = min(entry[1], first)
            entry[2] = max(entry[2], last)

    async def flush(self, store: Store) -> int:
        events = self.drain()
        if not events:
            return 0
        try:
            await store.record_events(events)
        except StoreError as exc:
            self.restore(events)
            log.warning("mt_refusals_not_recorded", extra={"error": str(exc), "keys": len(events)})
            return 0
        return len(events)

    async def run(self, store: Store, interval: float = FLUSH_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush(store)
            except Exception:  # our bug: log it, keep flushing
                log.exception("mt_refusals_flush_failed")


def refusal_event(key: Key, entry: list[float]) -> AuditEvent:
    mobile, reason, account = key
    count, first, last = entry
    return AuditEvent(at=last, op="mt_refused", number=f"+{mobile}", account=account, source="gateway",
                      rule=reason, text=f"count={int(count)} first={first:.3f} last={last:.3f}")


def parse_refusal(text: str) -> tuple[int, float, float]:
    """(count, first, last) of an mt_refused event's text; zeros for anything else."""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    try:
        return int(fields.get("count", "0")), float(fields.get("first", "0")), float(fields.get("last", "0"))
    except ValueError:
        return 0, 0.0, 0.0
