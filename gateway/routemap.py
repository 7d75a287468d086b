"""The in-memory message_id -> account map for receipts, compact and purged in bounded slices.

Pure: values and `now` in, no clock reads, no tasks. Layout, per entry:
- one dict slot, message_id key (bytes) -> the account's small int (accounts are interned once, so
  the value is a shared object and costs nothing per entry; a dict of bytes and ints is not
  tracked by the garbage collector, so a full collection never walks it);
- the key's length and bytes once more in an expiry bucket: a deque of (ends, bytearray) in
  insertion order (bytearrays hold no references either). An entry lives until its bucket ends,
  at most `granularity` (a 1024th of the TTL) past its own TTL, never less.
Purging walks the oldest buckets only, at most `limit` keys a call, so no call stalls the loop.
A message_id remembered again moves to the newest bucket; the stale reference is skipped.
"""

from __future__ import annotations

import math
from collections import deque

BUCKET_BYTES = 65536  # a new bucket at least every this many bytes of keys
BUCKETS_PER_TTL = 1024  # and at least this many over one TTL
MAX_KEY = 255  # message_id is a C-Octet string of at most 65 (5.2.23)


class RouteMap:
    def __init__(self, ttl: float, max_routes: int) -> None:
        self.ttl = ttl
        self.max_routes = max_routes
        self.granularity = ttl / BUCKETS_PER_TTL
        self._slot: dict[bytes, int] = {}
        self._names: list[str] = [""]  # index 0 unused: an index is never falsy
        self._index: dict[str, int] = {}
        self._buckets: deque[tuple[float, bytearray]] = deque()
        self._head = 0  # bytes of the oldest bucket before this offset are done
        self._renewed: dict[bytes, int] = {}  # key -> stale bucket references still to skip
        self._tail = bytearray()  # the newest bucket
        self._tail_until = -math.inf  # the newest bucket takes entries added before this

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, key: bytes) -> bool:
        return key in self._slot

    def get(self, key: bytes) -> str | None:
        index = self._slot.get(key)
        return None if index is None else self._names[index]

    def add(self, key: bytes, account: str, now: float) -> None:
        if len(key) > MAX_KEY:  # never from the wire: message_id is at most 65 octets
            return
        slot = self._slot
        size = len(slot)
        slot[key] = self._index.get(account) or self._intern(account)
        if len(slot) == size:  # remembered again: its older bucket reference is stale
            self._renewed[key] = self._renewed.get(key, 0) + 1
        tail = self._tail
        if now >= self._tail_until or len(tail) >= BUCKET_BYTES:
            tail = self._new_bucket(now)
        tail.append(len(key))
        tail += key
        if size >= self.max_routes:  # full: the oldest go first
            while len(slot) > self.max_routes:
                self._purge_bucket(math.inf, 1)

    def _intern(self, account: str) -> int:
        index = self._index[account] = len(self._names)
        self._names.append(account)
        return index

    def _new_bucket(self, now: float) -> bytearray:
        """A bucket for entries added from now until now + granularity (or BUCKET_BYTES of them)."""
        self._tail = bytearray()
        self._tail_until = now + self.granularity
        self._buckets.append((now + self.ttl + self.granularity, self._tail))
        return self._tail

    def expired(self, now: float) -> bool:
        """Some entries are due for purge."""
        return bool(self._buckets) and self._buckets[0][0] <= now

    def purge(self, now: float, limit: int) -> int:
        """Drop up to `limit` expired entries (bucket references); returns how many were looked at."""
        done = 0
        while done < limit and self.expired(now):
            done += self._purge_bucket(now, limit - done)
        return done

    def _purge_bucket(self, now: float, limit: int) -> int:
        ends, data = self._buckets[0]
        if ends > now:
            return 0
        pos, end, done = self._head, len(data), 0
        slot, renewed = self._slot, self._renewed
        while pos < end and done < limit:
            n = data[pos] + 1
            key = bytes(data[pos + 1 : pos + n])
            pos += n
            done += 1
            if renewed and key in renewed:
                self._skip(key)
            else:
                slot.pop(key, None)
        if pos >= end:
            self._buckets.popleft()
            self._head = 0
            if data is self._tail:  # the next entry starts a new bucket
                self._tail_until = -math.inf
        else:
            self._head = pos
        return done

    def _skip(self, key: bytes) -> None:
        stale = self._renewed[key]
        if stale == 1:
            del self._renewed[key]
        else:
            self._renewed[key] = stale - 1
