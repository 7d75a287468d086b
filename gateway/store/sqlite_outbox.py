"""SQLite: the durable outbox and the grouped block load.

One connection and BEGIN IMMEDIATE serialise claims among the processes
sharing the file, so a claim's select-then-lease is atomic.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence

from gateway.store import schema
from gateway.store.base import AuditEvent, BlockGroup, OutboxItem
from gateway.store.sqlite_conn import SqliteConnection, in_transaction, read_snapshot

GROUP_ROWS = 1 << 18  # blocks per grouped chunk
EVENT_INSERT = (
    f"INSERT INTO events ({', '.join(schema.EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(schema.EVENT_COLUMNS))})"
)
# Per-account order: a row is claimable only before the account's first row that waits for a
# retry or is leased to another owner (:owner '' in outbox_accounts: any live lease); that first
# row is found once per account, not by a NOT EXISTS per row (O(n²) on a long queue).
_BEFORE_FIRST_BLOCKED = (
    "id < COALESCE((SELECT min(id) FROM outbox WHERE account = :account AND "
    "(next_attempt_at > :now OR (locked_until > :now AND locked_by <> :owner))), 9223372036854775807)"
)
_ACCOUNTS = (
    "WITH blocked AS (SELECT account, min(id) AS first FROM outbox WHERE next_attempt_at > :now "
    "OR (locked_until > :now AND locked_by <> '') GROUP BY account) "
    "SELECT DISTINCT o.account FROM outbox o LEFT JOIN blocked b ON b.account = o.account "
    "WHERE o.next_attempt_at <= :now AND o.locked_until <= :now AND (b.first IS NULL OR o.id < b.first) "
    "ORDER BY o.account"
)


def _claim(
    conn: sqlite3.Connection, account: str, owner: str, now: float, lease: float, limit: int
) -> list[OutboxItem]:
    def work() -> list[OutboxItem]:
        rows = conn.execute(
            "UPDATE outbox SET locked_by = :owner, locked_until = :until WHERE id IN ("
            "SELECT id FROM outbox WHERE account = :account AND next_attempt_at <= :now "
            f"AND locked_until <= :now AND {_BEFORE_FIRST_BLOCKED} ORDER BY id LIMIT :limit) "
            f"RETURNING {schema.OUTBOX_COLUMNS}",
            {"owner": owner, "until": now + lease, "account": account, "now": now, "limit": limit},
        ).fetchall()
        return sorted((schema.outbox_item(r) for r in rows), key=lambda item: item.id)

    return in_transaction(conn, work)


def _expire(
    conn: sqlite3.Connection, now: float, event_for: Callable[[OutboxItem], AuditEvent] | None
) -> list[OutboxItem]:
    def work() -> list[OutboxItem]:
        rows = conn.execute(
            "DELETE FROM outbox WHERE expires_at <= ? AND locked_until <= ? "
            f"RETURNING {schema.OUTBOX_COLUMNS}",
            (now, now),
        ).fetchall()
        items = sorted((schema.outbox_item(r) for r in rows), key=lambda item: item.id)
        if event_for is not None:
            conn.executemany(EVENT_INSERT, [schema.event_row(event_for(item)) for item in items])
        return items

    return in_transaction(conn, work)


def _groups(conn: sqlite3.Connection, after: tuple[str, str, str]) -> list[tuple[str, ...]]:
    """One chunk, keyset-paginated on the primary key: the group rows (with
    comma-joined digits), then a last row holding the chunk's last key.

    Both statements read one snapshot (one read transaction): a block inserted
    in between cannot shift the LIMIT window and drop the chunk's last keys."""
    return read_snapshot(conn, lambda: _group_rows(conn, after))


def _group_rows(conn: sqlite3.Connection, after: tuple[str, str, str]) -> list[tuple[str, ...]]:
    chunk = (
        "SELECT number, counterpart, scope, kind FROM blocks "
        "WHERE (number, counterpart, scope) > (?, ?, ?) "
        f"ORDER BY number, counterpart, scope LIMIT {GROUP_ROWS}"
    )
    last = conn.execute(
        f"SELECT number, counterpart, scope FROM ({chunk}) ORDER BY 1 DESC, 2 DESC, 3 DESC LIMIT 1",
        after,
    ).fetchone()
    if last is None:
        return []
    rows = conn.execute(
        f"SELECT scope, counterpart, kind, group_concat(number, ',') FROM ({chunk}) "
        "WHERE instr(number, ',') = 0 GROUP BY scope, counterpart, kind",
        after,
    ).fetchall()
    return [*rows, tuple(last)]


class SqliteOutbox(SqliteConnection):
    """Outbox methods of SqliteStore."""

    async def outbox_put(self, account: str, raw: bytes, now: float, expires_at: float) -> int:
        sql = (
            "INSERT INTO outbox (account, raw, enqueued_at, expires_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        args = (account, raw, now, expires_at, now)

        def work(conn: sqlite3.Connection) -> int:
            row_id = in_transaction(conn, lambda: conn.execute(sql, args).lastrowid)
            assert row_id is not None
            return row_id

        return await self._run(work)

    async def outbox_claim(
        self, account: str, owner: str, now: float, lease: float, limit: int = 100
    ) -> list[OutboxItem]:
        return await self._run(lambda c: _claim(c, account, owner, now, lease, limit))

    async def outbox_done(self, ids: Sequence[int]) -> None:
        rows = [(i,) for i in ids]
        await self._run(
            lambda c: in_transaction(c, lambda: c.executemany("DELETE FROM outbox WHERE id = ?", rows))
        )

    async def outbox_retry(self, item_id: int, next_attempt_at: float) -> None:
        await self._write(
            "UPDATE outbox SET locked_by = '', locked_until = 0, attempts = attempts + 1, "
            "next_attempt_at = ? WHERE id = ?",
            (next_attempt_at, item_id),
        )

    async def outbox_renew(self, item_id: int, owner: str, until: float) -> bool:
        count = await self._write(
            "UPDATE outbox SET locked_until = ? WHERE id = ? AND locked_by = ?", (until, item_id, owner)
        )
        return count == 1

    async def outbox_release(self, owner: str) -> None:
        await self._write(
            "UPDATE outbox SET locked_by = '', locked_until = 0 WHERE locked_by = ?", (owner,)
        )

    async def outbox_expire(
        self, now: float, event_for: Callable[[OutboxItem], AuditEvent] | None = None
    ) -> list[OutboxItem]:
        return await self._run(lambda c: _expire(c, now, event_for))

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self._query("SELECT account, count(*) FROM outbox GROUP BY account")
        return {str(a): int(n) for a, n in rows}

    async def outbox_summary(self) -> dict[str, tuple[int, float]]:
        rows = await self._query("SELECT account, count(*), min(enqueued_at) FROM outbox GROUP BY account")
        return {str(a): (int(n), float(oldest)) for a, n, oldest in rows}

    async def outbox_accounts(self, now: float) -> list[str]:
        rows = await self._run(
            lambda c: c.execute(_ACCOUNTS, {"now": now}).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def block_groups(self) -> AsyncIterator[Sequence[BlockGroup]]:
        after: tuple[str, str, str] = ("", "", "")
        while rows := await self._run(_groups, after):
            *groups, last = rows
            after = (last[0], last[1], last[2])
            parsed = [(s, c, k, schema.mobile_array(joined)) for s, c, k, joined in groups]
            yield [g for g in parsed if len(g[3])]
