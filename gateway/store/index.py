"""BlockIndex: the in-memory block list consulted on every submit_sm (issue 13 layout).

The store is the source of truth; this index is loaded from it at start and kept in step with
every change. Each counterpart (scope and originating number, account or program; global is one)
has a small integer id, from the store's ``counterparts`` table at load (so every gateway agrees)
or, for one never seen, the next free id here. A block is one 61-bit key
``counterpart id << mobile_bits | mobile digits`` with its kind as a 2-bit code
(deactivated < optout < carrier < admin) in ``PackedKeys``: about 9.2 bytes a block whatever the
spread of numbers and counterparts. ``mobile_bits`` is what the largest counterpart id leaves
(61 - cp_bits, cp_bits chosen at load with room to double); a block whose number or counterpart
id does not fit, or whose kind is not one of the four, lives in a small ``_extra`` dict instead:
slower and larger, never lost.

Semantics mirror the store: ``add`` of a present key raises its kind when the new kind ranks
higher (admin > carrier > optout > deactivated) and otherwise changes nothing; loads and event
replays follow the same rule, so any order of adds ends with the highest kind. ``remove`` lifts
only the kinds it is allowed to.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence

from rbloom import Bloom

from gateway.errors import StoreError
from gateway.store.base import (
    ALL_KINDS,
    KINDS,
    SCOPES,
    AuditEvent,
    Block,
    BlockGroup,
    BlockKey,
    Store,
    event_key,
    kind_rank,
)
from gateway.store.index_load import CODE, Loader
from gateway.store.packed import PackedKeys

log = logging.getLogger(__name__)

DEFAULT_KIND = "optout"
CLEAR, ASK = -1, -2  # BlockIndex.probe: nothing can block the pair; only is_blocked can tell
Probe = tuple[int, Bloom, int]
_MAX_DIGITS = 18  # fits an unsigned 64-bit integer with room to spare
_LOAD_CHUNK = 1 << 18  # rows converted at a time by load_rows
DEFAULT_CP_BITS = 16  # a fresh index: 65,535 counterparts, numbers up to 3.5e13 packed
_ID_BYTES = 70  # per id: dict slot, its int, amortised growth (plus the name's own size)
_EXTRA_BYTES = 200  # per _extra entry: dict slot, tuple, ints, kind


def mobile_int(number: str) -> int:
    """'+14155550100' -> 14155550100; ValueError for anything but 1-18 digits."""
    digits = number.removeprefix("+")
    if not (0 < len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit()):
        raise ValueError(f"not an E.164 number: {number!r}")
    return int(digits)


class ProgramBlocks:
    """The opt-outs of one program: ``mobile in blocks`` (compliance's view of one program)."""

    __slots__ = ("_cp", "_index")

    def __init__(self, index: BlockIndex, cp: int) -> None:
        self._index, self._cp = index, cp

    def __contains__(self, mobile: object) -> bool:
        return isinstance(mobile, int) and self._index.code_at(self._cp, mobile) is not None

    def __bool__(self) -> bool:
        return self._index.cp_count(self._cp) > 0


class Programs:
    """``index.programs.get("<account>/<program>")``: that program's opt-outs, None when it has none."""

    __slots__ = ("_index", "_views")

    def __init__(self, index: BlockIndex) -> None:
        self._index = index
        self._views: dict[int, ProgramBlocks] = {}

    def get(self, program: str) -> ProgramBlocks | None:
        cp = self._index.ids["program"].get(program)
        if cp is None or not self._index.cp_count(cp):
            return None
        view = self._views.get(cp)
        if view is None:
            view = self._views[cp] = ProgramBlocks(self._index, cp)
        return view

    def __bool__(self) -> bool:
        return any(self._index.cp_count(cp) for cp in self._index.ids["program"].values())


class BlockIndex:
    """Blocks by (mobile, counterpart, scope); lookups never touch the store."""

    __slots__ = (
        "_account",
        "_counts",
        "_cp_counts",
        "_global",
        "_id_bytes",
        "_next_id",
        "_number",
        "cp_max",
        "extra",
        "ids",
        "keys",
        "mobile_max",
        "programs",
        "shift",
    )

    def __init__(self, cp_bits: int = DEFAULT_CP_BITS) -> None:
        self.keys = PackedKeys()
        self.extra: dict[tuple[int, int], str] = {}  # (cp, mobile) -> kind: what does not pack
        self.ids: dict[str, dict[str, int]] = {"number": {}, "account": {}, "program": {}}
        self._number, self._account = self.ids["number"], self.ids["account"]
        self._global: int | None = None  # the id of scope global
        self._next_id = 1
        self._id_bytes = 0
        self._counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._cp_counts: dict[int, int] = {}  # blocks per counterpart, scopes other than number
        self.programs = Programs(self)
        self.set_layout(cp_bits)

    def set_layout(self, cp_bits: int) -> None:
        """Bits of the counterpart id in a key (only while empty)."""
        self.shift = 61 - cp_bits
        self.mobile_max = (1 << self.shift) - 1
        self.cp_max = (1 << cp_bits) - 1

    # -- hot path ---------------------------------------------------------

    def is_blocked(self, mobile: int, originating: str, account: str) -> bool:
        """True when any scope blocks mobile for this originating number/account."""
        if mobile <= self.mobile_max:
            keys, shift, cp_max = self.keys, self.shift, self.cp_max
            bloom = keys.bloom
            cp = self._number.get(originating)
            if cp is not None and cp <= cp_max:
                key = cp << shift | mobile
                if key in bloom and keys.code(key) is not None:
                    return True
            cp = self._account.get(account)
            if cp is not None and cp <= cp_max and cp in self._cp_counts:
                key = cp << shift | mobile
                if key in bloom and keys.code(key) is not None:
                    return True
            cp = self._global
            if cp is not None and cp <= cp_max and cp in self._cp_counts:
                key = cp << shift | mobile
                if key in bloom and keys.code(key) is not None:
                    return True
            if not self.extra:
                return False
        return bool(self.kinds_for(mobile, originating, account))

    def probe(self, originating: str, account: str) -> Probe:
        """is_blocked for this pair reduced to one Bloom probe, for gateway/hotpath.py to inline:
        (prefix, bloom, mobile_max), read by probe_clear. Valid until the index next changes
        (hotpath takes one per read and source). Cold: is_blocked's scope walk, once."""
        bloom = self.keys.bloom
        if self.extra:
            return ASK, bloom, self.mobile_max  # blocks that do not pack: only is_blocked sees them
        prefixes = []
        cp = self._number.get(originating)
        if cp is not None and cp <= self.cp_max:
            prefixes.append(cp << self.shift)
        for cp in (self._account.get(account), self._global):
            if cp is not None and cp <= self.cp_max and cp in self._cp_counts:
                prefixes.append(cp << self.shift)
        if not prefixes:
            return CLEAR, bloom, self.mobile_max
        return (prefixes[0] if len(prefixes) == 1 else ASK), bloom, self.mobile_max

    def kinds_for(self, mobile: int, originating: str, account: str) -> set[str]:
        """The kinds of the blocks is_blocked found (cold path: after a hit)."""
        found = set()
        for cp in (self._number.get(originating), self._account.get(account), self._global):
            kind = None if cp is None else self.kind_at(cp, mobile)
            if kind is not None:
                found.add(kind)
        return found

    def program_blocked(self, mobile: int, program: str) -> bool:
        """True when mobile opted out of program ("<account>/<program>", scope program)."""
        cp = self.ids["program"].get(program)
        return cp is not None and self.code_at(cp, mobile) is not None

    @property
    def has_programs(self) -> bool:
        return bool(self.programs)

    # -- changes ----------------------------------------------------------

    def add(self, key: BlockKey, kind: str = DEFAULT_KIND) -> bool:
        """Add a block; for a present key, raise its kind when kind ranks higher.

        True when the key was added or its kind raised; False (nothing changed)
        when the key is present with a kind ranked as high or higher.
        """
        mobile = mobile_int(key.number)
        cp = self.cp_id(key.scope, key.counterpart, create=True)
        assert cp is not None
        old = self.kind_at(cp, mobile)
        if old is not None and kind_rank(kind) <= kind_rank(old):
            return False
        self._set(cp, mobile, kind)
        if old is not None:
            self._counts[old] -= 1
        elif key.scope != "number":
            self._cp_counts[cp] = self._cp_counts.get(cp, 0) + 1
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return True

    def remove(self, key: BlockKey, lift_kinds: Iterable[str] | None = None) -> bool:
        """Lift a block if its kind is in lift_kinds (default: any); True if lifted."""
        kind = self.kind_of(key)
        if kind is None or (lift_kinds is not None and kind not in tuple(lift_kinds)):
            return False
        mobile = mobile_int(key.number)
        cp = self.cp_id(key.scope, key.counterpart, create=False)
        assert cp is not None  # kind_of found it
        if mobile <= self.mobile_max and cp <= self.cp_max:
            self.keys.discard(cp << self.shift | mobile)
        self.extra.pop((cp, mobile), None)
        if key.scope != "number":
            left = self._cp_counts[cp] - 1
            if left:
                self._cp_counts[cp] = left
            else:
                del self._cp_counts[cp]
        self._counts[kind] -= 1
        return True

    def apply_event(self, event: AuditEvent) -> bool:
        """Replay a recorded event (tailing another gateway's changes); True if changed.

        Uses the event's resulting block_state: "blocked" adds, "unblocked"
        removes. Events without one (help, admin_import...) change nothing:
        after an "admin_import" reload the index from the store instead.
        """
        key = event_key(event)
        if event.block_state not in ("blocked", "unblocked") or key is None:
            return False
        try:
            if event.block_state == "blocked":
                return self.add(key, event.kind or DEFAULT_KIND)
            return self.remove(key)
        except ValueError:
            return False

    # -- loading ----------------------------------------------------------

    def load(self, blocks: Iterable[Block]) -> int:
        """Bulk add (start-up path); returns blocks added. Bad numbers are skipped."""
        return self.load_rows((b.key.number, b.key.counterpart, b.key.scope, b.kind) for b in blocks)

    async def load_store(self, store: Store) -> int:
        """Bulk add every block of the store, streamed in pages; returns blocks added.

        Counterpart ids come from the store's id table first; blocks whose counterpart it lacks
        get ids of their own here (logged), so a disagreeing table costs memory, never blocks.
        """
        if len(self) or self._next_id > 1:  # ids in use: the store's could clash with them
            added = 0
            async for page in store.block_groups():
                added += self._add_groups(page)
            return added
        try:
            load_packed = getattr(store, "load_packed", None)  # PostgreSQL: packed by the server
            if load_packed is not None:
                loader = Loader(self)
                await load_packed(loader)
                return loader.finish()
            loader = Loader(self, capacity=sum((await store.count_blocks()).values()))
            loader.adopt_ids(await store.counterpart_ids())
            async for page in store.block_groups():
                loader.groups(page)
            return loader.finish()
        except (MemoryError, ValueError, OverflowError, TypeError) as exc:  # StoreError passes as is
            raise StoreError(f"block index cannot be built: {type(exc).__name__}: {exc}") from exc

    def load_groups(self, groups: Iterable[BlockGroup]) -> int:
        """Bulk add (scope, counterpart, kind, mobiles) groups; returns blocks added.

        A key present twice gets the higher-ranked of its kinds (counted once).
        """
        if len(self):
            return self._add_groups(groups)
        loader = Loader(self)
        loader.groups(groups)
        return loader.finish()

    def _add_groups(self, groups: Iterable[BlockGroup]) -> int:
        before = len(self)
        for scope, counterpart, kind, mobiles in groups:
            for mobile in mobiles:
                self._add_quiet(BlockKey(str(mobile), counterpart, scope), kind)
        return len(self) - before

    def load_rows(self, rows: Iterable[Sequence[str]]) -> int:
        """load() from (number, counterpart, scope, kind) rows, without Block objects.

        Works in chunks of _LOAD_CHUNK rows, so the temporary lists stay small next to the index.
        """
        if len(self):
            before = len(self)
            for number, counterpart, scope, kind in rows:
                self._add_quiet(BlockKey(number, counterpart, scope), kind)
            return len(self) - before
        loader = Loader(self)
        grouped: dict[tuple[str, str, str], list[int]] = {}
        pending = 0
        for number, counterpart, scope, kind in rows:
            try:
                mobile = mobile_int(number)
            except ValueError:
                loader.skipped += 1
                continue
            grouped.setdefault((scope, counterpart, kind), []).append(mobile)
            pending += 1
            if pending >= _LOAD_CHUNK:
                loader.groups([(*g, m) for g, m in grouped.items()])
                grouped.clear()
                pending = 0
        loader.groups([(*g, m) for g, m in grouped.items()])
        return loader.finish()

    def _add_quiet(self, key: BlockKey, kind: str) -> None:
        try:
            self.add(key, kind)
        except ValueError:
            log.warning("index_load_skipped", extra={"count": 1})

    # -- queries ----------------------------------------------------------

    def kind_of(self, key: BlockKey) -> str | None:
        """The kind of the block at key, or None when not blocked."""
        try:
            mobile = mobile_int(key.number)
            cp = self.cp_id(key.scope, key.counterpart, create=False)
        except ValueError:
            return None
        return None if cp is None else self.kind_at(cp, mobile)

    def kind_at(self, cp: int, mobile: int) -> str | None:
        if mobile <= self.mobile_max and cp <= self.cp_max:
            code = self.keys.get(cp << self.shift | mobile)
            if code is not None:
                return ALL_KINDS[code]
        return self.extra.get((cp, mobile)) if self.extra else None

    def code_at(self, cp: int, mobile: int) -> int | str | None:
        """The code (or, outside the packed keys, the kind) of (cp, mobile); None when absent."""
        if mobile <= self.mobile_max and cp <= self.cp_max:
            code = self.keys.get(cp << self.shift | mobile)
            if code is not None:
                return code
        return self.extra.get((cp, mobile)) if self.extra else None

    def cp_count(self, cp: int) -> int:
        return self._cp_counts.get(cp, 0)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, BlockKey) and self.kind_of(key) is not None

    def __len__(self) -> int:
        return sum(self._counts.values())

    def counts_by_kind(self) -> dict[str, int]:
        """Blocks per kind, every known kind present (for the gateway_blocks gauge)."""
        return dict(self._counts)

    def memory_bytes(self) -> int:
        """Bytes held: packed keys and their filter, the id table, blocks outside the keys."""
        return (self.keys.memory_bytes() + self._id_bytes + len(self.extra) * _EXTRA_BYTES
                + 8 * len(self._cp_counts) * 3)

    # -- ids and internals ------------------------------------------------

    def cp_id(self, scope: str, counterpart: str, *, create: bool) -> int | None:
        """The counterpart's id (a new one when create); ValueError for an unknown scope."""
        if scope == "global":
            if self._global is None and create:
                self._global = self.new_id()
            return self._global
        ids = self.ids.get(scope)
        if ids is None:
            raise ValueError(f"unknown scope: {scope!r}")
        cp = ids.get(counterpart)
        if cp is None and create:
            cp = ids[counterpart] = self.new_id()
            self._id_bytes += sys.getsizeof(counterpart) + _ID_BYTES
        return cp

    def adopt_id(self, cp: int, scope: str, counterpart: str) -> bool:
        """Take the store's id for a counterpart (empty index only); False for an unusable row."""
        if cp < 1 or scope not in SCOPES:
            return False
        if scope == "global":
            if counterpart or self._global is not None:
                return False
            self._global = cp
        else:
            ids = self.ids[scope]
            if counterpart in ids:
                return False
            ids[counterpart] = cp
            self._id_bytes += sys.getsizeof(counterpart) + _ID_BYTES
        self._next_id = max(self._next_id, cp + 1)
        return True

    def reserve_ids(self, up_to: int) -> None:
        """Never hand out ids up to up_to (the store's, adopted or not)."""
        self._next_id = max(self._next_id, up_to + 1)

    def new_id(self) -> int:
        cp = self._next_id
        self._next_id += 1
        return cp

    def set_counts(self, by_kind: dict[str, int], by_cp: dict[int, int]) -> None:
        """After a bulk load (Loader)."""
        self._counts = {**dict.fromkeys(KINDS, 0), **{k: n for k, n in by_kind.items() if n or k in KINDS}}
        self._cp_counts = by_cp

    def tracked_ids(self) -> set[int]:
        """Ids of counterparts whose blocks are counted (scopes account, program, global)."""
        out = set(self._account.values()) | set(self.ids["program"].values())
        if self._global is not None:
            out.add(self._global)
        return out

    def _set(self, cp: int, mobile: int, kind: str) -> None:
        code = CODE.get(kind)
        if code is not None and mobile <= self.mobile_max and cp <= self.cp_max:
            self.keys.put(cp << self.shift | mobile, code)
            if self.extra:
                self.extra.pop((cp, mobile), None)
        else:
            self.extra[(cp, mobile)] = kind


def probe_clear(probe: Probe, mobile: int) -> bool:
    """True: a probe (BlockIndex.probe) shows mobile is not blocked for its pair, without is_blocked.
    False: ask is_blocked (a block, a Bloom false positive, or a case the probe does not cover).
    gateway/hotpath.py inlines exactly this expression."""
    prefix, bloom, mobile_max = probe
    return prefix == CLEAR or (prefix >= 0 and mobile <= mobile_max and (prefix | mobile) not in bloom)
