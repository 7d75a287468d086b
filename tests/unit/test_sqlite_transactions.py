"""gateway.store.sqlite_conn: a failed COMMIT must not leave the connection in a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store.sqlite_conn import in_transaction, read_snapshot


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    c.execute(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
        "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    yield c
    c.close()


def test_failed_commit_rolls_back_and_the_next_transaction_works(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):  # raised by COMMIT itself
        in_transaction(conn, lambda: conn.execute("INSERT INTO child VALUES (1, 99)"))
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM child").fetchone()[0] == 0
    in_transaction(conn, lambda: conn.execute("INSERT INTO parent VALUES (99)"))
    in_transaction(conn, lambda: conn.execute("INSERT INTO child VALUES (1, 99)"))
    assert conn.execute("SELECT count(*) FROM child").fetchone()[0] == 1


def test_failed_work_rolls_back(conn: sqlite3.Connection) -> None:
    def work() -> None:
        conn.execute("INSERT INTO parent VALUES (1)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        in_transaction(conn, work)
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM parent").fetchone()[0] == 0


def test_read_snapshot_ends_its_transaction(conn: sqlite3.Connection) -> None:
    assert read_snapshot(conn, lambda: conn.execute("SELECT count(*) FROM parent").fetchone()[0]) == 0
    assert not conn.in_transaction
    with pytest.raises(sqlite3.OperationalError):
        read_snapshot(conn, lambda: conn.execute("SELECT * FROM nowhere"))
    assert not conn.in_transaction
    in_transaction(conn, lambda: conn.execute("INSERT INTO parent VALUES (1)"))
