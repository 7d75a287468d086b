"""The Store contract, run on every backend (see conftest.backend)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time

import pytest

from gateway.errors import StoreError
from gateway.store import open_store
from gateway.store.base import AuditEvent, Block, BlockChange, BlockFilter, BlockKey, Store
from gateway.store.index import BlockIndex
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.pg import drop_schema
from tests.store.conftest import Backend

MOBILE = "+14155550100"
LONG_CODE = "+14155550199"
NOW = 1_700_000_000.0


def key(number: str = MOBILE, counterpart: str = LONG_CODE, scope: str = "number") -> BlockKey:
    return BlockKey(number, counterpart, scope)


def block(k: BlockKey | None = None, kind: str = "optout", source: str = "keyword") -> Block:
    return Block(k or key(), kind, source, NOW)


def event(op: str = "stop", at: float = NOW, **fields: object) -> AuditEvent:
    return AuditEvent(at=at, op=op, **fields)  # type: ignore[arg-type]


def add(b: Block) -> BlockChange:
    return BlockChange("add", b)


def remove(b: Block, lift: tuple[str, ...] = ("optout", "carrier")) -> BlockChange:
    return BlockChange("remove", b, lift)


async def test_record_is_durable_across_reopen(backend: Backend, store: Store) -> None:
    event_id, changed = await store.record(event(), add(block()))
    assert changed and event_id > 0
    await store.close()
    reopened = await backend.open()
    assert await reopened.get_block(key()) == block()
    assert [b async for b in reopened.iter_blocks()] == [block()]
    assert [e.id for e in await reopened.events_after(0)] == [event_id]
    assert await reopened.last_event_id() == event_id


async def test_add_duplicate_is_unchanged_and_keeps_kind(store: Store) -> None:
    await store.record(event(), add(block(kind="carrier", source="carrier")))
    event_id, changed = await store.record(event(), add(block(kind="optout")))
    assert not changed
    assert (await store.get_block(key())) == block(kind="carrier", source="carrier")
    (second,) = await store.events_after(event_id - 1)
    assert (second.block_state, second.kind) == ("blocked", "carrier")


async def test_add_raises_kind_by_precedence(store: Store) -> None:
    first_id, changed = await store.record(event(), add(block()))
    assert changed
    for kind, source in (("carrier", "carrier"), ("admin", "operator")):
        event_id, changed = await store.record(event("admin_add"), add(block(kind=kind, source=source)))
        assert changed
        assert await store.get_block(key()) == block(kind=kind, source=source)  # created_at kept
        (raised,) = await store.events_after(event_id - 1)
        assert (raised.block_state, raised.kind) == ("blocked", kind)
    for lower in ("carrier", "optout", "admin"):
        event_id, changed = await store.record(event(), add(block(kind=lower)))
        assert not changed
        (kept,) = await store.events_after(event_id - 1)
        assert (kept.block_state, kept.kind) == ("blocked", "admin")
    assert await store.get_block(key()) == block(kind="admin", source="operator")
    assert await store.count_blocks() == {"optout": 0, "carrier": 0, "admin": 1}
    _, lifted = await store.record(event("start"), remove(block()))  # START: optout, carrier
    assert not lifted and await store.get_block(key()) == block(kind="admin", source="operator")
    replayed = BlockIndex()
    for e in await store.events_after(first_id - 1):
        replayed.apply_event(e)
    assert replayed.kind_of(key()) == "admin"
    assert replayed.counts_by_kind() == {"optout": 0, "carrier": 0, "admin": 1}


async def test_import_keeps_present_keys_but_raises_their_kind(store: Store) -> None:
    carrier = key("+14155550101")
    await store.record(event(), add(block()))
    await store.record(event(), add(block(carrier, "carrier", "carrier")))
    fresh = key("+14155550102")
    rows = [
        block(kind="admin", source="import"),  # optout -> admin
        block(carrier, "optout", "import"),  # carrier stays
        block(fresh, "carrier", "import"), block(fresh, "optout", "import"),
        block(fresh, "admin", "import"), block(fresh, "carrier", "import"),  # repeated: admin wins
    ]
    assert await store.import_blocks(rows) == 1  # upgrades are not counted as inserted
    assert await store.get_block(key()) == block(kind="admin", source="import")
    assert await store.get_block(carrier) == block(carrier, "carrier", "carrier")
    assert (await store.get_block(fresh) or block()).kind == "admin"
    assert await store.count_blocks() == {"optout": 0, "carrier": 1, "admin": 2}
    loaded = BlockIndex()
    await loaded.load_store(store)
    assert loaded.counts_by_kind() == {"optout": 0, "carrier": 1, "admin": 2}


async def test_long_schema_name_records_and_notifies(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("NOTIFY channels are PostgreSQL only")
    schema = f"{backend.location}_".ljust(60, "x")
    assert len(schema) == 60
    store = open_store(f"{backend.dsn}{'&' if '?' in backend.dsn else '?'}schema={schema}")
    backend.opened.append(store)
    try:
        await store.open()
        assert isinstance(store, PostgresStore) and len(store.channel) <= 63
        got: asyncio.Queue[int] = asyncio.Queue()
        stop = await store.listen(got.put_nowait)
        try:
            event_id, changed = await store.record(event(), add(block()))
            assert changed
            async with asyncio.timeout(5):
                assert await got.get() == event_id
        finally:
            await stop()
    finally:
        await store.close()
        await drop_schema(backend.dsn, schema)


async def test_sqlite_group_chunk_reads_one_snapshot(
    backend: Backend, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isinstance(store, SqliteStore):
        pytest.skip("PostgreSQL reads the whole load in one repeatable-read transaction")
    monkeypatch.setattr("gateway.store.sqlite_outbox.GROUP_ROWS", 3)
    numbers = ["+14155550100", "+14155550102", "+14155550104", "+14155550106"]
    await store.import_blocks([block(key(n)) for n in numbers])
    inserted: list[str] = []

    def between_statements(sql: str) -> None:  # a writer slips in before the chunk's second read
        if "group_concat" in sql and not inserted:
            inserted.append("+14155550101")
            other = sqlite3.connect(backend.location, isolation_level=None)
            try:
                other.execute(
                    "INSERT INTO blocks VALUES (?, ?, 'number', 'optout', 'keyword', 0)",
                    (inserted[0], LONG_CODE),
                )
            finally:
                other.close()

    await store._run(lambda c: c.set_trace_callback(between_statements))
    try:
        loaded = [m for page in [p async for p in store.block_groups()] for g in page for m in g[3]]
    finally:
        await store._run(lambda c: c.set_trace_callback(None))
    assert inserted
    assert sorted(loaded) == [int(n[1:]) for n in numbers]  # none lost to a shifted window


async def test_remove_does_not_lift_admin_unless_allowed(store: Store) -> None:
    admin = block(kind="admin", source="operator")
    await store.record(event("admin_add"), add(admin))
    start_id, changed = await store.record(event("start"), remove(block()))
    assert not changed
    assert await store.get_block(key()) == admin
    (start,) = await store.events_after(start_id - 1)
    assert (start.block_state, start.kind, start.scope) == ("blocked", "admin", "number")
    _, changed = await store.record(event("admin_remove"), remove(block(), ("admin",)))
    assert changed
    assert await store.get_block(key()) is None


async def test_remove_lifts_optout_and_reports_nothing_to_lift(store: Store) -> None:
    await store.record(event(), add(block()))
    event_id, changed = await store.record(event("start"), remove(block()))
    assert changed
    (start,) = await store.events_after(event_id - 1)
    assert (start.block_state, start.number) == ("unblocked", MOBILE)
    _, changed = await store.record(event("start"), remove(block()))
    assert not changed


async def test_record_without_change_and_full_event_round_trip(store: Store) -> None:
    full = AuditEvent(
        at=NOW + 0.25, op="help", number=MOBILE, counterpart=LONG_CODE, account="acme",
        source="keyword", text="Help ✓", data_coding=8, rule="HELP", config_version="abc",
        carrier_message_id="m1", reply_text="Reply", reply_message_id="m2",
        block_state="unchanged", scope="number", kind="optout",
    )
    event_id, changed = await store.record(full)
    assert not changed
    assert await store.events_after(0) == [dataclasses.replace(full, id=event_id)]


async def test_events_after_in_id_order_with_limit(store: Store) -> None:
    ids = [(await store.record(event(f"op{i}")))[0] for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [e.op for e in await store.events_after(ids[1], limit=2)] == ["op2", "op3"]
    assert await store.events_after(ids[-1]) == []
    assert await store.last_event_id() == ids[-1]


async def test_concurrent_records_get_distinct_ids(store: Store) -> None:
    results = await asyncio.gather(*(store.record(event(f"c{i}")) for i in range(20)))
    assert len({event_id for event_id, _ in results}) == 20
    assert [e.id for e in await store.events_after(0, limit=100)] == sorted(r[0] for r in results)


async def test_events_between_and_purge(store: Store) -> None:
    for i in range(4):
        await store.record(event(f"e{i}", at=NOW + i))
    got = [e.op async for e in store.events_between(NOW + 1, NOW + 3)]
    assert got == ["e1", "e2"]
    assert await store.purge_events(before=NOW + 2) == 2
    assert [e.op for e in await store.events_after(0)] == ["e2", "e3"]


async def test_events_are_append_only(backend: Backend, store: Store) -> None:
    await store.record(event())
    with pytest.raises(Exception, match="append-only"):
        await backend.raw("UPDATE events SET op = 'forged'")


async def test_receipt_routes_upsert_get_expire(store: Store) -> None:
    later = time.time() + 3600
    await store.put_receipt_routes([("m1", "acme", later), ("m2", "beta", later)])
    await store.put_receipt_routes([("m1", "other", later), ("old", "acme", time.time() - 1)])
    await store.put_receipt_routes([])
    assert await store.get_receipt_route("m1") == "other"
    assert await store.get_receipt_route("m2") == "beta"
    assert await store.get_receipt_route("old") is None  # expired
    assert await store.get_receipt_route("nope") is None
    assert await store.purge_receipt_routes(time.time()) == 1
    assert await store.purge_receipt_routes(later) == 2


async def test_list_blocks_filters_and_keyset_cursor(store: Store) -> None:
    blocks = [block(key(f"+1415555{i:04d}", "acme", "account"), "admin", "import") for i in range(4)]
    blocks += [block(key("+14155550002", LONG_CODE)), block(key("+14155550002", "", "global"), "carrier")]
    await store.import_blocks(blocks)
    ordered = await store.list_blocks()
    assert len(ordered) == 6
    assert await store.list_blocks(where=BlockFilter(scope="account")) == blocks[:4]
    assert await store.list_blocks(where=BlockFilter(kind="carrier")) == [blocks[5]]
    assert await store.list_blocks(where=BlockFilter(counterparts=(LONG_CODE, ""))) == [blocks[5], blocks[4]]
    assert await store.list_blocks(where=BlockFilter(counterparts=())) == []
    assert await store.list_blocks(number="+14155550002", where=BlockFilter(scope="global")) == [blocks[5]]
    pages, after = [], None
    while page := await store.list_blocks(limit=4, where=BlockFilter(after=after)):
        pages.append(page)
        after = page[-1].key
    assert [len(p) for p in pages] == [4, 2] and [b for p in pages for b in p] == ordered
    assert await store.list_blocks(where=BlockFilter(scope="account", after=blocks[1].key)) == blocks[2:4]


async def test_import_list_count_and_remove_block(store: Store) -> None:
    await store.record(event(), add(block()))
    blocks = [block(key(f"+1415555{i:04d}", "acme", "account"), "admin", "import") for i in range(5)]
    assert await store.import_blocks([block(), *blocks, blocks[0]]) == 5
    assert await store.count_blocks() == {"optout": 1, "carrier": 0, "admin": 5}
    page = await store.list_blocks(limit=2, offset=1)
    assert page == blocks[1:3]
    assert await store.list_blocks(number=MOBILE) == [block()]
    assert (await store.events_after(0))[-1].op == "admin_import"
    assert not await store.remove_block(blocks[0].key, lift_kinds=("optout",))
    assert await store.remove_block(blocks[0].key, lift_kinds=("admin",))
    assert (await store.events_after(0))[-1].op == "admin_remove"
    assert len([b async for b in store.iter_blocks()]) == 5


async def test_iter_blocks_pages(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.store.schema.PAGE_SIZE", 3)
    monkeypatch.setattr("gateway.store.index._LOAD_CHUNK", 4)
    blocks = [block(key(f"+1415555{i:04d}", scope="number")) for i in range(7)]
    await store.import_blocks(blocks)
    assert sorted([b async for b in store.iter_blocks()], key=lambda b: b.key.number) == blocks
    index = BlockIndex()
    assert await index.load_store(store) == 7
    assert all(index.kind_of(b.key) == "optout" for b in blocks)


async def test_index_loads_grouped_pages(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.store.sqlite_outbox.GROUP_ROWS", 50)
    monkeypatch.setattr("gateway.store.postgres_outbox.GROUP_PAGES", 1)
    kinds = ("optout", "carrier", "admin")
    blocks = [
        block(key(f"+1415555{i:04d}", *(("acme", "account") if i % 2 else (LONG_CODE, "number"))),
              kinds[i % 3], "import")
        for i in range(300)
    ]
    odd = [block(key("+1415abc0000")), block(key("+1234567890123456789")), block(key("14155550999"))]
    await store.import_blocks([*blocks, *odd, block(key(MOBILE, "", "global"), "admin")])
    groups = [g async for page in store.block_groups() for g in page]
    assert sum(len(g[3]) for g in groups) == 302  # two bad numbers left out
    index = BlockIndex()
    assert await index.load_store(store) == 302
    assert index.counts_by_kind() == {"optout": 101, "carrier": 100, "admin": 101}
    assert all(index.kind_of(b.key) == b.kind for b in blocks)
    assert index.kind_of(key("14155550999")) == "optout"
    assert index.is_blocked(14155550100, "+1000", "nobody")  # the global block


async def test_refuses_schema_newer_than_known(backend: Backend, store: Store) -> None:
    await store.close()
    await backend.raw("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(StoreError, match="schema version 999 is newer"):
        await backend.open()


async def test_reopen_keeps_schema(backend: Backend, store: Store) -> None:
    await store.record(event())
    second = await backend.open()
    assert await second.last_event_id() == await store.last_event_id()


async def test_closed_store_raises_store_error(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.last_event_id()


async def test_listen_notifies_new_event_ids(store: Store) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL only")
    got: asyncio.Queue[int] = asyncio.Queue()
    stop = await store.listen(got.put_nowait)
    try:
        event_id, _ = await store.record(event(), add(block()))
        async with asyncio.timeout(5):
            assert await got.get() == event_id
    finally:
        await stop()


async def test_events_replay_onto_an_index(store: Store) -> None:
    account_key = key(counterpart="acme", scope="account")
    await store.record(event(), add(block()))
    await store.record(event(account="acme"), add(block(account_key, "carrier", "carrier")))
    await store.record(event("admin_add"), add(block(key(scope="global", counterpart=""), "admin")))
    await store.record(event("start"), remove(block()))
    await store.record(event("help"))
    replayed = BlockIndex()
    for e in await store.events_after(0):
        replayed.apply_event(e)
    loaded = BlockIndex()
    loaded.load([b async for b in store.iter_blocks()])
    assert replayed.counts_by_kind() == loaded.counts_by_kind() == {
        "optout": 0, "carrier": 1, "admin": 1}
    assert replayed.kind_of(account_key) == "carrier"
