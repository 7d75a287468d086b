"""Cluster heartbeat rows on both backends: upsert, every row read back, leave, forget."""

from __future__ import annotations

from gateway.store.base import Store
from tests.store.conftest import Backend


async def test_heartbeat_upserts_and_reads_every_row(backend: Backend, store: Store) -> None:
    other = await backend.open()
    first = await store.heartbeat("a")
    assert [row.id for row in first.instances] == ["a"]
    row = first.instances[0]
    assert row.started_at == row.last_seen == first.now
    await other.heartbeat("b")
    again = await store.heartbeat("a")
    rows = {r.id: r for r in again.instances}
    assert set(rows) == {"a", "b"}
    assert rows["a"].started_at == row.started_at  # started is kept
    assert rows["a"].last_seen == again.now >= first.now
    assert rows["b"].last_seen <= again.now


async def test_leave_deletes_only_its_row(backend: Backend, store: Store) -> None:
    other = await backend.open()
    await store.heartbeat("a")
    await other.heartbeat("b")
    await other.leave("b")
    await other.leave("nobody")
    assert [row.id for row in (await store.heartbeat("a")).instances] == ["a"]


async def test_rows_gone_long_are_forgotten(backend: Backend, store: Store) -> None:
    seen = (await store.heartbeat("a")).now - 120  # two minutes silent: stale, not yet forgotten
    await backend.raw(f"INSERT INTO instances (id, started_at, last_seen) VALUES ('dead', {seen}, {seen})")
    assert {r.id for r in (await store.heartbeat("a")).instances} == {"a", "dead"}
    assert [r.id for r in (await store.heartbeat("a", forget_after=60.0)).instances] == ["a"]
    assert {r.id for r in (await store.heartbeat("a")).instances} == {"a"}  # deleted, not just hidden


def test_only_postgresql_is_shared(backend: Backend) -> None:
    from gateway.store.postgres import PostgresStore
    from gateway.store.sqlite import SqliteStore

    assert (SqliteStore.shared, PostgresStore.shared) == (False, True)
