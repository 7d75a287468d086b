"""The PostgreSQL connection layer: pool, migrations, error mapping, health.

Every asyncpg, OS or timeout failure becomes StoreError and marks the store
unhealthy until an operation succeeds again, except a data error (the row was
refused, the server is fine): that one leaves health as it was. A failure that means the
connection is gone (server restart, network cut) also expires the pool's
other connections, so the first call after the server is back reconnects
instead of tripping over another dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from gateway.errors import StoreError
from gateway.store import schema

LOCK_MIGRATE = 0x6761_7465_0001  # advisory lock ids ("gate")
LOCK_EVENTS = 0x6761_7465_0002
ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# connecting also raises these for DSN values asyncpg cannot use (a port out of range, a non-numeric one)
CONNECT_ERRORS = (*ERRORS, ValueError, OverflowError, TypeError)
_CONNECTION_LOST = (
    asyncpg.InterfaceError,  # includes ConnectionDoesNotExistError
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    OSError,
    TimeoutError,
)


# the statement's data was refused (class 22/23, or asyncpg could not encode an argument): the
# server is fine, so these never count against health (readiness must not flap on one bad row)
_DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.exceptions._base.DataError)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _describe(exc: BaseException, dsn: str) -> str:
    from gateway.store import mask_url

    if isinstance(exc, OSError | TimeoutError) and not isinstance(exc, asyncpg.PostgresError):
        reason = str(exc) or type(exc).__name__
        return f"postgresql: cannot reach {mask_url(dsn)}: {type(exc).__name__}: {reason}"
    return f"postgresql: {type(exc).__name__}: {exc}"


async def read_schema_version(dsn: str, schema: str | None = None, timeout: float = 5.0) -> int:
    """The schema version of the database at dsn (0: none), without migrating."""
    settings = {"search_path": schema} if schema else None
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout, server_settings=settings)
        try:
            if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
                return 0
            return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        finally:
            await conn.close()
    except CONNECT_ERRORS as exc:
        raise StoreError(_describe(exc, dsn)) from exc


class PgConnection:
    """Pool lifecycle and the small query helpers the store modules share."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        channel: str = "gateway_events",
        min_size: int = 1,
        max_size: int = 4,
        command_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self.channel = channel
        self._pool_args = {"min_size": min_size, "max_size": max_size}
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._healthy = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Map backend failures to StoreError and keep ``healthy`` current."""
        try:
            yield
        except _DATA_ERRORS as exc:
            raise StoreError(_describe(exc, self._dsn)) from exc
        except ERRORS as exc:
            self._healthy = False
            if isinstance(exc, _CONNECTION_LOST) and self._pool is not None:
                await self._pool.expire_connections()
            raise StoreError(_describe(exc, self._dsn)) from exc
        self._healthy = True

    def _connect_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "timeout": self._connect_timeout,
            "command_timeout": self._command_timeout,
        }
        if self._schema:
            args["server_settings"] = {"search_path": self._schema}
        return args

    async def open(self) -> None:
        if self._pool is not None:
            return
        async with self._guard():
            try:
                pool = await asyncpg.create_pool(self._dsn, **self._pool_args, **self._connect_args())
            except CONNECT_ERRORS as exc:
                if isinstance(exc, ERRORS):
                    raise
                raise StoreError(_describe(exc, self._dsn)) from exc
            try:
                async with pool.acquire() as conn:
                    await self._migrate(conn)
            except BaseException:
                await pool.close()
                raise
        self._pool = pool

    async def _migrate(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_MIGRATE)
            if self._schema:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self._schema)}")
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            found = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
            schema.check_version(found, len(schema.POSTGRES_MIGRATIONS))
            for version in range(found + 1, len(schema.POSTGRES_MIGRATIONS) + 1):
                for statement in schema.POSTGRES_MIGRATIONS[version - 1]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._healthy = False
        if pool is None:
            return
        try:
            async with asyncio.timeout(self._connect_timeout):
                await pool.close()
        except ERRORS:
            pool.terminate()

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._guard():
            return list(await self._require_pool().fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the row count of its status tag."""
        async with self._guard():
            status = await self._require_pool().execute(sql, *args)
        return int(status.rsplit(" ", 1)[-1])
