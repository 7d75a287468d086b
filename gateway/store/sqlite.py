"""SqliteStore: the embedded default store (stdlib sqlite3).

One connection, used only by one dedicated worker thread (sqlite_conn); the
outbox and the grouped index load live in sqlite_outbox. WAL journal and
``synchronous=FULL``, so a committed ``record()`` survives power loss; other
processes (the operator CLI) may write the same file, waiting up to
``busy_timeout``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from gateway.store import schema
from gateway.store.base import (
    CLARIFY_KEEP,
    KINDS,
    AuditEvent,
    Block,
    BlockChange,
    BlockFilter,
    BlockKey,
    Clarification,
    Heartbeat,
    InstanceRow,
    MoItem,
    OperatorMixin,
    PairState,
)
from gateway.store.sqlite_conn import in_transaction, read_snapshot
from gateway.store.sqlite_outbox import EVENT_INSERT as _EVENT_INSERT
from gateway.store.sqlite_outbox import SqliteOutbox

_EVENTS_SELECT = f"SELECT id, {', '.join(schema.EVENT_COLUMNS)} FROM events"
_BLOCKS_SELECT = f"SELECT {', '.join(schema.BLOCK_COLUMNS)} FROM blocks"
_BLOCK_INSERT = f"INSERT INTO blocks ({', '.join(schema.BLOCK_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"
_KEY_WHERE = "number = ? AND counterpart = ? AND scope = ?"
_COUNTERPART_INSERT = schema.counterpart_insert_sql("?1", "?2")


def _apply(conn: sqlite3.Connection, change: BlockChange) -> tuple[bool, bool, str]:
    """Apply change; returns (changed, blocked after, kind of the block concerned)."""
    block = change.block
    key = schema.key_row(block.key)
    if change.action == "add":
        conn.execute(_COUNTERPART_INSERT, (block.key.scope, block.key.counterpart))
        cursor = conn.execute(f"{_BLOCK_INSERT} {schema.BLOCK_UPSERT}", schema.block_row(block))
        if cursor.rowcount == 1:  # inserted, or its kind raised
            return True, True, block.kind
    else:
        kinds = schema.lift_tuple(change.lift_kinds)
        marks = ", ".join("?" * len(kinds))
        row = conn.execute(
            f"DELETE FROM blocks WHERE {_KEY_WHERE} AND kind IN ({marks}) RETURNING kind",
            (*key, *kinds),
        ).fetchone()
        if row is not None:
            return True, False, str(row[0])
    found = conn.execute(f"SELECT kind FROM blocks WHERE {_KEY_WHERE}", key).fetchone()
    return False, found is not None, str(found[0]) if found else block.kind


def _record_in(
    conn: sqlite3.Connection, event: AuditEvent, change: BlockChange | None
) -> tuple[int, bool]:
    """One event and its change, inside the caller's transaction."""
    changed, blocked, kind = _apply(conn, change) if change else (False, False, "")
    full = schema.complete_event(event, change, blocked, kind)
    cursor = conn.execute(_EVENT_INSERT, schema.event_row(full))
    assert cursor.lastrowid is not None
    return cursor.lastrowid, changed


def _record(
    conn: sqlite3.Connection, event: AuditEvent, change: BlockChange | None
) -> tuple[int, bool]:
    return in_transaction(conn, lambda: _record_in(conn, event, change))


_PAIR_LAST = schema.pair_last_sql(lambda i: "?")
_CLARIFY_READ, _CLARIFY_OFFER, _CLARIFY_CONSUME, _CLARIFY_PURGE = schema.clarify_sql(lambda i: "?")


def _pair_state(
    conn: sqlite3.Connection, number: str, counterpart: str, keys: Sequence[BlockKey]
) -> PairState:
    row = conn.execute(_PAIR_LAST, (number, counterpart)).fetchone()
    kinds = []
    for key in keys:
        found = conn.execute(f"SELECT kind FROM blocks WHERE {_KEY_WHERE}", schema.key_row(key)).fetchone()
        if found is not None:
            kinds.append((key, str(found[0])))
    account = schema.account_of(keys)
    offered = conn.execute(_CLARIFY_READ, (number, account)).fetchone() if account is not None else None
    clarify_at = float(offered[0]) if offered is not None else 0.0
    if row is None:
        return PairState(number, counterpart, kinds=tuple(kinds), clarify_at=clarify_at)
    return PairState(number, counterpart, int(row[0]), str(row[1]), float(row[2]), str(row[3]), tuple(kinds),
                     clarify_at)


def _record_mo(
    conn: sqlite3.Connection, items: Sequence[MoItem], expect: PairState, clarification: Clarification | None
) -> list[tuple[int, bool]] | None:
    def work() -> list[tuple[int, bool]] | None:  # BEGIN IMMEDIATE: writers one at a time
        row = conn.execute(_PAIR_LAST, (expect.number, expect.counterpart)).fetchone()
        if (int(row[0]) if row else 0) != expect.last_id:
            return None
        results = [_record_in(conn, event, change) for event, change in items]
        if clarification is not None:
            number, account, offered_at = clarification
            if offered_at:
                conn.execute(_CLARIFY_PURGE, (offered_at - CLARIFY_KEEP,))
                conn.execute(_CLARIFY_OFFER, (number, account, offered_at))
            else:
                conn.execute(_CLARIFY_CONSUME, (number, account))
        return results

    return in_transaction(conn, work)


_KIND_UPGRADE = (
    f"UPDATE blocks SET kind = ?, source = ? WHERE {_KEY_WHERE} "
    f"AND {schema.kind_rank_sql('?')} > {schema.kind_rank_sql('kind')}"
)


def _import(conn: sqlite3.Connection, blocks: Iterable[Block], at: float) -> int:
    def work() -> int:
        rows = [schema.block_row(b) for b in blocks]
        before = conn.total_changes
        conn.executemany(_BLOCK_INSERT + " ON CONFLICT DO NOTHING", rows)
        inserted = conn.total_changes - before
        conn.executemany(_COUNTERPART_INSERT, sorted({(r[2], r[1]) for r in rows}))
        # then raise the kind of keys that were present (or repeated) where a row ranks higher;
        # "optout" ranks lowest and never raises anything, so the common import costs nothing here
        conn.executemany(
            _KIND_UPGRADE,
            ((kind, source, number, counterpart, scope, kind)
             for number, counterpart, scope, kind, source, _ in rows if kind != "optout"),
        )
        event = schema.operator_event("admin_import", at, text=str(inserted))
        conn.execute(_EVENT_INSERT, schema.event_row(event))
        return inserted

    return in_transaction(conn, work)


def _heartbeat(conn: sqlite3.Connection, instance_id: str, now: float, forget_after: float) -> list[Any]:
    def work() -> list[Any]:
        conn.execute(
            "INSERT INTO instances (id, started_at, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
            (instance_id, now, now),
        )
        conn.execute("DELETE FROM instances WHERE id <> ? AND last_seen < ?", (instance_id, now - forget_after))
        return conn.execute("SELECT id, started_at, last_seen FROM instances").fetchall()

    return in_transaction(conn, work)


class SqliteStore(SqliteOutbox, OperatorMixin):
    """The Store protocol on one SQLite file (or ":memory:")."""

    shared = False  # one gateway: the whole of every limit applies (the shell sends no heartbeats)

    # -- blocks -------------------------------------------------------------

    async def _key_pages(self, columns: str) -> AsyncIterator[list[Any]]:
        """Blocks in key order, page by page (keyset pagination: no long read lock)."""
        after: tuple[str, str, str] = ("", "", "")
        sql = (
            f"SELECT {columns} FROM blocks WHERE (number, counterpart, scope) > (?, ?, ?) "
            f"ORDER BY number, counterpart, scope LIMIT {schema.PAGE_SIZE}"
        )
        while True:
            rows = await self._query(sql, after)
            if rows:
                yield rows
            if len(rows) < schema.PAGE_SIZE:
                return
            after = (rows[-1][0], rows[-1][1], rows[-1][2])

    async def iter_blocks(self) -> AsyncIterator[Block]:
        async for page in self._key_pages(", ".join(schema.BLOCK_COLUMNS)):
            for row in page:
                yield schema.block_from_row(row)

    async def block_rows(self) -> AsyncIterator[Sequence[Sequence[str]]]:
        async for page in self._key_pages("number, counterpart, scope, kind"):
            yield page

    async def get_block(self, key: BlockKey) -> Block | None:
        rows = await self._query(f"{_BLOCKS_SELECT} WHERE {_KEY_WHERE}", schema.key_row(key))
        return schema.block_from_row(rows[0]) if rows else None

    async def list_blocks(
        self, limit: int = 100, offset: int = 0, number: str | None = None, *,
        where: BlockFilter | None = None,
    ) -> list[Block]:
        conditions, params = (where or BlockFilter()).sql(lambda: "?")
        if number is not None:
            conditions, params = f" AND number = ?{conditions}", [number, *params]
        rows = await self._query(
            f"{_BLOCKS_SELECT} WHERE 1 = 1{conditions} ORDER BY number, counterpart, scope LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [schema.block_from_row(r) for r in rows]

    async def count_blocks(self) -> dict[str, int]:
        rows = await self._query("SELECT kind, count(*) FROM blocks GROUP BY kind")
        return {**dict.fromkeys(KINDS, 0), **{k: int(n) for k, n in rows}}

    async def counterpart_ids(self) -> list[tuple[int, str, str]]:
        rows = await self._query(schema.COUNTERPARTS_SELECT)
        return [(int(i), str(s), str(c)) for i, s, c in rows]

    async def import_blocks(self, blocks: Iterable[Block]) -> int:
        at = time.time()
        return await self._run(lambda c: _import(c, blocks, at))

    # -- events -------------------------------------------------------------

    async def record(
        self, event: AuditEvent, change: BlockChange | None = None
    ) -> tuple[int, bool]:
        return await self._run(lambda c: _record(c, event, change))

    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        await self._run(lambda c: in_transaction(c, lambda: [_record_in(c, e, None) for e in events]))

    async def pair_state(self, number: str, counterpart: str, keys: Sequence[BlockKey]) -> PairState:
        return await self._run(lambda c: read_snapshot(c, lambda: _pair_state(c, number, counterpart, keys)))

    async def record_mo(self, items: Sequence[MoItem], expect: PairState,
                        clarification: Clarification | None = None) -> list[tuple[int, bool]] | None:
        return await self._run(lambda c: _record_mo(c, items, expect, clarification))

    async def events_after(self, event_id: int, limit: int = 1000) -> list[AuditEvent]:
        rows = await self._query(f"{_EVENTS_SELECT} WHERE id > ? ORDER BY id LIMIT ?", (event_id, limit))
        return [schema.event_from_row(r) for r in rows]

    async def last_event_id(self) -> int:
        rows = await self._query("SELECT coalesce(max(id), 0) FROM events")
        return int(rows[0][0])

    async def events_of(self, number: str, limit: int = 100_000) -> list[AuditEvent]:
        rows = await self._query(f"{_EVENTS_SELECT} WHERE number = ? ORDER BY id LIMIT ?", (number, limit))
        return [schema.event_from_row(r) for r in rows]

    async def events_between(self, since: float, until: float) -> AsyncIterator[AuditEvent]:
        sql = f"{_EVENTS_SELECT} WHERE id > ? AND at >= ? AND at < ? ORDER BY id LIMIT ?"
        after = 0
        while True:
            rows = await self._query(sql, (after, since, until, schema.PAGE_SIZE))
            for row in rows:
                yield schema.event_from_row(row)
            if len(rows) < schema.PAGE_SIZE:
                return
            after = rows[-1][0]

    async def purge_events(self, before: float) -> int:
        return await self._write("DELETE FROM events WHERE at < ?", (before,))

    # -- receipt routes -----------------------------------------------------

    async def put_receipt_routes(self, routes: Iterable[tuple[str, str, float]]) -> None:
        sql = (
            "INSERT INTO receipt_routes (message_id, account, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (message_id) DO UPDATE SET account = excluded.account, "
            "expires_at = excluded.expires_at"
        )
        rows = list({r[0]: r for r in routes}.values())  # last one wins
        await self._run(lambda c: in_transaction(c, lambda: c.executemany(sql, rows)))

    async def get_receipt_route(self, message_id: str) -> str | None:
        rows = await self._query(
            "SELECT account FROM receipt_routes WHERE message_id = ? AND expires_at > ?",
            (message_id, time.time()),
        )
        return str(rows[0][0]) if rows else None

    async def purge_receipt_routes(self, now: float) -> int:
        return await self._write("DELETE FROM receipt_routes WHERE expires_at <= ?", (now,))

    # -- cluster heartbeats (kept for the protocol; one instance never needs them) --

    async def heartbeat(self, instance_id: str, forget_after: float = 3600.0) -> Heartbeat:
        now = time.time()
        rows = await self._run(lambda c: _heartbeat(c, instance_id, now, forget_after))
        return Heartbeat(now, tuple(InstanceRow(str(r[0]), float(r[1]), float(r[2])) for r in rows))

    async def leave(self, instance_id: str) -> None:
        await self._write("DELETE FROM instances WHERE id = ?", (instance_id,))
