"""The Store protocol every backend implements, and the values it stores.

Numbers are E.164 strings with a leading '+'. A block is keyed by
(number, counterpart, scope):
- scope "number":  counterpart is the originating number (E.164) the mobile texted
- scope "account": counterpart is the account system_id owning that number
- scope "global":  counterpart is ""
- scope "program": counterpart is "<account system_id>/<program name>" (an opt-out of one program)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

Scope = Literal["number", "account", "global", "program"]
Kind = Literal["optout", "carrier", "admin", "deactivated"]
SCOPES: tuple[str, ...] = ("number", "account", "global", "program")
KINDS: tuple[str, ...] = ("optout", "carrier", "admin")
# deactivated: the number's consent epoch ended (gateway deactivations import); lowest rank, so
# a new subscriber's STOP turns it into an opt-out, and only an opt-in keyword lifts it
EPOCH_KIND = "deactivated"
ALL_KINDS: tuple[str, ...] = (EPOCH_KIND, *KINDS)
# precedence of kinds: an add over an existing block of a lower-ranked kind raises its kind
KIND_RANK: dict[str, int] = {kind: rank for rank, kind in enumerate(ALL_KINDS, start=1)}


def kind_rank(kind: str) -> int:
    """admin 4 > carrier 3 > optout 2 > deactivated 1 > anything else 0."""
    return KIND_RANK.get(kind, 0)


@dataclass(frozen=True, slots=True)
class BlockKey:
    number: str  # the mobile, E.164
    counterpart: str  # originating number (E.164), account system_id, or ""
    scope: str  # one of SCOPES


@dataclass(frozen=True, slots=True)
class Block:
    key: BlockKey
    kind: str  # one of KINDS
    source: str  # keyword | carrier | operator | import
    created_at: float  # unix seconds, UTC


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of the append-only compliance log."""

    at: float  # unix seconds UTC
    op: str  # stop | start | help | custom op name | possible_optout | admin_add | admin_remove | mt_rejected ...
    number: str = ""  # the mobile (E.164 when known, raw otherwise)
    counterpart: str = ""  # the originating number
    account: str = ""
    source: str = ""  # keyword | carrier | operator
    text: str = ""  # the text as received (decoded)
    data_coding: int = 0
    rule: str = ""  # the keyword/rule that matched
    config_version: str = ""  # hash of the keyword configuration
    carrier_message_id: str = ""
    reply_text: str = ""
    reply_message_id: str = ""
    block_state: str = ""  # resulting state: blocked | unblocked | unchanged
    scope: str = ""
    kind: str = ""
    mo_fingerprint: str = ""  # a keyword MO's identity (policy.decide.mo_fingerprint): redelivery check
    alphabet: str = ""  # data_coding 0 read under several alphabets: the one the keyword matched under
    operator: str = ""  # who made an operator change (the CLI's --operator, the admin API's operator)
    reason: str = ""  # why, as the operator gave it
    id: int = 0  # assigned by the store


@dataclass(frozen=True, slots=True)
class BlockChange:
    """Add or remove one block, atomically with its audit event."""

    action: Literal["add", "remove"]
    block: Block
    # remove only: kinds a remove may lift (START never lifts "admin")
    lift_kinds: tuple[str, ...] = field(default=("optout", "carrier", "admin", "deactivated"))


@dataclass(frozen=True, slots=True)
class BlockFilter:
    """Which blocks list_blocks returns: every field set must match (None: any)."""

    scope: str | None = None
    kind: str | None = None
    counterparts: tuple[str, ...] | None = None  # the block's counterpart is one of these
    after: BlockKey | None = None  # keyset paging: keys after this one in (number, counterpart, scope) order

    def sql(self, mark: Callable[[], str]) -> tuple[str, list[object]]:
        """' AND ...' conditions (mark() gives the next placeholder) and their parameters."""
        parts: list[str] = []
        params: list[object] = []
        for column, value in (("scope", self.scope), ("kind", self.kind)):
            if value is not None:
                parts.append(f"{column} = {mark()}")
                params.append(value)
        if self.counterparts is not None:
            marks = ", ".join(mark() for _ in self.counterparts) or "NULL"
            parts.append(f"counterpart IN ({marks})")
            params.extend(self.counterparts)
        if self.after is not None:
            a = self.after
            parts.append(f"(number, counterpart, scope) > ({mark()}, {mark()}, {mark()})")
            params.extend((a.number, a.counterpart, a.scope))
        return "".join(f" AND {p}" for p in parts), params


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An MO or receipt PDU waiting for its account's receiver (durable outbox)."""

    id: int
    account: str  # system_id of the application it is for
    raw: bytes  # the PDU as received from the carrier
    enqueued_at: float  # unix seconds, UTC
    expires_at: float
    attempts: int  # failed deliveries so far


@dataclass(frozen=True, slots=True)
class PairState:
    """What a keyword MO for one (mobile, business) pair is decided against, read from the store.

    last_id is the pair's version: the id of its latest state event (an event with an
    mo_fingerprint, which MoJob gives STOP, START and near misses but not HELP, or any event that
    set a block state for the mobile under this counterpart, or under an account or global key). record_mo writes only while it is still the latest; 0 means none.
    """

    number: str
    counterpart: str
    last_id: int = 0
    last_fingerprint: str = ""  # that event's mo_fingerprint ('' when it was not an MO)
    last_at: float = 0.0
    last_counterpart: str = ""  # that event's counterpart: another number's under an account key
    kinds: tuple[tuple[BlockKey, str], ...] = ()  # the asked keys that are blocked, with their kinds
    # revoke-all's pending clarification of (number, the asked account key's account): when its
    # STOP offered it (Clarification), 0.0 for none
    clarify_at: float = 0.0

    def kind_of(self, key: BlockKey) -> str | None:
        return next((kind for k, kind in self.kinds if k == key), None)


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One running gateway's heartbeat row; times are seconds on the store's clock."""

    id: str
    started_at: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one heartbeat read: the store's clock then, and every instance row (ours included)."""

    now: float
    instances: tuple[InstanceRow, ...]


MoItem = tuple[AuditEvent, "BlockChange | None"]
# revoke-all's one clarification (gateway/program_mo.py): (mobile, account system_id, offered at);
# offered at 0.0 consumes it (answered)
Clarification = tuple[str, str, float]
CLARIFY_KEEP = 300.0  # seconds a clarification row is kept (the rule's 5 minutes, the longest window)
# (scope, counterpart, kind, mobiles): the stores yield numpy int64 arrays, callers may pass lists
BlockGroup = tuple[str, str, str, "Sequence[int] | npt.NDArray[np.int64]"]


class PackedSink(Protocol):
    """What a store's load_packed (PostgreSQL) feeds: the index loader (gateway.store.index_load)."""

    def adopt_ids(self, rows: Iterable[tuple[int, str, str]]) -> None: ...
    def reserve(self, n: int) -> None: ...
    def layout(self) -> tuple[int, int, int]:
        """(shift, largest packed counterpart id, largest packed mobile)"""
        ...
    def codes(self) -> dict[str, int]: ...
    def entries(self, values: npt.NDArray[np.int64]) -> None: ...
    def groups(self, groups: Iterable[BlockGroup]) -> None: ...


class Store(Protocol):
    """All methods raise gateway.errors.StoreError when the backend fails."""

    shared: bool  # several gateways may run on it (PostgreSQL); False: one instance (SQLite)

    async def open(self) -> None:
        """Connect and apply migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """One cheap round trip (readiness); StoreError when the backend is down."""

    @property
    def healthy(self) -> bool:
        """False when the last operation failed for a backend reason, until one succeeds."""
        ...

    def iter_blocks(self) -> AsyncIterator[Block]:
        """Every current block, streamed (used to load the in-memory index at start)."""
        ...

    def block_rows(self) -> AsyncIterator[Sequence[Sequence[str]]]:
        """Every current block as pages of (number, counterpart, scope, kind) rows.

        The fast path for BlockIndex.load_store: no Block objects. Take
        last_event_id() before, then replay events after it: replays are idempotent.
        """
        ...

    def block_groups(self) -> AsyncIterator[Sequence[BlockGroup]]:
        """Every current block with a valid number, as (scope, counterpart, kind,
        mobiles as integers) groups, page by page: the fastest index load.

        A key appears once in all the pages; numbers that are not 1-18 digits
        after an optional '+' are left out. Same snapshot rules as block_rows.
        """
        ...

    async def counterpart_ids(self) -> list[tuple[int, str, str]]:
        """The counterpart id table: (id, scope, counterpart) for every counterpart a block was
        ever added under (ids are small, stable and shared by every gateway on the store)."""
        ...

    async def record(self, event: AuditEvent, change: BlockChange | None = None) -> tuple[int, bool]:
        """Append event and apply change in one transaction; durable on return.

        Returns (event id, changed). An add of a key already blocked raises the
        block's kind when the new kind ranks higher (admin > carrier > optout;
        source follows, created_at is kept) and reports changed=True; otherwise
        the block is kept as is and changed is False. changed is also False when
        a remove found nothing it may lift. Empty number/scope/kind/block_state
        fields of the event are filled from the change and describe the resulting
        block: block_state "blocked" or "unblocked", kind the block's kind after
        the change (the lifted kind for a remove).
        """
        ...

    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        """Append events that change no block, all in one transaction (summaries: mt_refused)."""

    async def events_after(self, event_id: int, limit: int = 1000) -> list[AuditEvent]:
        """Events with id > event_id in id order (tailing / catch-up)."""
        ...

    async def pair_state(self, number: str, counterpart: str, keys: Sequence[BlockKey]) -> PairState:
        """The pair's version (latest state event) and the current kinds of keys, one snapshot."""
        ...

    async def record_mo(self, items: Sequence[MoItem], expect: PairState,
                        clarification: Clarification | None = None) -> list[tuple[int, bool]] | None:
        """record() each item, all in one transaction, only if expect.last_id is still the pair's
        latest state event; None (nothing written) when another writer got there first: read
        pair_state again and decide again. Store-assigned ids order the writers, never commit races.
        clarification: offered (kept CLARIFY_KEEP seconds; older rows are purged) or consumed, in the
        same transaction."""
        ...

    async def last_event_id(self) -> int: ...

    async def put_receipt_routes(self, routes: Iterable[tuple[str, str, float]]) -> None:
        """(carrier message_id, account system_id, expires_at) rows, upserted in one batch."""

    async def get_receipt_route(self, message_id: str) -> str | None:
        """The account of message_id, None when unknown or expired."""
        ...

    async def get_block(self, key: BlockKey) -> Block | None: ...

    async def import_blocks(self, blocks: Iterable[Block]) -> int:
        """Bulk insert (ignore existing); returns rows inserted.

        An existing key is kept, except that its kind is raised (with its source)
        when an imported row for it has a higher-ranked kind, as record() does;
        such upgrades are not counted. Of rows repeating a new key, the highest
        kind wins. One transaction, with one "admin_import" event (text: the count) so
        tailing gateways know to reload their index.
        """
        ...

    # -- operator CLI ---------------------------------------------------------

    async def list_blocks(
        self, limit: int = 100, offset: int = 0, number: str | None = None, *,
        where: BlockFilter | None = None,
    ) -> list[Block]:
        """A page of blocks ordered by (number, counterpart, scope); optionally one mobile's,
        and only those matching where (its after: the keys following a cursor)."""
        ...

    async def count_blocks(self) -> dict[str, int]:
        """Blocks per kind."""
        ...

    async def remove_block(
        self,
        key: BlockKey,
        lift_kinds: Iterable[str] = ALL_KINDS,
        event: AuditEvent | None = None,
    ) -> bool:
        """Lift one block if its kind is in lift_kinds, with an audit event
        (default: op "admin_remove", source "operator"). True if lifted."""
        ...

    async def events_of(self, number: str, limit: int = 100_000) -> list[AuditEvent]:
        """One mobile's events (number = the mobile), in id order (index events_number)."""
        ...

    def events_between(self, since: float, until: float) -> AsyncIterator[AuditEvent]:
        """Events with since <= at < until, in id order, streamed."""
        ...

    async def purge_events(self, before: float) -> int:
        """Retention: delete events with at < before; returns rows deleted."""
        ...

    async def purge_receipt_routes(self, now: float) -> int:
        """Delete routes with expires_at <= now; returns rows deleted."""
        ...

    # -- durable outbox (times are unix wall-clock seconds, shared by gateways) --

    async def outbox_put(self, account: str, raw: bytes, now: float, expires_at: float) -> int:
        """Queue raw for account, claimable from now; durable on return. Returns its id."""
        ...

    async def outbox_claim(
        self, account: str, owner: str, now: float, lease: float, limit: int = 100
    ) -> list[OutboxItem]:
        """Lease up to limit of account's due rows (next attempt <= now, no live
        lease) to owner until now + lease, in id order. Rows leased to one
        owner are never handed to another until the lease ends.

        Per-account order: a row is not claimed while an earlier row of the
        same account waits for a retry (next attempt > now) or is leased to
        another owner (a live lease); the caller's own leases do not hold it back."""
        ...

    async def outbox_done(self, ids: Sequence[int]) -> None:
        """Delete delivered rows (unknown ids are ignored)."""

    async def outbox_retry(self, item_id: int, next_attempt_at: float) -> None:
        """A delivery failed: clear the lease, count the attempt, wait until next_attempt_at."""

    async def outbox_release(self, owner: str) -> None:
        """Clear every lease held by owner (clean shutdown); attempts unchanged."""

    async def outbox_renew(self, item_id: int, owner: str, until: float) -> bool:
        """Extend owner's lease on one row; False when owner no longer holds it."""
        ...

    async def outbox_expire(
        self, now: float, event_for: Callable[[OutboxItem], AuditEvent] | None = None
    ) -> list[OutboxItem]:
        """Delete and return rows with expires_at <= now that no live lease holds.

        With event_for, the audit event it makes for each expired row is
        appended in the same transaction as the delete (in id order)."""
        ...

    async def outbox_counts(self) -> dict[str, int]:
        """Rows queued per account (only accounts that have some)."""
        ...

    async def outbox_summary(self) -> dict[str, tuple[int, float]]:
        """Per account that has rows: (rows queued, enqueued_at of its oldest row)."""
        ...

    async def outbox_accounts(self, now: float) -> list[str]:
        """Accounts with rows claimable at now, sorted (by any owner: an earlier row
        waiting for a retry or under a live lease holds the later ones back)."""
        ...

    # -- cluster heartbeats (times on the store's clock, so gateways' clocks never matter) --

    async def heartbeat(self, instance_id: str, forget_after: float = 3600.0) -> Heartbeat:
        """Upsert instance_id's row (started_at set on the first one, last_seen = the store's
        now), delete other rows not seen for forget_after, and return the store's now and
        every row, in one transaction."""
        ...

    async def leave(self, instance_id: str) -> None:
        """Delete instance_id's row (a clean stop: the others take its share at once)."""


def event_key(event: AuditEvent) -> BlockKey | None:
    """The block an event is about (its scope picks counterpart or account); None without a scope."""
    counterpart = {"number": event.counterpart, "account": event.account, "global": "",
                   "program": event.account}.get(event.scope)
    return None if counterpart is None else BlockKey(event.number, counterpart, event.scope)


class OperatorMixin:
    """What both backends do the same way on top of record()."""

    async def record(self, event: AuditEvent, change: BlockChange | None = None) -> tuple[int, bool]:
        raise NotImplementedError

    async def remove_block(
        self, key: BlockKey, lift_kinds: Iterable[str] = ALL_KINDS, event: AuditEvent | None = None
    ) -> bool:
        """Lift an operator's way: one admin_remove event unless the caller brings one."""
        from gateway.store.schema import operator_event

        now = time.time()
        change = BlockChange("remove", Block(key, "", "operator", now), tuple(lift_kinds))
        _, changed = await self.record(event or operator_event("admin_remove", now, key), change)
        return changed
