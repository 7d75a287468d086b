"""ping/healthy on both backends, PostgreSQL outage and recovery, migrate/schema_version."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.faultproxy import FaultProxy
from gateway.errors import StoreError
from gateway.store import migrate, schema, schema_version
from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from tests.store.conftest import Backend

LATEST = len(schema.SQLITE_MIGRATIONS)


async def test_ping_and_healthy_follow_the_last_operation(backend: Backend, store: Store) -> None:
    await store.ping()
    assert store.healthy
    await backend.raw("DROP TABLE outbox")
    with pytest.raises(StoreError):
        await store.outbox_counts()
    assert not store.healthy
    await store.ping()
    assert store.healthy
    await store.close()
    assert not store.healthy
    with pytest.raises(StoreError, match="not open"):
        await store.ping()


async def test_postgres_outage_then_recovery(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("PostgreSQL pool recovery")
    target = urlsplit(backend.dsn)
    proxy = FaultProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    dsn = target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}").geturl()
    store = PostgresStore(dsn, schema=backend.location, max_size=3, connect_timeout=2)
    backend.opened.append(store)
    async with asyncio.timeout(20):
        await store.open()
        await asyncio.gather(*(store.outbox_put("acme", b"x", 1.0, 2.0) for _ in range(6)))
        await proxy.stop()
        for _ in range(2):  # dead connection, then refused reconnect
            with pytest.raises(StoreError, match="postgresql"):
                await store.ping()
            assert not store.healthy
        await proxy.start()
        await store.ping()
        assert store.healthy
        assert await store.outbox_counts() == {"acme": 6}
        await proxy.stop()


async def test_postgres_refusing_port_fails_fast_without_password() -> None:
    store = PostgresStore("postgresql://gw:s3cret@127.0.0.1:1/test", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await store.open()
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert "cannot reach postgresql://gw:***@127.0.0.1:1/test" in message
    assert "s3cret" not in message
    assert not store.healthy
    await store.close()


async def test_migrate_from_previous_version(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(schema, "SQLITE_MIGRATIONS", schema.SQLITE_MIGRATIONS[:1])
        patch.setattr(schema, "POSTGRES_MIGRATIONS", schema.POSTGRES_MIGRATIONS[:1])
        await (await backend.open()).close()
    assert await schema_version(backend.url) == 1
    assert await migrate(backend.url) == (1, LATEST)
    assert await migrate(backend.url) == (LATEST, LATEST)
    store = await backend.open()
    assert await store.outbox_counts() == {}


async def test_migrate_refuses_newer_schema(backend: Backend, store: Store) -> None:
    await store.close()
    await backend.raw("INSERT INTO schema_version (version) VALUES (999)")
    assert await schema_version(backend.url) == 999
    with pytest.raises(StoreError, match="schema version 999 is newer"):
        await migrate(backend.url)


async def test_sqlite_schema_version_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    assert await schema_version(f"sqlite:///{path}") == 0
    assert not path.exists()
    assert await migrate(f"sqlite:///{path}") == (0, LATEST)


async def test_postgres_schema_version_unreachable_is_store_error() -> None:
    with pytest.raises(StoreError, match="cannot reach"):
        await schema_version("postgresql://gw:s3cret@127.0.0.1:1/test")
