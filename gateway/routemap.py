"""The in-memory message_id -> account map for receipts, compact and purged in bounded slices.

Pure: values and `now` in, no clock reads, no tasks. Layout, per entry:
- one dict slot, message_id key (bytes) -> the account's small int (accounts are interned once, so
  the value is a shared object and costs nothing per entry);
- one pointer in an expiry bucket: a deque of (ends, [keys]) in insertion order. An entry lives
  until its bucket ends, at most `granularity` past its own TTL, never less.
Purging walks the oldest buckets only, at most `limit` keys a call, so no call stalls the loop.
A message_id remembered again moves to the newest bucket; the stale reference is skipped.
"""

from __future__ import annotations

from collections import deque

BUCKET_KEYS = 4096  # a new bucket at least every this many entries
BUCKETS_PER_TTL = 1024  # and at least this many over one TTL


class RouteMap:
    def __init__(self, ttl: float, max_routes: int) -> None:
        self.ttl = ttl
        self.max_routes = max_routes
        self.granularity = ttl / BUCKETS_PER_TTL
        self._slot: dict[bytes, int] = {}
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._buckets: deque[tuple[float, list[bytes]]] = deque()
        self._head = 0  # keys of the oldest bucket before this index are done
        self._renewed: dict[bytes, int] = {}  # key -> stale bucket references still to skip

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, key: bytes) -> bool:
        return key in self._slot

    def get(self, key: bytes) -> str | None:
        index = self._slot.get(key)
        return None if index is None else self._names[index]

    def add(self, key: bytes, account: str, now: float) -> None:
        index = self._index.get(account)
        if index is None:
            index = self._index[account] = len(self._names)
            self._names.append(account)
        slot = self._slot
        if key in slot:
            self._renewed[key] = self._renewed.get(key, 0) + 1
        slot[key] = index
        until = now + self.ttl
        buckets = self._buckets
        if buckets and until < buckets[-1][0] and len(buckets[-1][1]) < BUCKET_KEYS:
            buckets[-1][1].append(key)
        else:
            buckets.append((until + self.granularity, [key]))
        while len(slot) > self.max_routes:  # full: the oldest go first
            self._drop_oldest()

    def expired(self, now: float) -> bool:
        """Some entries are due for purge."""
        return bool(self._buckets) and self._buckets[0][0] <= now

    def purge(self, now: float, limit: int) -> int:
        """Drop up to `limit` expired entries (bucket references); returns how many were looked at."""
        done = 0
        buckets = self._buckets
        while done < limit and buckets and buckets[0][0] <= now:
            keys = buckets[0][1]
            stop = min(len(keys), self._head + limit - done)
            for i in range(self._head, stop):
                self._drop(keys[i])
            done += stop - self._head
            self._advance(stop)
        return done

    def _drop_oldest(self) -> None:
        keys = self._buckets[0][1]
        self._drop(keys[self._head])
        self._advance(self._head + 1)

    def _advance(self, head: int) -> None:
        if head >= len(self._buckets[0][1]):
            self._buckets.popleft()
            self._head = 0
        else:
            self._head = head

    def _drop(self, key: bytes) -> None:
        stale = self._renewed.get(key)
        if stale:
            if stale == 1:
                del self._renewed[key]
            else:
                self._renewed[key] = stale - 1
            return
        self._slot.pop(key, None)
