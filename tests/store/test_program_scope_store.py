"""Scope "program" on every backend: recorded, read back, replayed and loaded into the index."""

from __future__ import annotations

from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, Store, event_key
from gateway.store.index import BlockIndex

KEY = BlockKey("+14155550123", "acme/promo", "program")
NOW = 1_700_000_000.0


async def test_program_block_round_trip(store: Store) -> None:
    stop = AuditEvent(at=NOW, op="stop", number=KEY.number, counterpart="+14155550100", account="acme/promo",
                      scope="program", rule="program:promo:STOP PROMO")
    event_id, changed = await store.record(stop, BlockChange("add", Block(KEY, "optout", "keyword", NOW)))
    assert changed
    assert await store.get_block(KEY) == Block(KEY, "optout", "keyword", NOW)
    (recorded,) = await store.events_after(event_id - 1)
    assert (recorded.scope, recorded.account, recorded.block_state) == ("program", "acme/promo", "blocked")
    assert event_key(recorded) == KEY  # another gateway replays it onto the same key
    index = BlockIndex()
    assert await index.load_store(store) == 1
    assert index.program_blocked(14155550123, "acme/promo")
    state = await store.pair_state(KEY.number, "+14155550100", [KEY])
    assert state.kind_of(KEY) == "optout"
    _, lifted = await store.record(AuditEvent(at=NOW, op="start", number=KEY.number, scope="program",
                                              account="acme/promo"),
                                   BlockChange("remove", Block(KEY, "optout", "keyword", NOW), ("optout",)))
    assert lifted and await store.get_block(KEY) is None



async def test_deactivation_retires_a_program_opt_out_naming_the_program(store: Store) -> None:
    from gateway.admin_deactivations import end_epoch

    await store.record(AuditEvent(at=NOW, op="program_stop", number=KEY.number, scope="program", account="acme/promo"),
                       BlockChange("add", Block(KEY, "optout", "keyword", NOW)))
    assert await end_epoch(store, KEY.number, NOW + 10, NOW + 20) == (True, 1)
    (retired,) = [e for e in await store.events_after(0) if e.op == "deactivation_retired"]
    assert (retired.scope, retired.account) == ("program", "acme/promo")
