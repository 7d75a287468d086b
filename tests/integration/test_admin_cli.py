"""Operator CLI: `gateway blocks ...` and `gateway events ...` as operators run them
(subprocess, SQLite file), and the same commands through gateway.admin on PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import admin
from gateway.admin_rows import RowDefaults
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

MOBILE, BUSINESS = "+14155550123", "+14155550100"
HEADER = "number,counterpart,scope,kind,source,created_at"


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = f"sqlite:///{db}"
    env.update(extra)
    return env


async def _gateway(db: Path, *args: str, stdin: str | None = None, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, env=_env(db, **env),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else b""), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _csv(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out)))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


# -- the console script on SQLite ---------------------------------------------


async def test_add_list_remove_round_trip(db: Path) -> None:
    code, out, err = await _gateway(db, "blocks", "add", MOBILE, "--counterpart", BUSINESS)
    assert (code, err) == (0, "")
    assert "blocked +14155550123" in out and "kind admin" in out
    code, out, _ = await _gateway(db, "blocks", "add", "(415) 555-0124", "--scope", "global", "--kind", "optout")
    assert code == 0 and "+14155550124" in out
    code, out, _ = await _gateway(db, "blocks", "list", "--format", "csv")
    rows = _csv(out)
    assert [(r["number"], r["counterpart"], r["scope"], r["kind"], r["source"]) for r in rows] == [
        (MOBILE, BUSINESS, "number", "admin", "operator"),
        ("+14155550124", "", "global", "optout", "operator"),
    ]
    code, out, _ = await _gateway(db, "blocks", "list", "--number", "+14155550124")
    assert code == 0 and out.splitlines()[0].split() == HEADER.split(",")
    assert len(out.splitlines()) == 2
    code, out, _ = await _gateway(db, "blocks", "remove", MOBILE, "--counterpart", BUSINESS)
    assert code == 0 and out.startswith("lifted")
    code, out, _ = await _gateway(db, "blocks", "list", "--format", "csv")
    assert [r["number"] for r in _csv(out)] == ["+14155550124"]
    code, out, _ = await _gateway(db, "events", "export", "--format", "jsonl")
    ops = [(e["op"], e["number"], e["block_state"]) for e in map(json.loads, out.splitlines())]
    assert ops == [("admin_add", MOBILE, "blocked"), ("admin_add", "+14155550124", "blocked"),
                   ("admin_remove", MOBILE, "unblocked")]


async def test_usage_and_validation_errors_exit_2(db: Path) -> None:
    code, _, err = await _gateway(db, "blocks", "add", "555", "--scope", "global")
    assert code == 2 and err.strip() == "error: number '555': not an E.164 number"
    code, _, err = await _gateway(db, "blocks", "add", MOBILE, "--scope", "number")
    assert code == 2 and "counterpart" in err and len(err.strip().splitlines()) == 1
    code, _, err = await _gateway(db, "events", "export", "--since", "yesterday")
    assert code == 2 and "--since 'yesterday'" in err


async def test_store_failure_exit_1_without_password(db: Path) -> None:
    url = "postgresql://gw:s3cretpw@127.0.0.1:1/gateway"
    code, out, err = await _gateway(db, "blocks", "list", "--database-url", url)
    assert code == 1 and out == ""
    assert err.startswith("store error") and "s3cretpw" not in err and "***" in err


async def test_import_with_bad_rows_loads_nothing(db: Path) -> None:
    lines = [HEADER, f"+14155550001,{BUSINESS},number,optout,import,2024-05-01T12:00:00Z",
             "555,,global,admin,import,",
             "+14155550002,,galaxy,admin,import,",
             "+14155550003,,global,admin,import,yesterday",
             "+14155550004,,number,admin,import,",
             "+14155550005,,global,admin,import,1714564800"]
    code, _, err = await _gateway(db, "blocks", "import", "-", stdin="\n".join(lines) + "\n")
    assert code == 2
    assert "line 3: number '555': not an E.164 number" in err
    assert "line 4: scope 'galaxy'" in err and "line 5: created_at 'yesterday'" in err
    assert "line 6: counterpart: required for scope number" in err
    assert "rows read 6, valid 2, invalid 4, inserted 0" in err and "nothing loaded" in err
    code, out, _ = await _gateway(db, "blocks", "list", "--format", "csv")
    assert _csv(out) == []

    path = db.parent / "blocks.csv"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = await _gateway(db, "blocks", "import", str(path), "--partial")
    assert code == 0 and "inserted 2, already present 0" in err
    code, out, _ = await _gateway(db, "blocks", "list", "--format", "csv")
    rows = _csv(out)
    assert [(r["number"], r["created_at"]) for r in rows] == [
        ("+14155550001", "2024-05-01T12:00:00.000Z"), ("+14155550005", "2024-05-01T12:00:00.000Z")]


async def test_import_lists_at_most_50_bad_rows(db: Path) -> None:
    body = HEADER + "\n" + "".join(f"12{i},,global,admin,import,\n" for i in range(60))
    code, _, err = await _gateway(db, "blocks", "import", "-", "--dry-run", stdin=body)
    assert code == 2
    assert sum(line.startswith("line ") for line in err.splitlines()) == 50
    assert "... and 10 more invalid rows" in err


async def test_export_import_round_trip(db: Path, tmp_path: Path) -> None:
    body = HEADER + "\n" + "".join(
        f"+1415555{i:04d},{BUSINESS},number,{('optout', 'carrier', 'admin')[i % 3]},import,{1714564800 + i}\n"
        for i in range(300))
    code, _, err = await _gateway(db, "blocks", "import", "-", stdin=body)
    assert code == 0 and "inserted 300" in err
    exported = tmp_path / "export.csv"
    code, _, err = await _gateway(db, "blocks", "export", str(exported))
    assert code == 0 and "exported 300 blocks" in err
    other = tmp_path / "other.db"
    code, _, err = await _gateway(other, "blocks", "import", str(exported))
    assert code == 0 and "inserted 300, already present 0" in err
    code, again, _ = await _gateway(other, "blocks", "export")
    assert again == exported.read_text()
    code, _, err = await _gateway(other, "blocks", "import", str(exported))
    assert "inserted 0, already present 300" in err


async def test_events_export_filters_csv_and_jsonl(db: Path) -> None:
    store = SqliteStore(str(db))
    await store.open()
    try:
        for i, at in enumerate((1_700_000_000.0, 1_700_000_100.0, 1_700_000_200.0)):
            await store.record(AuditEvent(at=at, op="stop", number=f"+1415555000{i}", text="STOP"))
    finally:
        await store.close()
    since, until = "2023-11-14T22:14:20Z", "1700000200"  # 1700000060 <= at < 1700000200
    code, out, _ = await _gateway(db, "events", "export", "--since", since, "--until", until)
    rows = _csv(out)
    assert code == 0 and [r["number"] for r in rows] == ["+14155550001"]
    assert rows[0]["at"] == "1700000100.0" and rows[0]["text"] == "STOP" and "reply_message_id" in rows[0]
    out_file = db.parent / "events.jsonl"
    code, _, _ = await _gateway(db, "events", "export", "--since", "1700000000", "--format", "jsonl",
                                "--output", str(out_file))
    events = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [e["at"] for e in events] == [1_700_000_000.0, 1_700_000_100.0, 1_700_000_200.0]
    assert set(events[0]) >= {"id", "op", "number", "data_coding", "block_state", "kind"}
    code, out, _ = await _gateway(db, "events", "purge", "--before", "1700000150", "--force")
    assert code == 0 and "purged 2 events" in out


async def test_migrate_reports_versions(db: Path) -> None:
    code, out, _ = await _gateway(db, "migrate")
    assert code == 0 and out.startswith("schema version 0 -> ")
    code, again, _ = await _gateway(db, "migrate")
    latest = out.split()[-1]
    assert again.strip() == f"schema version {latest} -> {latest}"


# -- gateway.admin on each backend ------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(str(tmp_path / "api.db"))
        await s.open()
        yield s
        await s.close()
        return
    dsn, schema = await pg_dsn_or_skip(), unique_schema("admin")
    s = PostgresStore(dsn, schema=schema, channel=schema)
    try:
        await s.open()
        yield s
    finally:
        await s.close()
        await drop_schema(dsn, schema)


async def test_admin_block_is_never_lifted_by_start(store: Store) -> None:
    await admin.blocks_add(store, MOBILE, counterpart=BUSINESS, out=io.StringIO())
    key = BlockKey(MOBILE, BUSINESS, "number")
    start = AuditEvent(at=1.0, op="start", source="keyword")
    lifted = await store.record(start, BlockChange("remove", Block(key, "optout", "keyword", 1.0),
                                                   lift_kinds=("optout", "carrier")))
    assert lifted[1] is False
    assert not await store.remove_block(key, lift_kinds=("optout", "carrier"))
    block = await store.get_block(key)
    assert block is not None and block.kind == "admin"
    out = io.StringIO()
    await admin.blocks_remove(store, MOBILE, counterpart=BUSINESS, out=out)
    assert out.getvalue().startswith("lifted") and await store.get_block(key) is None


async def test_import_export_events_through_api(store: Store) -> None:
    good = "".join(f"+1415555{i:04d},{BUSINESS},number,optout,import,{1714564800 + i}\n" for i in range(50))
    bad = HEADER + "\n" + good + "+1,,global,admin,import,\n"
    err = io.StringIO()
    code, report = await admin.blocks_import(store, io.StringIO(bad), RowDefaults("number"), "US", err=err)
    assert code == 2 and report.inserted == 0 and "line 52: number '+1'" in err.getvalue()
    assert await store.count_blocks() == {"optout": 0, "carrier": 0, "admin": 0}
    code, report = await admin.blocks_import(store, io.StringIO(bad), RowDefaults("number"), "US",
                                             partial=True, err=err)
    assert (code, report.inserted) == (0, 50)
    exported = io.StringIO()
    await admin.blocks_export(store, exported, err=io.StringIO())
    rows = _csv(exported.getvalue())
    assert len(rows) == 50 and rows[0]["created_at"] == "2024-05-01T12:00:00.000Z"
    events = io.StringIO()
    await admin.events_export(store, 0.0, 1e12, "jsonl", events, err=io.StringIO())
    ops = [json.loads(line)["op"] for line in events.getvalue().splitlines()]
    assert ops == ["admin_import"]


async def test_admin_add_over_optout_makes_it_admin(store: Store) -> None:
    key = BlockKey(MOBILE, BUSINESS, "number")
    stop = AuditEvent(at=1.0, op="stop", source="keyword")
    await store.record(stop, BlockChange("add", Block(key, "optout", "keyword", 1.0)))
    out = io.StringIO()
    await admin.blocks_add(store, MOBILE, counterpart=BUSINESS, out=out)
    assert "kind admin" in out.getvalue()
    block = await store.get_block(key)
    assert block is not None and (block.kind, block.source) == ("admin", "operator")
    start = AuditEvent(at=2.0, op="start", source="keyword")
    _, lifted = await store.record(start, BlockChange("remove", Block(key, "optout", "keyword", 2.0),
                                                      lift_kinds=("optout", "carrier")))
    assert not lifted and await store.get_block(key) == block
    out = io.StringIO()
    await admin.blocks_add(store, MOBILE, counterpart=BUSINESS, kind="carrier", out=out)
    assert "already blocked" in out.getvalue() and "kind admin: unchanged" in out.getvalue()


async def test_short_code_counterpart_add_remove_and_round_trip(store: Store) -> None:
    key = BlockKey(MOBILE, "12345", "number")  # a STOP sent to short code 12345, as the gateway keys it
    stop = AuditEvent(at=1.0, op="stop", source="keyword")
    await store.record(stop, BlockChange("add", Block(key, "optout", "keyword", 1.0)))
    exported = io.StringIO()
    await admin.blocks_export(store, exported, err=io.StringIO())
    assert _csv(exported.getvalue())[0]["counterpart"] == "12345"
    out = io.StringIO()
    await admin.blocks_remove(store, MOBILE, counterpart="12345", out=out)
    assert out.getvalue().startswith("lifted") and await store.get_block(key) is None
    err = io.StringIO()
    code, report = await admin.blocks_import(store, io.StringIO(exported.getvalue()),
                                             RowDefaults("number"), "US", err=err)
    assert (code, report.invalid, report.inserted) == (0, 0, 1), err.getvalue()
    block = await store.get_block(key)
    assert block is not None and block.kind == "optout"
    await admin.blocks_add(store, "+14155550124", counterpart="123", out=io.StringIO())
    assert (await store.get_block(BlockKey("+14155550124", "123", "number"))) is not None
    for bad in ("12", "12a45", "+12345"):  # not a short code, not E.164
        with pytest.raises(admin.InputError):
            await admin.blocks_add(store, MOBILE, counterpart=bad, out=io.StringIO())


async def test_purge_records_its_own_event(store: Store) -> None:
    await store.record(AuditEvent(at=1_000_000_000.0, op="stop", number=MOBILE, text="STOP"))
    out = io.StringIO()
    assert await admin.events_purge(store, 1_000_000_001.0, out) == 0
    assert out.getvalue().startswith("purged 1 events")
    events = [e async for e in store.events_between(0.0, 1e12)]
    assert [(e.op, e.source, e.text) for e in events] == [
        ("purge", "operator", "before=2001-09-09T01:46:41.000Z count=1")]
