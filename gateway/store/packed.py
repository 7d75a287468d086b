"""PackedKeys: a set of 61-bit keys with a 2-bit code each, about 9.2 bytes an entry (issue 13).

Layout: entries ``key << 2 | code`` in sorted numpy int64 segments of at most SEGMENT entries,
an rbloom Bloom filter over the keys in front (a miss, the common case, costs one probe and
never calls numpy), and a small ``delta`` dict of recent changes (code, or REMOVED) that lookups
consult before the segments. When the delta holds MERGE_AT keys it is frozen and merged into the
segments: in a worker thread when an event loop runs (lookups keep reading the frozen delta and
the old segments, then the new segments are swapped in on the loop thread), inline otherwise.
A merge rewrites only the segments the delta touches, so it never holds a second copy of the set.

The Bloom filter only ever gains keys (removes leave false positives behind, which the lookup
resolves); it is rebuilt with twice the capacity when the set outgrows it.
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from rbloom import Bloom

log = logging.getLogger(__name__)

REMOVED = -1
SEGMENT = 1 << 20  # entries a segment holds after a load (8 MB); merges split at twice that
MERGE_AT = 1 << 16  # delta keys that trigger a merge
FALSE_POSITIVES = 0.01
_MIN_CAPACITY = 1 << 16
_CHUNK = 1 << 16  # entries per temporary (Bloom filter fill, checks): 64k Python ints at most
_I64 = np.int64  # signed: a Python int probe converts without casting the segment (uint64 would)
_SEARCH = np.searchsorted
_EMPTY = np.zeros(0, dtype=np.int64)


def _bloom_for(capacity: int) -> Bloom:
    return Bloom(max(capacity, _MIN_CAPACITY), FALSE_POSITIVES)


class PackedKeys:
    """key (int, 0 <= key < 2**61) -> code (0-3); see the module docstring."""

    __slots__ = ("_capacity", "_merging", "bloom", "delta", "frozen", "merge_future", "segments")

    def __init__(self) -> None:
        self.segments: tuple[list[np.ndarray], list[int]] = ([], [])  # arrays, their first entries
        self.bloom = _bloom_for(0)
        self._capacity = _MIN_CAPACITY
        self.delta: dict[int, int] = {}
        self.frozen: dict[int, int] | None = None
        self._merging = False
        self.merge_future: asyncio.Future[Any] | None = None  # the worker's merge, while it runs

    # -- lookups ---------------------------------------------------------

    def code(self, key: int) -> int | None:
        """The key's code, None when absent (call after a positive `key in bloom`)."""
        found = self.delta.get(key)
        if found is None and self.frozen is not None:
            found = self.frozen.get(key)
        if found is not None:
            return None if found == REMOVED else found
        return self._stored(key)

    def _stored(self, key: int) -> int | None:
        arrays, firsts = self.segments
        entry = key << 2
        i = bisect.bisect_right(firsts, entry | 3) - 1
        if i < 0:
            return None
        seg = arrays[i]
        j = seg.searchsorted(entry)
        if j < seg.size:
            value: int = seg.item(j)
            if value >> 2 == key:
                return value & 3
        return None

    def get(self, key: int) -> int | None:
        return self.code(key) if key in self.bloom else None

    # -- changes ---------------------------------------------------------

    def put(self, key: int, code: int) -> None:
        self.bloom.add(key)
        self.delta[key] = code
        self._maybe_merge()

    def discard(self, key: int) -> None:
        self.delta[key] = REMOVED
        self._maybe_merge()

    def _maybe_merge(self) -> None:
        if len(self.delta) < MERGE_AT or self._merging:
            return
        self._merging = True
        self.frozen, self.delta = self.delta, {}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._finish(self._merge(self.frozen))
            return
        future = self.merge_future = loop.run_in_executor(None, self._merge, self.frozen)
        future.add_done_callback(lambda f: self._finish(f.result()) if f.exception() is None else self._failed(f))

    def _failed(self, future: asyncio.Future[Any]) -> None:
        log.error("index_merge_failed", exc_info=future.exception())
        self.delta, self.frozen = {**(self.frozen or {}), **self.delta}, None  # served as before
        self._merging, self.merge_future = False, None

    def _finish(self, bloom: tuple[Bloom, int] | None) -> None:
        """Loop thread: the merged segments are in; drop the frozen delta, swap a rebuilt filter."""
        if bloom is not None:
            bloom[0].update(k for k, c in self.delta.items() if c != REMOVED)  # changes since the freeze
            self.bloom, self._capacity = bloom
        self.frozen = self.merge_future = None
        self._merging = False

    def _merge(self, frozen: dict[int, int]) -> tuple[Bloom, int] | None:
        """Worker thread: rewrite the segments frozen touches, one at a time.

        Each rewritten segment is swapped in at once (one attribute store): lookups read the
        frozen delta first, so old and new segments answer alike, and only one extra segment is
        alive at a time. Returns a rebuilt Bloom filter (and its capacity) when the set outgrew it.
        """
        by_segment: dict[int, list[tuple[int, int]]] = {}
        firsts = self.segments[1]
        for key, code in sorted(frozen.items()):
            i = max(bisect.bisect_right(firsts, key << 2 | 3) - 1, 0)
            by_segment.setdefault(i, []).append((key, code))
        for i in sorted(by_segment, reverse=True):  # from the end: splits keep lower indexes valid
            arrays, firsts = self.segments
            merged = _apply(arrays[i] if arrays else _EMPTY, by_segment[i])
            parts = [merged] if merged.size <= 2 * SEGMENT else [
                merged[s:s + SEGMENT].copy() for s in range(0, merged.size, SEGMENT)]
            parts = [p for p in parts if p.size]
            if arrays:
                self.segments = (arrays[:i] + parts + arrays[i + 1:],
                                 firsts[:i] + [int(p[0]) for p in parts] + firsts[i + 1:])
            else:
                self.segments = (parts, [int(p[0]) for p in parts])
        count = len(self)
        if count <= self._capacity:
            return None
        capacity = max(count * 2, _MIN_CAPACITY)
        bloom = _bloom_for(capacity)
        for a in self.segments[0]:
            for chunk in _chunks(a):
                bloom.update((chunk >> _I64(2)).tolist())
        return bloom, capacity

    # -- bulk ------------------------------------------------------------

    def build(self, entries: np.ndarray) -> None:
        """Replace the contents with entries (key << 2 | code, any order, keys may repeat: the
        highest code wins). Takes over entries' memory: sorted in place, cut into segments from
        the end, so the peak stays near one copy."""
        entries.sort()
        entries = _dedupe(entries)
        capacity = max(int(entries.size * 1.25), _MIN_CAPACITY)
        bloom = _bloom_for(capacity)
        for chunk in _chunks(entries):
            bloom.update((chunk >> _I64(2)).tolist())
        arrays: list[np.ndarray] = []
        end = entries.size
        while end > 0:
            start = max(end - SEGMENT, 0)
            arrays.append(entries[start:end].copy())
            end = start
            entries.resize(end, refcheck=False)  # frees the tail just copied
        arrays.reverse()
        self.segments = (arrays, [int(a[0]) for a in arrays])
        self.bloom, self._capacity = bloom, capacity
        self.delta, self.frozen = {}, None

    def counts(self) -> list[int]:
        """Entries per code (0-3), delta and frozen included."""
        totals = [0, 0, 0, 0]
        for a in self.segments[0]:
            for chunk in _chunks(a):
                for code, n in enumerate(np.bincount((chunk & _I64(3)).astype(np.intp), minlength=4)):
                    totals[code] += int(n)
        return totals

    def __len__(self) -> int:
        return sum(a.size for a in self.segments[0])  # entries merged (delta not counted)

    def memory_bytes(self) -> int:
        arrays = self.segments[0]
        pending = len(self.delta) + len(self.frozen or {})
        return (sum(a.nbytes + 112 for a in arrays) + self.bloom.size_in_bits // 8
                + pending * 100 + len(arrays) * 16)


def trim() -> None:
    """Hand the allocator's free memory back to the system after a bulk load (glibc only): the
    pages a load's temporaries used would otherwise stay in the process's RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _chunks(a: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, a.size, _CHUNK):
        yield a[start:start + _CHUNK]


def _dedupe(entries: np.ndarray) -> np.ndarray:
    """Sorted entries with one per key (the last, highest code), compacted in place chunk by chunk:
    a write never passes what is still to be read, and no second copy of the set is made."""
    n, write = entries.size, 0
    for start in range(0, n, _CHUNK):
        end = min(start + _CHUNK, n)
        chunk = entries[start:end]
        following = entries[start + 1:min(end + 1, n)] >> 2
        keep = np.ones(chunk.size, dtype=bool)
        keep[:following.size] = (chunk[:following.size] >> 2) != following
        if write == start and keep.all():
            write = end
            continue
        kept = chunk[keep]
        entries[write:write + kept.size] = kept
        write += kept.size
    if write < n:
        entries.resize(write, refcheck=False)
    return entries


def _apply(seg: np.ndarray, changes: list[tuple[int, int]]) -> np.ndarray:
    """A new sorted segment: seg with changes (key, code or REMOVED; sorted by key) applied."""
    keys = np.fromiter((k << 2 for k, _ in changes), dtype=np.int64, count=len(changes))
    pos = _SEARCH(seg, keys)
    inside = pos < seg.size
    present = np.zeros(len(changes), dtype=bool)
    present[inside] = (seg[pos[inside]] >> _I64(2)) == (keys[inside] >> _I64(2))
    kept = np.delete(seg, pos[present]) if present.any() else seg
    added = np.fromiter((k << 2 | c for k, c in changes if c != REMOVED), dtype=np.int64)
    if not added.size:
        return kept.copy() if kept is seg else kept
    out = np.concatenate((kept, added))
    out.sort()
    return out

