"""PostgreSQL for tests: the DSN, reachability (skip, or fail under CI=true), unique schemas.

Usage from any test directory::

    from tests.pg import pg_dsn_or_skip, unique_schema, drop_schema
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

from gateway.store import mask_url

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT = 3.0
_unreachable: dict[str, str] = {}  # dsn -> reason, cached per process


def pg_dsn() -> str:
    return os.environ.get("GATEWAY_TEST_DATABASE_URL") or DEFAULT_DSN


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


async def pg_dsn_or_skip() -> str:
    """The test DSN if the server answers; else skip (or fail when CI=true)."""
    dsn = pg_dsn()
    reason = _unreachable.get(dsn)
    if reason is None:
        try:
            conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = _unreachable[dsn] = (
                f"PostgreSQL at {mask_url(dsn)} unreachable ({type(exc).__name__}: {exc}); "
                "set GATEWAY_TEST_DATABASE_URL"
            )
        else:
            await conn.close()
            return dsn
    if in_ci():
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


def unique_schema(prefix: str = "test") -> str:
    """A schema name no concurrent test run will pick."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:12]}"


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
