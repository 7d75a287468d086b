"""BlockIndex against a plain dict model, plus its edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.base import AuditEvent, Block, BlockKey
from gateway.store.index import BlockIndex, mobile_int

RANK = {"optout": 1, "carrier": 2, "admin": 3}
MOBILES = ["+14155550100", "+14155550101", "+447700900123", "+1"]
NUMBERS = ["+18005550100", "+14155550199"]
ACCOUNTS = ["acme", "beta"]


def test_scopes() -> None:
    index = BlockIndex()
    assert index.add(BlockKey("+14155550100", "+18005550100", "number"), "optout")
    assert index.add(BlockKey("+14155550101", "acme", "account"), "admin")
    assert index.add(BlockKey("+14155550102", "", "global"), "carrier")
    assert index.is_blocked(14155550100, "+18005550100", "beta")
    assert not index.is_blocked(14155550100, "+18005550101", "acme")
    assert index.is_blocked(14155550101, "+18005550101", "acme")
    assert not index.is_blocked(14155550101, "+18005550101", "beta")
    assert index.is_blocked(14155550102, "", "")
    assert len(index) == 3
    assert index.counts_by_kind() == {"optout": 1, "carrier": 1, "admin": 1}
    assert index.memory_bytes() > 0


def test_add_keeps_higher_kind_and_remove_respects_lift_kinds() -> None:
    index = BlockIndex()
    key = BlockKey("+14155550100", "+18005550100", "number")
    assert index.add(key, "admin")
    assert not index.add(key, "optout")
    assert not index.add(key, "carrier")
    assert index.kind_of(key) == "admin"
    assert not index.remove(key, ("optout", "carrier"))
    assert key in index
    assert index.remove(key, ("admin",))
    assert index.kind_of(key) is None
    assert not index.remove(key)
    assert len(index) == 0 and index.counts_by_kind()["admin"] == 0


def test_add_raises_kind_by_precedence() -> None:
    index = BlockIndex()
    key = BlockKey("+14155550100", "+18005550100", "number")
    neighbour = BlockKey("+14155550101", "+18005550100", "number")
    assert index.add(key) and index.add(neighbour, "carrier")
    assert not index.add(key, "optout")
    assert index.add(key, "carrier") and index.kind_of(key) == "carrier"
    assert index.counts_by_kind() == {"optout": 0, "carrier": 2, "admin": 0}
    assert index.add(key, "admin") and index.kind_of(key) == "admin"
    assert index.counts_by_kind() == {"optout": 0, "carrier": 1, "admin": 1}
    assert not index.remove(key, ("optout", "carrier"))  # START no longer lifts it
    assert index.kind_of(neighbour) == "carrier" and len(index) == 2


def test_replayed_events_raise_kind() -> None:
    index = BlockIndex()
    key = BlockKey("+14155550100", "+18005550100", "number")
    for kind in ("optout", "admin", "carrier"):
        index.apply_event(AuditEvent(at=0, op="x", number=key.number, counterpart=key.counterpart,
                                     scope="number", kind=kind, block_state="blocked"))
    assert index.kind_of(key) == "admin"
    assert index.counts_by_kind() == {"optout": 0, "carrier": 0, "admin": 1}


def test_load_groups_raises_kind_of_present_mobiles() -> None:
    index = BlockIndex()
    group = ("number", "+18005550100")
    assert index.load_groups([(*group, "optout", [14155550100, 14155550101]),
                              (*group, "admin", [14155550101, 14155550102]),
                              (*group, "carrier", [14155550100, 14155550101])]) == 3
    kinds = [index.kind_of(BlockKey(f"+1415555010{i}", group[1], "number")) for i in range(3)]
    assert kinds == ["carrier", "admin", "admin"]
    assert index.counts_by_kind() == {"optout": 0, "carrier": 1, "admin": 2}


def test_bad_numbers_and_scopes() -> None:
    index = BlockIndex()
    with pytest.raises(ValueError):
        index.add(BlockKey("ACME", "", "global"))
    with pytest.raises(ValueError):
        index.add(BlockKey("+1415", "", "planet"))
    assert index.kind_of(BlockKey("not a number", "", "global")) is None
    assert mobile_int("+14155550100") == mobile_int("14155550100") == 14155550100
    good = Block(BlockKey("+14155550100", "", "global"), "optout", "keyword", 0.0)
    bad = Block(BlockKey("ACME", "", "global"), "optout", "keyword", 0.0)
    assert index.load([bad, good, good]) == 1
    assert len(index) == 1


keys = st.builds(
    lambda mobile, scope, number, account: BlockKey(
        mobile, {"number": number, "account": account, "global": ""}[scope], scope
    ),
    st.sampled_from(MOBILES),
    st.sampled_from(["number", "account", "global"]),
    st.sampled_from(NUMBERS),
    st.sampled_from(ACCOUNTS),
)
kinds = st.sampled_from(["optout", "carrier", "admin"])
ops = st.lists(
    st.tuples(st.booleans(), keys, kinds, st.sets(kinds, min_size=1)), max_size=40
)


def _check(index: BlockIndex, model: dict[BlockKey, str]) -> None:
    for mobile in MOBILES:
        for number in NUMBERS:
            for account in ACCOUNTS:
                expected = any(
                    k.number == mobile and k.counterpart in (number, account, "")
                    and (k.scope, k.counterpart) in {("number", number), ("account", account), ("global", "")}
                    for k in model
                )
                assert index.is_blocked(mobile_int(mobile), number, account) == expected
    for k, kind in model.items():
        assert index.kind_of(k) == kind
    assert len(index) == len(model)
    counts = index.counts_by_kind()
    assert counts == {kind: list(model.values()).count(kind) for kind in counts}


@settings(max_examples=200, deadline=None)
@given(ops)
def test_matches_dict_model(operations: list[tuple[bool, BlockKey, str, set[str]]]) -> None:
    index, model = BlockIndex(), dict[BlockKey, str]()
    for is_add, key, kind, lift in operations:
        if is_add:
            raises = key not in model or RANK[kind] > RANK[model[key]]
            assert index.add(key, kind) == raises
            if raises:
                model[key] = kind
        else:
            lifted = key in model and model[key] in lift
            assert index.remove(key, lift) == lifted
            if lifted:
                del model[key]
        _check(index, model)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(keys, kinds), max_size=30), st.lists(st.tuples(keys, kinds), max_size=30))
def test_load_equals_adds(first: list[tuple[BlockKey, str]], second: list[tuple[BlockKey, str]]) -> None:
    loaded, added = BlockIndex(), BlockIndex()
    model: dict[BlockKey, str] = {}
    for batch in (first, second):
        loaded.load(Block(k, kind, "import", 0.0) for k, kind in batch)
        for k, kind in batch:
            added.add(k, kind)
            if k not in model or RANK[kind] > RANK[model[k]]:
                model[k] = kind
    _check(loaded, model)
    _check(added, model)


def test_load_in_chunks_keeps_highest_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.store.index._LOAD_CHUNK", 2)
    entries = [
        (BlockKey("+14155550100", "", "global"), "optout"),
        (BlockKey("+14155550101", "", "global"), "admin"),
        (BlockKey("+14155550100", "", "global"), "carrier"),
        (BlockKey("+14155550102", "acme", "account"), "carrier"),
        (BlockKey("+14155550102", "acme", "account"), "admin"),
    ]
    index = BlockIndex()
    assert index.load(Block(k, kind, "import", 0.0) for k, kind in entries) == 3
    assert index.counts_by_kind() == {"optout": 0, "carrier": 1, "admin": 2}
    assert index.kind_of(entries[0][0]) == "carrier"
    assert index.kind_of(entries[3][0]) == "admin"
