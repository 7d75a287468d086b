"""BlockIndex: the in-memory block list consulted on every submit_sm.

The store is the source of truth; this index is loaded from it at start and
kept in step with every change. Mobiles are held as 64-bit integers (the
E.164 digits) in roaring bitmaps (pyroaring ``BitMap64``), one bitmap per
(scope, counterpart): about 3 bytes an entry at carrier scale instead of the
~90 a set of strings costs.

Kinds: every block is in its counterpart's membership bitmap; blocks whose
kind is not "optout" (the common case) are also in a per-kind bitmap, so
``kind_of`` needs no per-entry object either.

Semantics mirror the store: ``add`` of a present key raises its kind when the
new kind ranks higher (admin > carrier > optout) and otherwise changes
nothing; loads and event replays follow the same rule, so any order of adds
ends with the highest kind. ``remove`` lifts only the kinds it is allowed to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pyroaring import BitMap64

from gateway.store.base import (
    KINDS,
    AuditEvent,
    Block,
    BlockGroup,
    BlockKey,
    Store,
    event_key,
    kind_rank,
)

log = logging.getLogger(__name__)

DEFAULT_KIND = "optout"
_EMPTY: frozenset[int] = frozenset()
_MAX_DIGITS = 18  # fits an unsigned 64-bit integer with room to spare
_CONTAINER_OVERHEAD = 90  # bytes per roaring container (struct, tree node, malloc), measured
_BITMAP_OVERHEAD = 200  # bytes per BitMap64 object and its dict slot
_LOAD_CHUNK = 1 << 18  # rows buffered by load before merging into the bitmaps

_Group = tuple[str, str]  # (scope, counterpart)


def mobile_int(number: str) -> int:
    """'+14155550100' -> 14155550100; ValueError for anything but 1-18 digits."""
    digits = number.removeprefix("+")
    if not (0 < len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit()):
        raise ValueError(f"not an E.164 number: {number!r}")
    return int(digits)


class BlockIndex:
    """Blocks by (mobile, counterpart, scope); lookups never touch the store."""

    __slots__ = ("_account", "_counts", "_global", "_number", "_special", "programs")

    def __init__(self) -> None:
        self._number: dict[str, BitMap64] = {}  # originating number -> mobiles
        self._account: dict[str, BitMap64] = {}  # account system_id -> mobiles
        self._global = BitMap64()
        self.programs: dict[str, BitMap64] = {}  # "<account>/<program>" -> mobiles (scope program); read-only
        self._special: dict[str, dict[_Group, BitMap64]] = {}  # kind -> group -> mobiles
        self._counts: dict[str, int] = dict.fromkeys(KINDS, 0)

    # -- hot path ---------------------------------------------------------

    def is_blocked(self, mobile: int, originating: str, account: str) -> bool:
        """True when any scope blocks mobile for this originating number/account."""
        return (
            mobile in self._number.get(originating, _EMPTY)
            or mobile in self._account.get(account, _EMPTY)
            or mobile in self._global
        )

    def kinds_for(self, mobile: int, originating: str, account: str) -> set[str]:
        """The kinds of the blocks is_blocked found (cold path: after a hit)."""
        number = str(mobile)
        keys = (BlockKey(number, originating, "number"), BlockKey(number, account, "account"),
                BlockKey(number, "", "global"))
        return {kind for kind in map(self.kind_of, keys) if kind is not None}

    def program_blocked(self, mobile: int, program: str) -> bool:
        """True when mobile opted out of program ("<account>/<program>", scope program)."""
        return mobile in self.programs.get(program, _EMPTY)

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
        members = self._members(key.scope, key.counterpart, create=True)
        if mobile in members:
            return self._upgrade((key.scope, key.counterpart), BitMap64([mobile]), kind) > 0
        members.add(mobile)
        if kind != DEFAULT_KIND:
            self._special_bitmap(kind, (key.scope, key.counterpart), create=True).add(mobile)
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return True

    def remove(self, key: BlockKey, lift_kinds: Iterable[str] | None = None) -> bool:
        """Lift a block if its kind is in lift_kinds (default: any); True if lifted."""
        kind = self.kind_of(key)
        if kind is None or (lift_kinds is not None and kind not in tuple(lift_kinds)):
            return False
        mobile = mobile_int(key.number)
        group = (key.scope, key.counterpart)
        members = self._members(key.scope, key.counterpart, create=False)
        members.discard(mobile)
        if not members:
            self._drop_members(group)
        if kind != DEFAULT_KIND:
            special = self._special[kind]
            special[group].discard(mobile)
            if not special[group]:
                del special[group]
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

    def load(self, blocks: Iterable[Block]) -> int:
        """Bulk add (start-up path); returns blocks added. Bad numbers are skipped."""
        return self.load_rows((b.key.number, b.key.counterpart, b.key.scope, b.kind) for b in blocks)

    async def load_store(self, store: Store) -> int:
        """Bulk add every block of the store (its block_groups pages); returns blocks added."""
        added = 0
        async for page in store.block_groups():
            added += self.load_groups(page)
        for bitmap in self._all_bitmaps():
            bitmap.run_optimize()
            bitmap.shrink_to_fit()
        return added

    def load_groups(self, groups: Iterable[BlockGroup]) -> int:
        """Bulk add (scope, counterpart, kind, mobiles) groups; returns blocks added.

        A mobile already present in its group gets the higher-ranked of its kind
        and the group's (not counted as added).
        """
        added = 0
        for scope, counterpart, kind, mobiles in groups:
            members = self._members(scope, counterpart, create=False)
            fresh = BitMap64(mobiles)
            if members:
                present = fresh.intersection(members)
                if present and kind != DEFAULT_KIND:
                    self._upgrade((scope, counterpart), present, kind)
                fresh.difference_update(members)
                members.update(fresh)
            elif scope == "global":
                self._global = fresh.copy()
            else:
                self._scope_dict(scope)[counterpart] = fresh.copy()
            if not fresh:
                continue
            if kind != DEFAULT_KIND:
                self._special_bitmap(kind, (scope, counterpart), create=True).update(fresh)
            self._counts[kind] = self._counts.get(kind, 0) + len(fresh)
            added += len(fresh)
        return added

    def load_rows(self, rows: Iterable[Sequence[str]]) -> int:
        """load() from (number, counterpart, scope, kind) rows, without Block objects.

        Works in chunks, so the temporary lists stay small next to the index.
        """
        grouped: dict[_Group, list[int]] = {}
        special: dict[_Group, list[tuple[int, str]]] = {}  # (position in grouped, kind)
        added = skipped = pending = 0
        for number, counterpart, scope, kind in rows:
            try:
                mobile = mobile_int(number)
            except ValueError:
                skipped += 1
                continue
            mobiles = grouped.setdefault((scope, counterpart), [])
            mobiles.append(mobile)
            if kind != DEFAULT_KIND:
                special.setdefault((scope, counterpart), []).append((len(mobiles) - 1, kind))
            pending += 1
            if pending >= _LOAD_CHUNK:
                added += self._merge_all(grouped, special)
                pending = 0
        if skipped:
            log.warning("index_load_skipped", extra={"count": skipped})
        added += self._merge_all(grouped, special)
        for bitmap in self._all_bitmaps():
            bitmap.run_optimize()
            bitmap.shrink_to_fit()
        return added

    def _merge_all(
        self, grouped: dict[_Group, list[int]], special: dict[_Group, list[tuple[int, str]]]
    ) -> int:
        added = sum(self._merge(g, m, special.get(g, [])) for g, m in grouped.items())
        grouped.clear()
        special.clear()
        return added

    def _merge(self, group: _Group, mobiles: list[int], special: list[tuple[int, str]]) -> int:
        """Add one group's mobiles; a mobile gets the highest-ranked kind seen for it."""
        members = self._members(*group, create=True)
        fresh = BitMap64(sorted(mobiles))
        if special and len(fresh) != len(mobiles):  # a key repeated: one at a time
            kind_at = dict(special)
            before = len(self)
            for i, m in enumerate(mobiles):
                self.add(BlockKey(str(m), group[1], group[0]), kind_at.get(i, DEFAULT_KIND))
            return len(self) - before
        by_kind: dict[str, BitMap64] = {}
        for position, kind in special:
            by_kind.setdefault(kind, BitMap64()).add(mobiles[position])
        if members:
            for kind, kind_mobiles in by_kind.items():
                present = kind_mobiles.intersection(members)
                if present:
                    self._upgrade(group, present, kind)
        fresh.difference_update(members)
        if not fresh:
            return 0
        members.update(fresh)
        unassigned = fresh.copy()
        for kind, kind_mobiles in by_kind.items():
            new = kind_mobiles.intersection(unassigned)
            if new:
                unassigned.difference_update(new)
                self._special_bitmap(kind, group, create=True).update(new)
                self._counts[kind] = self._counts.get(kind, 0) + len(new)
        self._counts[DEFAULT_KIND] += len(unassigned)
        return len(fresh)

    # -- queries ----------------------------------------------------------

    def kind_of(self, key: BlockKey) -> str | None:
        """The kind of the block at key, or None when not blocked."""
        try:
            mobile = mobile_int(key.number)
        except ValueError:
            return None
        if mobile not in self._members(key.scope, key.counterpart, create=False):
            return None
        group = (key.scope, key.counterpart)
        for kind, groups in self._special.items():
            if mobile in groups.get(group, _EMPTY):
                return kind
        return DEFAULT_KIND

    def __contains__(self, key: object) -> bool:
        return isinstance(key, BlockKey) and self.kind_of(key) is not None

    def __len__(self) -> int:
        return sum(self._counts.values())

    def counts_by_kind(self) -> dict[str, int]:
        """Blocks per kind, every known kind present (for the gateway_blocks gauge)."""
        return dict(self._counts)

    def memory_bytes(self) -> int:
        """Estimate of the bytes held by the bitmaps and their dictionaries."""
        total = 0
        for bitmap in self._all_bitmaps():
            stats = bitmap.get_statistics()
            total += _BITMAP_OVERHEAD + stats["n_containers"] * _CONTAINER_OVERHEAD
            total += stats["n_bytes_array_containers"] + stats["n_bytes_run_containers"]
            total += stats["n_bytes_bitset_containers"]
        for groups in (self._number, self._account, self.programs):
            total += sum(len(k) + 49 for k in groups)  # key strings
        return total

    # -- internals --------------------------------------------------------

    def _upgrade(self, group: _Group, present: BitMap64, kind: str) -> int:
        """Raise to kind the mobiles of present (all members of group) whose kind
        ranks lower; returns how many changed."""
        rank = kind_rank(kind)
        raised = BitMap64()
        plain = present.copy()  # those in no per-kind bitmap: DEFAULT_KIND
        for other, groups in self._special.items():
            bitmap = groups.get(group)
            if bitmap is None:
                continue
            hit = bitmap.intersection(present)
            if not hit:
                continue
            plain.difference_update(hit)
            if kind_rank(other) < rank:
                bitmap.difference_update(hit)
                if not bitmap:
                    del groups[group]
                self._counts[other] -= len(hit)
                raised.update(hit)
        if plain and kind_rank(DEFAULT_KIND) < rank:
            self._counts[DEFAULT_KIND] -= len(plain)
            raised.update(plain)
        if raised:
            if kind != DEFAULT_KIND:
                self._special_bitmap(kind, group, create=True).update(raised)
            self._counts[kind] = self._counts.get(kind, 0) + len(raised)
        return len(raised)

    def _all_bitmaps(self) -> list[BitMap64]:
        specials = [bm for groups in self._special.values() for bm in groups.values()]
        return [*self._number.values(), *self._account.values(), *self.programs.values(), self._global, *specials]

    def _members(self, scope: str, counterpart: str, *, create: bool) -> BitMap64:
        if scope == "global":
            return self._global
        groups = self._scope_dict(scope)
        bitmap = groups.get(counterpart)
        if bitmap is None:
            bitmap = BitMap64()
            if create:
                groups[counterpart] = bitmap
        return bitmap

    def _drop_members(self, group: _Group) -> None:
        scope, counterpart = group
        if scope != "global":
            self._scope_dict(scope).pop(counterpart, None)

    def _scope_dict(self, scope: str) -> dict[str, BitMap64]:
        if scope == "number":
            return self._number
        if scope == "account":
            return self._account
        if scope == "program":
            return self.programs
        raise ValueError(f"unknown scope: {scope!r}")

    def _special_bitmap(self, kind: str, group: _Group, *, create: bool) -> BitMap64:
        groups = self._special.setdefault(kind, {}) if create else self._special.get(kind, {})
        bitmap = groups.get(group)
        if bitmap is None:
            bitmap = BitMap64()
            if create:
                groups[group] = bitmap
        return bitmap
