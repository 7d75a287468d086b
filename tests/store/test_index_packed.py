"""The packed BlockIndex (issue 13) against a plain Python model: every scope, every kind and its
precedence, numbers and counterpart ids too large for the packed key, merges of the live delta
(inline and in a worker thread) and segment splits. Store-backed: the counterpart id table."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import StoreError
from gateway.store import migrate, schema, schema_version
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, Store, kind_rank
from gateway.store.index import BlockIndex, mobile_int, probe_clear
from gateway.store.packed import PackedKeys
from tests.store.conftest import Backend

MOBILES = ["+14155550100", "+14155550101", "+19995550102", "+447700900123", "+1", "+123456789012345678"]
NUMBERS = ["+18005550100", "+14155550199"]
ACCOUNTS = ["acme", "beta"]
PROGRAMS = ["acme/promo", "beta/news"]
KINDS = ["optout", "carrier", "admin", "deactivated", "odd"]  # "odd": a kind the store keeps, rank 0
COUNTERPARTS = {"number": NUMBERS, "account": ACCOUNTS, "global": [""], "program": PROGRAMS}

keys = st.sampled_from(MOBILES).flatmap(lambda mobile: st.sampled_from(list(COUNTERPARTS)).flatmap(
    lambda scope: st.sampled_from(COUNTERPARTS[scope]).map(lambda cp: BlockKey(mobile, cp, scope))))
kinds = st.sampled_from(KINDS)
ops = st.lists(st.tuples(st.booleans(), keys, kinds, st.sets(kinds, min_size=1)), max_size=60)
Model = dict[tuple[str, str, str], str]


@pytest.fixture(autouse=True)
def _small_structures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge after a few changes and keep segments tiny, so every example exercises both."""
    monkeypatch.setattr("gateway.store.packed.MERGE_AT", 3)
    monkeypatch.setattr("gateway.store.packed.SEGMENT", 2)


def _add(model: Model, key: BlockKey, kind: str) -> bool:
    k = (key.number, key.counterpart, key.scope)
    if k in model and kind_rank(kind) <= kind_rank(model[k]):
        return False
    model[k] = kind
    return True


def _check(index: BlockIndex, model: Model) -> None:
    for mobile in MOBILES:
        m = mobile_int(mobile)
        for number in [*NUMBERS, "+10000000000"]:
            for account in [*ACCOUNTS, "nobody"]:
                found = {model.get((mobile, cp, scope)) for scope, cp in
                         (("number", number), ("account", account), ("global", ""))} - {None}
                assert index.is_blocked(m, number, account) == bool(found)
                if found:  # the hot path's shortcut never clears a blocked pair
                    assert not probe_clear(index.probe(number, account), m)
                assert index.kinds_for(m, number, account) == found
        for program in PROGRAMS:
            blocked = (mobile, program, "program") in model
            assert index.program_blocked(m, program) == blocked
            view = index.programs.get(program)
            assert (view is not None and m in view) == blocked
        for scope, cps in COUNTERPARTS.items():
            for cp in cps:
                assert index.kind_of(BlockKey(mobile, cp, scope)) == model.get((mobile, cp, scope))
    assert len(index) == len(model)
    counts = index.counts_by_kind()
    assert {k: n for k, n in counts.items() if n} == {k: list(model.values()).count(k) for k in set(model.values())}
    assert index.has_programs == any(k[2] == "program" for k in model)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(keys, kinds), max_size=30), ops, st.sampled_from([12, 16, 26]))
def test_matches_set_model(loaded: list[tuple[BlockKey, str]], operations: list[tuple[bool, BlockKey, str, set[str]]],
                           cp_bits: int) -> None:
    """Load, then live adds and removes: every lookup agrees with the model after every step.
    cp_bits 26 leaves 35 bits for the number: the 12-digit and 18-digit ones live outside the keys."""
    index, model = BlockIndex(cp_bits), Model()
    for key, kind in loaded:
        _add(model, key, kind)
    assert index.load(Block(k, kind, "import", 0.0) for k, kind in loaded) == len(model)
    _check(index, model)
    for is_add, key, kind, lift in operations:
        if is_add:
            assert index.add(key, kind) == _add(model, key, kind)
        else:
            k = (key.number, key.counterpart, key.scope)
            lifted = k in model and model[k] in lift
            assert index.remove(key, lift) == lifted
            if lifted:
                del model[k]
        _check(index, model)


def test_precedence_admin_over_carrier_over_optout() -> None:
    index = BlockIndex()
    key = BlockKey("+14155550100", "+18005550100", "number")
    assert index.add(key, "deactivated") and index.add(key, "optout") and index.add(key, "carrier")
    assert not index.add(key, "optout") and index.add(key, "admin") and not index.add(key, "carrier")
    assert index.kind_of(key) == "admin" and not index.remove(key, ("optout", "carrier"))
    assert index.counts_by_kind() == {"optout": 0, "carrier": 0, "admin": 1, "deactivated": 0}


def test_numbers_beyond_the_packed_key_are_kept() -> None:
    index = BlockIndex(cp_bits=26)  # 35 bits for the number: up to 34,359,738,367
    long_one = BlockKey("+447700900123", "", "global")
    assert index.add(long_one) and index.is_blocked(447700900123, "", "")
    assert index.extra and index.kind_of(long_one) == "optout"
    assert index.remove(long_one) and not index.is_blocked(447700900123, "", "")


def _rows(n: int) -> Iterator[tuple[str, str, str, str]]:
    for i in range(n):
        yield f"+1415{i:07d}", NUMBERS[i % 2], "number", "optout"


async def test_merge_in_a_worker_thread_keeps_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.store.packed.MERGE_AT", 50)
    monkeypatch.setattr("gateway.store.packed.SEGMENT", 16)
    index = BlockIndex()
    index.load_rows(_rows(200))
    keys: PackedKeys = index.keys
    for i in range(200, 250):  # the 50th change freezes the delta and starts the worker
        assert index.add(BlockKey(f"+1415{i:07d}", NUMBERS[0], "number"), "carrier")
    merged = keys.merge_future
    assert merged is not None and keys.frozen is not None and index.is_blocked(14150000249, NUMBERS[0], "")
    index.remove(BlockKey("+14150000000", NUMBERS[0], "number"))  # during the merge
    await asyncio.wait_for(merged, timeout=10)  # its done callback (the swap) runs before we resume
    assert keys.frozen is None and len(keys) == 250
    assert not index.is_blocked(14150000000, NUMBERS[0], "") and index.is_blocked(14150000002, NUMBERS[0], "")
    assert all(index.kind_of(BlockKey(f"+1415{i:07d}", NUMBERS[0], "number")) == "carrier" for i in range(200, 250))
    assert len(index) == 249


async def test_load_store_takes_the_stores_counterpart_ids(backend: Backend, store: Store) -> None:
    blocks = [Block(BlockKey(f"+1415555{i:04d}", NUMBERS[i % 2], "number"), "optout", "import", 0.0)
              for i in range(10)]
    await store.import_blocks(blocks)
    change = BlockChange("add", Block(BlockKey("+14155550100", "acme", "account"), "admin", "operator", 0.0))
    await store.record(AuditEvent(at=0.0, op="admin_add"), change)
    ids = await store.counterpart_ids()
    assert {(s, c) for _, s, c in ids} == {("account", "acme"), ("number", NUMBERS[0]), ("number", NUMBERS[1])}
    index = BlockIndex()
    assert await index.load_store(store) == 11
    assert {index.ids[s][c] for _, s, c in ids} == {i for i, _, _ in ids}
    assert index.kind_of(BlockKey("+14155550100", "acme", "account")) == "admin"


async def test_load_store_with_a_disagreeing_id_table(backend: Backend, store: Store) -> None:
    """Blocks under counterparts the id table lacks, an id row of an unknown scope, an id too
    large to pack, an unknown scope and a number too long: the load keeps what the store keeps."""
    await store.import_blocks([Block(BlockKey("+14155550100", NUMBERS[0], "number"), "optout", "import", 0.0),
                               Block(BlockKey("+14155550101", "acme", "account"), "carrier", "import", 0.0),
                               Block(BlockKey("+14155550102", "", "global"), "admin", "import", 0.0),
                               Block(BlockKey("+123456789012345678", NUMBERS[1], "number"), "optout", "import", 0.0),
                               Block(BlockKey("+14155550103", "x", "planet"), "optout", "import", 0.0)])
    await backend.raw("DELETE FROM counterparts WHERE scope = 'account'")
    await backend.raw(f"UPDATE counterparts SET id = 900000000 WHERE counterpart = '{NUMBERS[1]}'")
    await backend.raw("INSERT INTO counterparts (id, scope, counterpart) VALUES (77, 'galaxy', 'far')")
    index = BlockIndex()
    assert await index.load_store(store) == 4  # the unknown scope is left out
    assert index.is_blocked(14155550100, NUMBERS[0], "")
    assert index.is_blocked(14155550101, "", "acme")
    assert index.is_blocked(14155550102, "", "")
    assert index.kind_of(BlockKey("+123456789012345678", NUMBERS[1], "number")) == "optout"
    assert index.counts_by_kind() == {"optout": 2, "carrier": 1, "admin": 1}


async def test_an_index_that_cannot_be_built_is_a_store_error(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await store.import_blocks([Block(BlockKey("+14155550100", "", "global"), "optout", "import", 0.0)])

    def out_of_memory(self: object) -> int:
        raise MemoryError

    monkeypatch.setattr("gateway.store.index_load.Loader.finish", out_of_memory)
    with pytest.raises(StoreError, match="block index cannot be built: MemoryError"):
        await BlockIndex().load_store(store)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 3)), max_size=40))
def test_build_keeps_the_highest_code_of_each_key_across_chunks(entries: list[tuple[int, int]]) -> None:
    import numpy as np

    from gateway.store import packed

    chunk, packed._CHUNK = packed._CHUNK, 3  # dedupe and filter fill in many chunks
    try:
        keys = PackedKeys()
        keys.build(np.array([k << 2 | c for k, c in entries], dtype=np.int64))
    finally:
        packed._CHUNK = chunk
    model: dict[int, int] = {}
    for k, c in entries:
        model[k] = max(c, model.get(k, 0))
    assert len(keys) == len(model)
    assert all(keys.get(k) == model.get(k) for k in range(22))


ODD_NUMBERS = ["14155550101", "++14155550102", "+1415 5550103", " +14155550104", "+\uff11\uff14\uff11\uff15", "+-1",
               "+1234567890123456789", "+0014155550105", "+14155550106\n", "+1_000", "+", "", "+1+2", "+12a"]


def _mobile(number: str) -> int | None:
    """The spec of blocks.mobile: 1-18 ASCII digits after an optional '+', as an int; else NULL."""
    return int(number.removeprefix("+")) if re.fullmatch(r"\+?[0-9]{1,18}", number) else None


async def _odd_blocks(store: Store) -> list[Block]:
    blocks = [Block(BlockKey(number, NUMBERS[0], "number"), "optout", "import", 0.0)
              for number in ["+14155550100", "+123456789012345678", *ODD_NUMBERS]]
    assert await store.import_blocks(blocks) == len(blocks)
    return blocks


async def _check_mobiles_and_load(backend: Backend, store: Store, blocks: list[Block]) -> None:
    found = dict(await backend.rows("SELECT number, mobile FROM blocks"))
    assert found == {b.key.number: _mobile(b.key.number) for b in blocks}
    index = BlockIndex()
    valid = [b.key.number for b in blocks if _mobile(b.key.number) is not None]
    assert await index.load_store(store) == len(valid)
    assert all(index.kind_of(BlockKey(n, NUMBERS[0], "number")) == "optout" for n in valid)
    assert index.is_blocked(14155550100, NUMBERS[0], "") and index.is_blocked(14155550101, NUMBERS[0], "")


async def test_numbers_that_fail_the_write_time_check_load_through_the_fallback(
        backend: Backend, store: Store) -> None:
    """blocks.mobile (migration 9) is the number's index integer or NULL; NULL rows (and numbers
    beyond the packed key) take the fallback path, next to packed rows of the same counterpart."""
    await _check_mobiles_and_load(backend, store, await _odd_blocks(store))


async def test_migration_9_backfills_the_mobile_column(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(schema, "SQLITE_MIGRATIONS", schema.SQLITE_MIGRATIONS[:8])
        patch.setattr(schema, "POSTGRES_MIGRATIONS", schema.POSTGRES_MIGRATIONS[:8])
        old = await backend.open()
        blocks = await _odd_blocks(old)
        await old.close()
    assert await schema_version(backend.url) == 8
    assert await migrate(backend.url) == (8, len(schema.SQLITE_MIGRATIONS))
    await _check_mobiles_and_load(backend, await backend.open(), blocks)
