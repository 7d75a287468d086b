"""Bulk loading of a BlockIndex: pages of (scope, counterpart, kind, mobiles) groups become packed
entries in one preallocated numpy array (sized from the store's count), which PackedKeys.build
sorts in place: no Python object per block survives a page, and the peak stays near the final size.

Bad input is kept the way the store keeps it: a number or counterpart id too large for the packed
key, or a kind the packed code has no place for, goes to the index's ``extra`` dict; an unknown
scope is skipped and counted; a counterpart the store's id table lacks gets an id of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gateway.store.base import ALL_KINDS, BlockGroup, kind_rank
from gateway.store.packed import trim

if TYPE_CHECKING:
    from gateway.store.index import BlockIndex

log = logging.getLogger(__name__)

MIN_CP_BITS = 11  # at least 2,047 counterparts: every 15-digit number still packs (50 bits)
MAX_CP_BITS = 26  # at most 67M ids: 11-digit (NANP) numbers still pack (35 bits)
CODE: dict[str, int] = {kind: code for code, kind in enumerate(ALL_KINDS)}  # rank order
_MIN_BUFFER = 1 << 12


def cp_bits_for(max_id: int) -> int:
    """Counterpart bits for ids up to max_id, with room for them to double."""
    return min(MAX_CP_BITS, max(MIN_CP_BITS, (2 * max_id + 1).bit_length()))


class Loader:
    """Fills an empty BlockIndex; ``finish()`` builds it and returns the blocks held."""

    def __init__(self, index: BlockIndex, capacity: int = 0) -> None:
        self.index = index
        self.buf = np.empty(max(capacity, _MIN_BUFFER), dtype=np.int64)
        self.n = 0
        self.skipped = 0  # blocks with an unknown scope or a bad number
        self.unknown = 0  # counterparts the store's id table lacked
        self._adopted = False

    def adopt_ids(self, rows: Iterable[tuple[int, str, str]]) -> None:
        """The store's id table: (id, scope, counterpart); sets the key layout from the largest id."""
        ignored = max_id = 0
        for cp, scope, counterpart in rows:
            max_id = max(max_id, int(cp))  # ids of ignored rows are never handed out here either
            if not self.index.adopt_id(int(cp), str(scope), str(counterpart)):
                ignored += 1
        if ignored:
            log.warning("index_id_rows_ignored", extra={"count": ignored})
        self.index.reserve_ids(max_id)
        self.index.set_layout(cp_bits_for(max_id))
        self._adopted = True

    def reserve(self, n: int) -> None:
        """Room for n entries (the store's count), before any arrive."""
        if n > self.buf.size:
            self.buf.resize(n, refcheck=False)

    def layout(self) -> tuple[int, int, int]:
        return self.index.shift, self.index.cp_max, self.index.mobile_max

    def codes(self) -> dict[str, int]:
        return dict(CODE)

    def entries(self, values: npt.NDArray[np.int64]) -> None:
        """Entries packed by the store (load_packed) in this index's layout."""
        end = self.n + values.size
        if end > self.buf.size:
            self.buf.resize(max(int(self.buf.size * 1.5), end), refcheck=False)
        self.buf[self.n:end] = values
        self.n = end

    def groups(self, groups: Iterable[BlockGroup]) -> None:
        index = self.index
        for scope, counterpart, kind, mobiles in groups:
            if not len(mobiles):
                continue
            try:
                cp = index.cp_id(scope, counterpart, create=False)
            except ValueError:
                self.skipped += len(mobiles)
                continue
            if cp is None:
                cp = index.cp_id(scope, counterpart, create=True)
                assert cp is not None
                self.unknown += self._adopted
            code = CODE.get(kind)
            if code is None or cp > index.cp_max:
                for mobile in mobiles:
                    self._extra(cp, int(mobile), kind)
                continue
            self._pack(cp, code, kind, mobiles)

    def _pack(self, cp: int, code: int, kind: str, mobiles: Sequence[int] | npt.NDArray[np.int64]) -> None:
        arr = np.array(mobiles, dtype=np.int64)
        big = arr > self.index.mobile_max
        if big.any():
            for mobile in arr[big].tolist():
                self._extra(cp, mobile, kind)
            arr = arr[~big]
        arr |= cp << self.index.shift
        arr <<= 2
        arr |= code
        self.entries(arr)

    def _extra(self, cp: int, mobile: int, kind: str) -> None:
        extra = self.index.extra
        old = extra.get((cp, mobile))
        if old is None or kind_rank(kind) > kind_rank(old):
            extra[(cp, mobile)] = kind

    def finish(self) -> int:
        index, keys = self.index, self.index.keys
        buf, self.buf = self.buf, np.empty(0, dtype=np.int64)
        buf.resize(self.n, refcheck=False)
        keys.build(buf)
        del buf
        for (cp, mobile) in [k for k in index.extra if k[1] <= index.mobile_max and k[0] <= index.cp_max]:
            if keys.get(cp << index.shift | mobile) is not None:  # a packed kind outranks an odd one
                del index.extra[(cp, mobile)]
        by_kind = {ALL_KINDS[code]: n for code, n in enumerate(keys.counts())}
        for kind in index.extra.values():
            by_kind[kind] = by_kind.get(kind, 0) + 1
        index.set_counts(by_kind, self._cp_counts())
        trim()
        if self.skipped:
            log.warning("index_load_skipped", extra={"count": self.skipped})
        if self.unknown:
            log.warning("index_unknown_counterparts", extra={"count": self.unknown})
        return len(index)

    def _cp_counts(self) -> dict[int, int]:
        """Blocks per counterpart of the tracked scopes (account, program, global)."""
        index = self.index
        tracked = index.tracked_ids()
        counts: dict[int, int] = {}
        if not tracked:
            return counts
        wanted = np.array(sorted(tracked), dtype=np.int64)
        shift = index.shift + 2
        for seg in index.keys.segments[0]:
            for start in range(0, seg.size, 1 << 16):
                cps = seg[start:start + (1 << 16)] >> shift
                starts = np.concatenate(([0], np.flatnonzero(cps[1:] != cps[:-1]) + 1))
                lengths = np.diff(np.append(starts, cps.size))
                values = cps[starts]
                keep = np.isin(values, wanted)
                for cp, n in zip(values[keep].tolist(), lengths[keep].tolist(), strict=True):
                    counts[cp] = counts.get(cp, 0) + n
        for cp, _ in index.extra:
            if cp in tracked:
                counts[cp] = counts.get(cp, 0) + 1
        return counts
