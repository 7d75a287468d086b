"""PostgresStore: the shared store for several gateways (asyncpg).

``record()`` runs in one transaction that also takes a transaction-level
advisory lock, so event ids commit in id order and a reader tailing by id
never skips an event committed late; it notifies ``channel`` with the new id.
``listen()`` delivers those ids to a callback on a dedicated connection.
Connection handling and error mapping live in postgres_pool, the outbox
and the grouped index load in postgres_outbox.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import asyncpg

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
from gateway.store.postgres_outbox import PgOutbox
from gateway.store.postgres_packed import PgPackedLoad
from gateway.store.postgres_pool import LOCK_EVENTS

_EVENTS_SELECT = f"SELECT id, {', '.join(schema.EVENT_COLUMNS)} FROM events"
_COLUMNS = ", ".join(schema.BLOCK_COLUMNS)
_BLOCKS_SELECT = f"SELECT {_COLUMNS} FROM blocks"
_BLOCK_INSERT = (
    f"INSERT INTO blocks ({', '.join(schema.BLOCK_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6) "
    f"{schema.BLOCK_UPSERT}"
)
# import: raise the kind of present keys to the highest-ranked kind imported for them
_IMPORT_UPGRADE = f"""UPDATE blocks SET kind = i.kind, source = i.source
FROM (SELECT DISTINCT ON (number, counterpart, scope) number, counterpart, scope, kind, source
      FROM import_blocks WHERE kind <> 'optout'
      ORDER BY number, counterpart, scope, {schema.kind_rank_sql('kind')} DESC) i
WHERE (blocks.number, blocks.counterpart, blocks.scope) = (i.number, i.counterpart, i.scope)
    AND {schema.kind_rank_sql('i.kind')} > {schema.kind_rank_sql('blocks.kind')}"""
_BULK_TIMEOUT = 3600.0  # import statements: minutes for millions of rows, not command_timeout
_KEY_WHERE = "number = $1 AND counterpart = $2 AND scope = $3"
_COUNTERPART_INSERT = schema.counterpart_insert_sql("$1::text", "$2::text")
_IMPORT_COUNTERPARTS = schema.counterpart_insert_sql("i.scope", "i.counterpart").replace(
    "SELECT i.scope, i.counterpart WHERE", "SELECT DISTINCT i.scope, i.counterpart FROM import_blocks i WHERE")
_PAIR_LAST = schema.pair_last_sql(lambda i: f"${i}")
_CLARIFY_READ, _CLARIFY_OFFER, _CLARIFY_CONSUME, _CLARIFY_PURGE = schema.clarify_sql(lambda i: f"${i}")
# one statement: the store's clock read once, our row upserted, long-gone rows deleted, all rows read
_HEARTBEAT = """WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),
me AS (INSERT INTO instances (id, started_at, last_seen) SELECT $1, now, now FROM clock
       ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen
       RETURNING id, started_at, last_seen),
gone AS (DELETE FROM instances WHERE id <> $1 AND last_seen < (SELECT now FROM clock) - $2)
SELECT id, started_at, last_seen FROM me
UNION ALL
SELECT id, started_at, last_seen FROM instances
WHERE id <> $1 AND last_seen >= (SELECT now FROM clock) - $2"""
_PAIR_KINDS = """SELECT b.number, b.counterpart, b.scope, b.kind FROM blocks b
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(number, counterpart, scope)
    USING (number, counterpart, scope)"""


async def _apply(conn: Any, change: BlockChange) -> tuple[bool, bool, str]:
    """Apply change; returns (changed, blocked after, kind of the block concerned)."""
    block = change.block
    key = schema.key_row(block.key)
    if change.action == "add":
        await conn.execute(_COUNTERPART_INSERT, block.key.scope, block.key.counterpart)
        # "INSERT 0 1": inserted, or its kind raised
        if await conn.execute(_BLOCK_INSERT, *schema.block_row(block)) == "INSERT 0 1":
            return True, True, block.kind
    else:
        kind = await conn.fetchval(
            f"DELETE FROM blocks WHERE {_KEY_WHERE} AND kind = ANY($4::text[]) RETURNING kind",
            *key, list(schema.lift_tuple(change.lift_kinds)),
        )
        if kind is not None:
            return True, False, str(kind)
    found = await conn.fetchval(f"SELECT kind FROM blocks WHERE {_KEY_WHERE}", *key)
    return False, found is not None, str(found) if found is not None else block.kind


class PostgresStore(PgOutbox, PgPackedLoad, OperatorMixin):
    """The Store protocol on PostgreSQL; ``schema`` isolates tables (tests, tenants)."""

    shared = True

    # -- blocks -------------------------------------------------------------

    async def _pages(self, sql: str) -> AsyncIterator[list[Any]]:
        """Rows of sql in pages, from one consistent snapshot (a read-only cursor)."""
        async with (
            self._guard(), self._require_pool().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            cursor = await conn.cursor(sql)
            while page := await cursor.fetch(schema.PAGE_SIZE):
                yield page

    async def iter_blocks(self) -> AsyncIterator[Block]:
        async for page in self._pages(_BLOCKS_SELECT):
            for row in page:
                yield schema.block_from_row(row)

    async def block_rows(self) -> AsyncIterator[Sequence[Sequence[str]]]:
        async for page in self._pages("SELECT number, counterpart, scope, kind FROM blocks"):
            yield page

    async def get_block(self, key: BlockKey) -> Block | None:
        rows = await self._fetch(f"{_BLOCKS_SELECT} WHERE {_KEY_WHERE}", *schema.key_row(key))
        return schema.block_from_row(rows[0]) if rows else None

    async def list_blocks(
        self, limit: int = 100, offset: int = 0, number: str | None = None, *,
        where: BlockFilter | None = None,
    ) -> list[Block]:
        marks = iter(range(4, 10_000))
        conditions, params = (where or BlockFilter()).sql(lambda: f"${next(marks)}")
        rows = await self._fetch(
            f"{_BLOCKS_SELECT} WHERE ($3::text IS NULL OR number = $3){conditions} "
            "ORDER BY number, counterpart, scope LIMIT $1 OFFSET $2",
            limit, offset, number, *params,
        )
        return [schema.block_from_row(r) for r in rows]

    async def count_blocks(self) -> dict[str, int]:
        rows = await self._fetch("SELECT kind, count(*) FROM blocks GROUP BY kind")
        return {**dict.fromkeys(KINDS, 0), **{r[0]: int(r[1]) for r in rows}}

    async def counterpart_ids(self) -> list[tuple[int, str, str]]:
        rows = await self._fetch(schema.COUNTERPARTS_SELECT)
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def import_blocks(self, blocks: Iterable[Block]) -> int:
        rows = [schema.block_row(b) for b in blocks]
        async with self._guard(), self._require_pool().acquire() as conn, conn.transaction():
            await conn.execute(  # not LIKE blocks: blocks.mobile is computed (migration 9)
                f"CREATE TEMPORARY TABLE import_blocks ON COMMIT DROP AS SELECT {_COLUMNS} FROM blocks WITH NO DATA"
            )
            await conn.copy_records_to_table("import_blocks", records=rows, timeout=_BULK_TIMEOUT)
            status = await conn.execute(  # in key order: the primary key index is built faster
                f"INSERT INTO blocks ({_COLUMNS}) SELECT {_COLUMNS} FROM import_blocks "
                "ORDER BY number, counterpart, scope ON CONFLICT DO NOTHING",
                timeout=_BULK_TIMEOUT,
            )
            inserted = int(status.rsplit(" ", 1)[-1])
            await conn.execute(_IMPORT_COUNTERPARTS, timeout=_BULK_TIMEOUT)
            await conn.execute(_IMPORT_UPGRADE, timeout=_BULK_TIMEOUT)
            event = schema.operator_event("admin_import", time.time(), text=str(inserted))
            await self._insert_event(conn, event)
        return inserted

    # -- events -------------------------------------------------------------

    async def record(
        self, event: AuditEvent, change: BlockChange | None = None
    ) -> tuple[int, bool]:
        async with self._guard(), self._require_pool().acquire() as conn, conn.transaction():
            changed, blocked, kind = (
                await _apply(conn, change) if change else (False, False, "")
            )
            full = schema.complete_event(event, change, blocked, kind)
            return await self._insert_event(conn, full), changed

    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        async with self._guard(), self._require_pool().acquire() as conn, conn.transaction():
            for event in events:
                await self._insert_event(conn, schema.complete_event(event, None, False, ""))

    async def pair_state(self, number: str, counterpart: str, keys: Sequence[BlockKey]) -> PairState:
        columns = [list(c) for c in zip(*(schema.key_row(k) for k in keys), strict=True)] or [[], [], []]
        async with (
            self._guard(), self._require_pool().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            row = await conn.fetchrow(_PAIR_LAST, number, counterpart)
            found = await conn.fetch(_PAIR_KINDS, *columns)
            account = schema.account_of(keys)
            offered = await conn.fetchval(_CLARIFY_READ, number, account) if account is not None else None
        kinds = tuple((BlockKey(r[0], r[1], r[2]), str(r[3])) for r in found)
        clarify_at = float(offered) if offered is not None else 0.0
        if row is None:
            return PairState(number, counterpart, kinds=kinds, clarify_at=clarify_at)
        return PairState(number, counterpart, int(row[0]), str(row[1]), float(row[2]), str(row[3]), kinds,
                         clarify_at)

    async def record_mo(self, items: Sequence[MoItem], expect: PairState,
                        clarification: Clarification | None = None) -> list[tuple[int, bool]] | None:
        async with self._guard(), self._require_pool().acquire() as conn, conn.transaction():
            # the events lock first: the check and the writes are one step in the store's order
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_EVENTS)
            latest = await conn.fetchval(_PAIR_LAST, expect.number, expect.counterpart)
            if int(latest or 0) != expect.last_id:
                return None
            results = []
            for event, change in items:
                changed, blocked, kind = await _apply(conn, change) if change else (False, False, "")
                full = schema.complete_event(event, change, blocked, kind)
                results.append((await self._insert_event(conn, full), changed))
            if clarification is not None:
                number, account, offered_at = clarification
                if offered_at:
                    await conn.execute(_CLARIFY_PURGE, offered_at - CLARIFY_KEEP)
                    await conn.execute(_CLARIFY_OFFER, number, account, offered_at)
                else:
                    await conn.execute(_CLARIFY_CONSUME, number, account)
            return results

    async def events_after(self, event_id: int, limit: int = 1000) -> list[AuditEvent]:
        rows = await self._fetch(
            f"{_EVENTS_SELECT} WHERE id > $1 ORDER BY id LIMIT $2", event_id, limit
        )
        return [schema.event_from_row(r) for r in rows]

    async def last_event_id(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(id), 0) FROM events")
        return int(rows[0][0])

    async def events_of(self, number: str, limit: int = 100_000) -> list[AuditEvent]:
        rows = await self._fetch(f"{_EVENTS_SELECT} WHERE number = $1 ORDER BY id LIMIT $2", number, limit)
        return [schema.event_from_row(r) for r in rows]

    async def events_between(self, since: float, until: float) -> AsyncIterator[AuditEvent]:
        sql = f"{_EVENTS_SELECT} WHERE id > $1 AND at >= $2 AND at < $3 ORDER BY id LIMIT $4"
        after = 0
        while True:
            rows = await self._fetch(sql, after, since, until, schema.PAGE_SIZE)
            for row in rows:
                yield schema.event_from_row(row)
            if len(rows) < schema.PAGE_SIZE:
                return
            after = rows[-1][0]

    async def purge_events(self, before: float) -> int:
        return await self._execute("DELETE FROM events WHERE at < $1", before)

    async def listen(
        self, callback: Callable[[int], None], on_lost: Callable[[], None] | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Call callback(event_id) for every event recorded by any gateway.

        Runs on its own connection; on_lost is called if that connection
        drops (then catch up with events_after and listen again). Returns an
        async function that stops listening and closes the connection.
        """
        async with self._guard():
            conn = await asyncpg.connect(self._dsn, **self._connect_args())

        def deliver(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            callback(int(payload))

        def lost(_conn: object) -> None:
            if on_lost is not None:
                on_lost()

        try:
            async with self._guard():
                await conn.add_listener(self.channel, deliver)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(lost)

        async def stop() -> None:
            conn.remove_termination_listener(lost)
            async with self._guard():
                await conn.close()

        return stop

    # -- receipt routes -----------------------------------------------------

    async def put_receipt_routes(self, routes: Iterable[tuple[str, str, float]]) -> None:
        rows = list({r[0]: r for r in routes}.values())  # last one wins
        if not rows:
            return
        async with self._guard():
            await self._require_pool().execute(
                "INSERT INTO receipt_routes (message_id, account, expires_at) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) "
                "ON CONFLICT (message_id) DO UPDATE SET account = excluded.account, "
                "expires_at = excluded.expires_at",
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            )

    async def get_receipt_route(self, message_id: str) -> str | None:
        rows = await self._fetch(
            "SELECT account FROM receipt_routes WHERE message_id = $1 AND expires_at > $2",
            message_id, time.time(),
        )
        return str(rows[0][0]) if rows else None

    async def purge_receipt_routes(self, now: float) -> int:
        return await self._execute("DELETE FROM receipt_routes WHERE expires_at <= $1", now)

    # -- cluster heartbeats ---------------------------------------------------

    async def heartbeat(self, instance_id: str, forget_after: float = 3600.0) -> Heartbeat:
        rows = await self._fetch(_HEARTBEAT, instance_id, forget_after)
        instances = tuple(InstanceRow(str(r[0]), float(r[1]), float(r[2])) for r in rows)
        return Heartbeat(instances[0].last_seen, instances)  # our row comes first

    async def leave(self, instance_id: str) -> None:
        await self._execute("DELETE FROM instances WHERE id = $1", instance_id)
