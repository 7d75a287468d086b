"""The store contract fixture: every test in this directory runs on each backend."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema


class Backend:
    """Makes stores on one isolated database (file or schema) and cleans up."""

    def __init__(self, name: str, location: str, dsn: str = "") -> None:
        self.name = name
        self.location = location  # sqlite file path or postgres schema
        self.dsn = dsn
        self.opened: list[Store] = []

    @property
    def url(self) -> str:
        """GATEWAY_DATABASE_URL for this database (the schema rides in the query string)."""
        if self.name == "sqlite":
            return f"sqlite:///{self.location}"
        return f"{self.dsn}{'&' if '?' in self.dsn else '?'}schema={self.location}"

    async def open(self) -> Store:
        store: Store
        if self.name == "sqlite":
            store = SqliteStore(self.location)
        else:
            store = PostgresStore(self.dsn, schema=self.location, channel=self.location)
        self.opened.append(store)
        await store.open()
        return store

    async def raw(self, sql: str) -> None:
        """Run SQL directly on the database, behind the store's back."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.location, isolation_level=None)
            try:
                conn.execute(sql)
            finally:
                conn.close()
            return
        pg = await asyncpg.connect(self.dsn, server_settings={"search_path": self.location})
        try:
            await pg.execute(sql)
        finally:
            await pg.close()

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """A query's rows read directly from the database, behind the store's back."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.location, isolation_level=None)
            try:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
            finally:
                conn.close()
        pg = await asyncpg.connect(self.dsn, server_settings={"search_path": self.location})
        try:
            return [tuple(r) for r in await pg.fetch(sql)]
        finally:
            await pg.close()

    async def cleanup(self) -> None:
        for store in self.opened:
            await store.close()
        if self.name == "postgres":
            await drop_schema(self.dsn, self.location)


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", str(tmp_path / "gateway.db"))
    else:
        b = Backend("postgres", unique_schema("store"), await pg_dsn_or_skip())
    try:
        yield b
    finally:
        await b.cleanup()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()
