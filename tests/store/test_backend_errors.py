"""Backend failures surface as StoreError; open_store picks the backend from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError, StoreError
from gateway.store import event_channel, mask_url, open_store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore


async def test_sqlite_unopenable_path_is_store_error(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "missing" / "dir" / "gateway.db"))
    with pytest.raises(StoreError, match="sqlite"):
        await store.open()
    await store.close()


async def test_sqlite_memory_store_works() -> None:
    store = open_store("sqlite:///:memory:")
    await store.open()
    try:
        assert await store.last_event_id() == 0
    finally:
        await store.close()


async def test_postgres_refused_connection_is_store_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    with pytest.raises(StoreError, match="postgresql"):
        await store.open()
    await store.close()


@pytest.mark.parametrize(
    "url, kind, path",
    [
        ("sqlite:///gateway.db", SqliteStore, "gateway.db"),
        ("sqlite:///data/gw.db", SqliteStore, "data/gw.db"),
        ("sqlite:////var/lib/gw.db", SqliteStore, "/var/lib/gw.db"),
        ("sqlite:///:memory:", SqliteStore, ":memory:"),
        ("postgresql://u:p@db:5432/gw", PostgresStore, None),
        ("postgres://db/gw", PostgresStore, None),
    ],
)
def test_open_store_picks_backend(url: str, kind: type, path: str | None) -> None:
    store = open_store(url)
    assert isinstance(store, kind)
    if path is not None:
        assert isinstance(store, SqliteStore) and store.path == path


@pytest.mark.parametrize(
    "url",
    ["mysql://root:s3cret@db/gw", "sqlite://host/gw.db", "sqlite:///", "gw.db", "", "s3cret"],
)
def test_open_store_rejects_without_echoing_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert "s3cret" not in str(info.value)
    assert "sqlite:///" in str(info.value)


def test_mask_url() -> None:
    assert mask_url("postgresql://gw:s3cret@db:5432/gw") == "postgresql://gw:***@db:5432/gw"
    assert mask_url("postgresql://gw@db/gw") == "postgresql://gw@db/gw"
    assert mask_url("sqlite:///gateway.db") == "sqlite:///gateway.db"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pa:ss@h/db", "postgresql://u:***@h/db"),  # split on the first ':'
        ("postgresql://u:a:b:c@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?sslmode=require&password=s3cret",
         "postgresql://u@h/db?sslmode=require&password=***"),
        ("postgresql://u:x@h/db?sslpassword=s3cret&PASSWORD=s3cret&application_name=gw",
         "postgresql://u:***@h/db?sslpassword=***&PASSWORD=***&application_name=gw"),
        ("postgresql://h/db?passwordless=1", "postgresql://h/db?passwordless=1"),
    ],
)
def test_mask_url_hides_every_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    for secret in ("pa:ss", ":b:c", "s3cret", "ss@"):
        assert secret not in mask_url(url)


def test_event_channel_is_bounded() -> None:
    assert event_channel(None) == "gateway_events"
    long = "tenant_" + "x" * 56
    channel = event_channel(long)
    assert channel.startswith("gateway_events_") and len(channel) == len("gateway_events_") + 16
    assert channel == event_channel(long) != event_channel(long[:-1])


def test_open_store_schema_query_parameter() -> None:
    store = open_store("postgresql://u:p@db:5432/gw?schema=tenant_a&sslmode=disable")
    assert isinstance(store, PostgresStore)
    assert store._schema == "tenant_a" and store.channel == event_channel("tenant_a")
    assert len(store.channel.encode()) <= 63
    assert store._dsn == "postgresql://u:p@db:5432/gw?sslmode=disable"
