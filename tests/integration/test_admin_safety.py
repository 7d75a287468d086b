"""Operator CLI safety through the console script: exports never clobber the database or an
existing file, exported cells cannot run as spreadsheet formulas, purges respect the retention
floor and leave an audit record, and data files are owner-only whatever the umask."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import Simulator
from gateway.store.base import AuditEvent
from gateway.store.sqlite import SqliteStore
from tests.integration.conftest import GatewayFactory

MOBILE, BUSINESS = "+14155550123", "+14155550100"
HEADER = "number,counterpart,scope,kind,source,created_at"
EVIL = ['=HYPERLINK("http://evil.example","STOP")', "@SUM(1+1) stop", "-2+3 STOP"]


async def _gateway(cwd: Path, db: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = f"sqlite:///{db}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, env=env, cwd=cwd,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def _one_block(tmp_path: Path) -> Path:
    db = tmp_path / "gateway.db"
    code, _, err = await _gateway(tmp_path, "gateway.db", "blocks", "add", MOBILE, "--counterpart", BUSINESS)
    assert (code, err) == (0, "")
    return db


async def _block_count(tmp_path: Path) -> int:
    code, out, err = await _gateway(tmp_path, "gateway.db", "blocks", "list", "--format", "csv")
    assert code == 0, err
    return len(list(csv.DictReader(io.StringIO(out))))


# -- exports never overwrite the database, nor a file without --force ----------------------


async def test_export_refuses_the_database_its_wal_and_shm(tmp_path: Path) -> None:
    db = await _one_block(tmp_path)
    before = db.read_bytes()
    (tmp_path / "link.csv").symlink_to(db)
    attempts = [
        ("blocks", "export", "gateway.db"),  # the report's case: relative, as the URL is
        ("blocks", "export", str(db), "--force"),
        ("blocks", "export", "./sub/../gateway.db", "--force"),
        ("blocks", "export", "link.csv", "--force"),  # a symlink to it
        ("blocks", "export", "gateway.db-wal", "--force"),
        ("events", "export", "--output", "gateway.db-shm", "--force"),
        ("events", "export", "--output", "gateway.db", "--force", "--format", "jsonl"),
    ]
    (tmp_path / "sub").mkdir()
    for args in attempts:
        code, out, err = await _gateway(tmp_path, "gateway.db", *args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and "database file" in err, (args, err)
        assert out == ""
    assert db.read_bytes() == before
    assert await _block_count(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.db", "link.csv", "sub"]


async def test_export_refuses_an_existing_file_unless_forced(tmp_path: Path, umask_022: None) -> None:
    await _one_block(tmp_path)
    target = tmp_path / "blocks.csv"
    target.write_text("keep me\n")
    code, _, err = await _gateway(tmp_path, "gateway.db", "blocks", "export", str(target))
    assert code == 2 and err.strip() == f"error: {target}: file exists (--force replaces it)"
    assert target.read_text() == "keep me\n"
    code, _, err = await _gateway(tmp_path, "gateway.db", "events", "export", "--output", str(target))
    assert code == 2 and "file exists" in err and target.read_text() == "keep me\n"

    code, _, err = await _gateway(tmp_path, "gateway.db", "blocks", "export", str(target), "--force")
    assert code == 0, err
    assert target.read_text().splitlines() == [HEADER, f"{MOBILE},{BUSINESS},number,admin,operator,"
                                               + target.read_text().splitlines()[1].rsplit(",", 1)[1]]
    assert _mode(target) == 0o600  # replaced by a file of ours, not written into the old one

    fresh = tmp_path / "events.jsonl"
    code, _, err = await _gateway(tmp_path, "gateway.db", "events", "export", "--output", str(fresh),
                                  "--format", "jsonl")
    assert code == 0, err
    assert [json.loads(line)["op"] for line in fresh.read_text().splitlines()] == ["admin_add"]
    assert _mode(fresh) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


async def test_export_to_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    await _one_block(tmp_path)
    code, _, err = await _gateway(tmp_path, "gateway.db", "blocks", "export", "nowhere/blocks.csv")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err


# -- CSV formula injection ---------------------------------------------------------------


async def test_mo_text_is_exported_safe_for_spreadsheets(make_gateway: GatewayFactory, sim: Simulator,
                                                         tmp_path: Path) -> None:
    gateway = await make_gateway()
    assert gateway.store is not None
    for text in EVIL:
        assert await sim.inject_mo(MOBILE[1:], BUSINESS[1:], text) == 0
    async with asyncio.timeout(10):
        while len([e for e in await gateway.store.events_after(0) if e.text in EVIL]) < len(EVIL):
            await asyncio.sleep(0.02)
    code, out, err = await _gateway(tmp_path, str(tmp_path / "gateway.db"), "events", "export")
    assert code == 0, err
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["text"]]
    assert sorted(r["text"] for r in rows) == sorted(f"'{t}" for t in EVIL)
    for row in rows:
        assert row["number"] == MOBILE and row["counterpart"] == BUSINESS  # E.164 as it is
        assert float(row["at"]) > 0 and row["at_iso"].endswith("Z")
    code, out, _ = await _gateway(tmp_path, str(tmp_path / "gateway.db"), "events", "export",
                                  "--format", "jsonl")
    assert sorted(e["text"] for e in map(json.loads, out.splitlines()) if e["text"]) == sorted(EVIL)


async def test_event_fields_and_block_source_are_escaped(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    store = SqliteStore(str(db))
    await store.open()
    try:
        await store.record(AuditEvent(at=1_700_000_000.0, op="stop", number="-2+3", counterpart="@x",
                                      account="acme", text="\tcmd", reply_text="\r=1", rule="+1"))
    finally:
        await store.close()
    code, out, err = await _gateway(tmp_path, "gateway.db", "events", "export", "--since", "0")
    assert code == 0, err
    (row,) = csv.DictReader(io.StringIO(out))
    assert (row["number"], row["counterpart"], row["text"], row["reply_text"], row["rule"]) == (
        "'-2+3", "'@x", "'\tcmd", "'\r=1", "'+1")
    assert row["at"] == "1700000000.0" and row["account"] == "acme"

    body = f"{HEADER}\n{MOBILE},,global,admin,=HYPERLINK(\"http://evil.example\"),\n"
    code, _, err = await _gateway(tmp_path, "gateway.db", "blocks", "import", "-", stdin=body)
    assert code == 0, err
    code, out, _ = await _gateway(tmp_path, "gateway.db", "blocks", "export")
    (block,) = csv.DictReader(io.StringIO(out))
    assert block["source"] == "'=HYPERLINK(\"http://evil.example\")" and block["number"] == MOBILE
    code, listed, _ = await _gateway(tmp_path, "gateway.db", "blocks", "list", "--format", "csv")
    assert listed == out
    other = tmp_path / "other"
    other.mkdir()
    code, _, err = await _gateway(other, "other.db", "blocks", "import", "-", stdin=out)
    assert code == 0 and "inserted 1" in err
    code, again, _ = await _gateway(other, "other.db", "blocks", "export")
    assert again == out  # the leading ' is read back off: a round trip keeps the source


# -- purge: retention floor and an audit record -------------------------------------------


async def test_purge_keeps_the_retention_floor_and_is_audited(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    store = SqliteStore(str(db))
    await store.open()
    try:
        for at in (1_000_000_000.0, 1_700_000_000.0):  # 2001, and 2023 (inside five years)
            await store.record(AuditEvent(at=at, op="stop", number=MOBILE, text="STOP"))
    finally:
        await store.close()
    for args in (("--before", "2099-01-01"), ("--older-than-days", "30"), ("--before", "1700000001")):
        code, out, err = await _gateway(tmp_path, "gateway.db", "events", "purge", *args)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (args, err)
        assert "events_retention_days" in err and "--force" in err
    code, out, err = await _gateway(tmp_path, "gateway.db", "events", "export", "--format", "jsonl")
    assert [e["op"] for e in map(json.loads, out.splitlines())] == ["stop", "stop"]

    code, out, err = await _gateway(tmp_path, "gateway.db", "events", "purge", "--before", "2010-01-01")
    assert code == 0 and "purged 1 events" in out, err
    code, out, err = await _gateway(tmp_path, "gateway.db", "events", "purge", "--before", "1700000001",
                                    "--force")
    assert code == 0 and "purged 1 events" in out, err
    code, out, _ = await _gateway(tmp_path, "gateway.db", "events", "export", "--format", "jsonl")
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["op"], e["source"]) for e in events] == [("purge", "operator"), ("purge", "operator")]
    assert events[0]["text"] == "before=2010-01-01T00:00:00.000Z count=1"
    assert events[1]["text"] == "before=2023-11-14T22:13:21.000Z count=1 forced"


# -- file modes ------------------------------------------------------------------------------


async def test_database_wal_and_shm_are_owner_only(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "gateway.db"
    store = SqliteStore(str(db))
    await store.open()
    try:
        await store.record(AuditEvent(at=1.0, op="stop", number=MOBILE, text="STOP"))
        files = [db, tmp_path / "gateway.db-wal", tmp_path / "gateway.db-shm"]
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        await store.close()
    cli_db = tmp_path / "cli" / "gateway.db"
    cli_db.parent.mkdir()
    code, _, err = await _gateway(cli_db.parent, "gateway.db", "migrate")
    assert code == 0, err
    assert _mode(cli_db) == 0o600


async def test_an_existing_shared_database_is_reported(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "gateway.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    store = SqliteStore(str(db))
    with caplog.at_level("WARNING", logger="gateway.store.sqlite_conn"):
        await store.open()
        await store.close()
    assert [(r.getMessage(), getattr(r, "mode", None)) for r in caplog.records] == [
        ("database_file_not_private", "0644")]
    assert _mode(db) == 0o644  # reported, not changed behind the operator's back
