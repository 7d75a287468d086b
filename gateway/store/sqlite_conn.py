"""The SQLite connection layer: one connection on one worker thread, migrations, health.

A database file it creates is mode 0600 (so are its -wal and -shm, which SQLite
creates with the database file's mode). Coroutines hand the thread work with
``run_in_executor``; every sqlite3 failure becomes StoreError and marks the
store unhealthy until an operation succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import StoreError
from gateway.store import schema

T = TypeVar("T")
log = logging.getLogger(__name__)


FILE_MODE = 0o600  # numbers and MO text: owner only, whatever the umask


def create_private(path: str) -> bool:
    """Create a missing database file empty with mode 0600 (SQLite reads an empty file as an
    empty database, and gives the -wal, -shm and -journal it creates the database file's mode).
    True when it was created; any failure is left for sqlite3.connect to report."""
    if not path or path == ":memory:":
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def _warn_if_shared(path: str) -> None:
    """An existing database keeps its mode; say so when others may read it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning("database_file_not_private", extra={"path": path, "mode": f"{mode:04o}"})


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    if not create_private(path) and path != ":memory:":
        _warn_if_shared(path)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        schema.check_version(found, len(schema.SQLITE_MIGRATIONS))
        for version in range(found + 1, len(schema.SQLITE_MIGRATIONS) + 1):
            for statement in schema.SQLITE_MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction, if SQLite has not already ended it; never hides the error."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def in_transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """work() in one write transaction (BEGIN IMMEDIATE), committed on return.

    Whatever fails, work or COMMIT (a deferred constraint, SQLITE_BUSY, a full
    disk), the transaction is rolled back so the connection can begin again.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return result


def read_snapshot(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """work() in one read transaction: all its statements see one snapshot."""
    conn.execute("BEGIN")
    try:
        result = work()
    finally:
        _rollback(conn)  # nothing to keep: ends the read transaction
    return result


def _read_version(path: str) -> int:
    if path == ":memory:" or not Path(path).exists():
        return 0
    conn = sqlite3.connect(f"file:{Path(path).absolute()}?mode=ro", uri=True)
    try:
        if conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone() is None:
            return 0
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])
    finally:
        conn.close()


async def read_schema_version(path: str) -> int:
    """The schema version of the file at path (0: none yet), without creating or migrating it."""
    try:
        return await asyncio.to_thread(_read_version, path)
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc


class SqliteConnection:
    """Thread, connection and the query helpers the store modules share."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._healthy = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")
        try:
            self._conn = await self._call(connect, self.path, self._busy_timeout)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        self._healthy = False
        if executor is None:
            return
        try:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._query("SELECT 1")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("store is not open")
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.DataError, sqlite3.IntegrityError) as exc:  # the row, not the file: health unchanged
            raise StoreError(f"sqlite: {exc}") from exc
        except sqlite3.Error as exc:
            self._healthy = False
            raise StoreError(f"sqlite: {exc}") from exc
        self._healthy = True
        return result

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(connection, *args) on the store's thread."""

        def on_thread() -> T:
            if self._conn is None:
                raise StoreError("store is not open")
            return fn(self._conn, *args)

        return await self._call(on_thread)

    async def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        args = tuple(params)
        return await self._run(lambda c: c.execute(sql, args).fetchall())

    async def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        args = tuple(params)
        return await self._run(lambda c: in_transaction(c, lambda: c.execute(sql, args).rowcount))
