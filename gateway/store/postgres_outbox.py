"""PostgreSQL: the durable outbox and the grouped block load.

Claims lock candidate rows with ``FOR UPDATE SKIP LOCKED`` inside the
UPDATE that leases them, so gateways claiming at the same time never get
the same row; the lease columns (locked_by, locked_until) then keep it
theirs until done/retry/release or the lease runs out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from gateway.store import schema
from gateway.store.base import AuditEvent, BlockGroup, OutboxItem
from gateway.store.postgres_pool import LOCK_EVENTS, PgConnection

_EVENT_INSERT = (
    f"INSERT INTO events ({', '.join(schema.EVENT_COLUMNS)}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(schema.EVENT_COLUMNS) + 1))}) RETURNING id"
)


# Per-account order: a row is claimable only before the account's first row that waits for a
# retry or is leased to another owner (owner '' in outbox_accounts: any live lease). That first
# row is found once per account (an earlier NOT EXISTS per row was O(n²): 80 s at 44,000 rows).
_FIRST_BLOCKED = ("SELECT account, min(id) AS first FROM outbox WHERE next_attempt_at > $1 "
                  "OR (locked_until > $1 AND locked_by <> '') GROUP BY account")
_ACCOUNTS = (f"WITH blocked AS ({_FIRST_BLOCKED}) SELECT DISTINCT o.account FROM outbox o "
             "LEFT JOIN blocked b ON b.account = o.account WHERE o.next_attempt_at <= $1 "
             "AND o.locked_until <= $1 AND (b.first IS NULL OR o.id < b.first) ORDER BY o.account")
_BEFORE_FIRST_BLOCKED = ("id < COALESCE((SELECT min(id) FROM outbox WHERE account = $1 AND "
                         "(next_attempt_at > $3 OR (locked_until > $3 AND locked_by <> $2))), "
                         "9223372036854775807)")
_CLAIM = f"""UPDATE outbox SET locked_by = $2, locked_until = $3 + $4
WHERE id IN (
    SELECT id FROM outbox
    WHERE account = $1 AND next_attempt_at <= $3 AND locked_until <= $3
        AND {_BEFORE_FIRST_BLOCKED}
    ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED)
RETURNING {schema.OUTBOX_COLUMNS}"""
_GROUPS = """SELECT scope, counterpart, kind, string_agg(number, ',')
FROM blocks WHERE ctid >= $1::tid AND ($2::tid IS NULL OR ctid < $2::tid)
    AND strpos(number, ',') = 0
GROUP BY scope, counterpart, kind"""
GROUP_PAGES = 4096  # heap pages per grouped chunk (~250k rows of blocks)


class PgOutbox(PgConnection):
    """Outbox methods of PostgresStore."""

    async def outbox_put(self, account: str, raw: bytes, now: float, expires_at: float) -> int:
        rows = await self._fetch(
            "INSERT INTO outbox (account, raw, enqueued_at, expires_at, next_attempt_at) "
            "VALUES ($1, $2, $3, $4, $3) RETURNING id",
            account, raw, now, expires_at,
        )
        return int(rows[0][0])

    async def outbox_claim(
        self, account: str, owner: str, now: float, lease: float, limit: int = 100
    ) -> list[OutboxItem]:
        rows = await self._fetch(_CLAIM, account, owner, now, lease, limit)
        return sorted((schema.outbox_item(r) for r in rows), key=lambda item: item.id)

    async def outbox_done(self, ids: Sequence[int]) -> None:
        if ids:
            await self._execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", list(ids))

    async def outbox_retry(self, item_id: int, next_attempt_at: float) -> None:
        await self._execute(
            "UPDATE outbox SET locked_by = '', locked_until = 0, attempts = attempts + 1, "
            "next_attempt_at = $2 WHERE id = $1",
            item_id, next_attempt_at,
        )

    async def outbox_renew(self, item_id: int, owner: str, until: float) -> bool:
        count = await self._execute(
            "UPDATE outbox SET locked_until = $3 WHERE id = $1 AND locked_by = $2", item_id, owner, until
        )
        return count == 1

    async def outbox_release(self, owner: str) -> None:
        await self._execute(
            "UPDATE outbox SET locked_by = '', locked_until = 0 WHERE locked_by = $1", owner
        )

    async def _insert_event(self, conn: Any, event: AuditEvent) -> int:
        """Append event inside conn's transaction: ids commit in id order, then NOTIFY."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_EVENTS)
        event_id = int(await conn.fetchval(_EVENT_INSERT, *schema.event_row(event)))
        await conn.execute("SELECT pg_notify($1, $2)", self.channel, str(event_id))
        return event_id

    async def outbox_expire(
        self, now: float, event_for: Callable[[OutboxItem], AuditEvent] | None = None
    ) -> list[OutboxItem]:
        sql = (
            "DELETE FROM outbox WHERE expires_at <= $1 AND locked_until <= $1 "
            f"RETURNING {schema.OUTBOX_COLUMNS}"
        )
        if event_for is None:
            rows = await self._fetch(sql, now)
            return sorted((schema.outbox_item(r) for r in rows), key=lambda item: item.id)
        async with self._guard(), self._require_pool().acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql, now)
            items = sorted((schema.outbox_item(r) for r in rows), key=lambda item: item.id)
            for item in items:
                await self._insert_event(conn, event_for(item))
        return items

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT account, count(*) FROM outbox GROUP BY account")
        return {str(r[0]): int(r[1]) for r in rows}

    async def outbox_summary(self) -> dict[str, tuple[int, float]]:
        rows = await self._fetch("SELECT account, count(*), min(enqueued_at) FROM outbox GROUP BY account")
        return {str(r[0]): (int(r[1]), float(r[2])) for r in rows}

    async def outbox_accounts(self, now: float) -> list[str]:
        rows = await self._fetch(_ACCOUNTS, now)
        return [str(r[0]) for r in rows]

    # -- grouped block load -------------------------------------------------

    async def block_groups(self) -> AsyncIterator[Sequence[BlockGroup]]:
        """Chunks of heap pages (TID range scans), grouped by the server into
        one comma-joined string per (scope, counterpart, kind): Python makes
        no object per block."""
        async with (
            self._guard(), self._require_pool().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            await conn.execute("SET LOCAL enable_sort = off")  # hash the few groups
            pages = await _heap_pages(conn)
            for start in range(0, pages + 1, GROUP_PAGES):
                end = (start + GROUP_PAGES, 0) if start + GROUP_PAGES <= pages else None
                rows = await conn.fetch(_GROUPS, (start, 0), end)
                groups = [(r[0], r[1], r[2], schema.mobile_array(r[3])) for r in rows]
                yield [g for g in groups if len(g[3])]


async def _heap_pages(conn: Any) -> int:
    """Pages of blocks' heap now (the last chunk is open-ended, so a stale count is safe)."""
    return int(
        await conn.fetchval(
            "SELECT pg_relation_size('blocks') / current_setting('block_size')::bigint"
        )
    )
