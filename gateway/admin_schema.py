"""`gateway migrate` helper: the schema version a database is at, without migrating it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.errors import StoreError
from gateway.store import mask_url

_SQLITE_PREFIX = "sqlite:///"
_QUERY = "SELECT coalesce(max(version), 0) FROM schema_version"


def _sqlite_version(path: str) -> int:
    if path == ":memory:" or not Path(path).exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc
    try:
        return int(conn.execute(_QUERY).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # no schema_version table yet
    finally:
        conn.close()


async def _postgres_version(url: str) -> int:
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=5.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"postgresql {mask_url(url)}: {type(exc).__name__}: {exc}") from exc
    try:
        return int(await conn.fetchval(_QUERY))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def schema_version(url: str) -> int:
    """The version recorded in schema_version (0 when the database is empty or absent)."""
    url = url.strip()
    if url.startswith(_SQLITE_PREFIX):
        return await asyncio.to_thread(_sqlite_version, url[len(_SQLITE_PREFIX):])
    return await _postgres_version(url)
