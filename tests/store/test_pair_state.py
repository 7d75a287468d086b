"""pair_state / record_mo on both backends: the store's order decides, NUL text, data errors."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import StoreError
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, Store
from tests.store.conftest import Backend

MOBILE, LONG_CODE = "+14155550123", "+14155550100"
KEY = BlockKey(MOBILE, LONG_CODE, "number")
GLOBAL = BlockKey(MOBILE, "", "global")


def stop(fp: str = "f-stop") -> tuple[AuditEvent, BlockChange]:
    event = AuditEvent(at=1.0, op="stop", number=MOBILE, counterpart=LONG_CODE, scope="number", mo_fingerprint=fp)
    return event, BlockChange("add", Block(KEY, "optout", "keyword", 1.0))


def start(fp: str = "f-start") -> tuple[AuditEvent, BlockChange]:
    event = AuditEvent(at=2.0, op="start", number=MOBILE, counterpart=LONG_CODE, scope="number", mo_fingerprint=fp)
    return event, BlockChange("remove", Block(KEY, "optout", "keyword", 2.0), ("optout",))


async def test_pair_state_versions_and_kinds(store: Store) -> None:
    empty = await store.pair_state(MOBILE, LONG_CODE, [KEY, GLOBAL])
    assert (empty.last_id, empty.kinds) == (0, ())
    [(event_id, changed)] = await store.record_mo([stop()], empty) or []
    assert changed
    state = await store.pair_state(MOBILE, LONG_CODE, [KEY, GLOBAL])
    assert (state.last_id, state.last_fingerprint, state.last_counterpart) == (event_id, "f-stop", LONG_CODE)
    assert state.kind_of(KEY) == "optout" and state.kind_of(GLOBAL) is None
    await store.record(AuditEvent(at=3.0, op="stop_reply", number=MOBILE, counterpart=LONG_CODE))
    assert (await store.pair_state(MOBILE, LONG_CODE, [KEY])).last_id == event_id  # replies are no state
    await store.record(AuditEvent(at=3.0, op="stop", number=MOBILE, counterpart="+14155550199",
                                  scope="number", mo_fingerprint="x"))
    assert (await store.pair_state(MOBILE, LONG_CODE, [KEY])).last_id == event_id  # another number's


async def test_a_change_decided_on_a_stale_version_is_refused(store: Store) -> None:
    """Two writers read the same version: the first to get a store id wins, the other writes nothing."""
    seen = await store.pair_state(MOBILE, LONG_CODE, [KEY])
    assert await store.record_mo([stop()], seen) is not None
    assert await store.record_mo([start()], seen) is None  # decided before the STOP existed
    assert await store.get_block(KEY) is not None
    newer = await store.pair_state(MOBILE, LONG_CODE, [KEY])
    assert await store.record_mo([start()], newer) is not None
    assert await store.get_block(KEY) is None


async def test_concurrent_writers_on_one_version_one_wins(backend: Backend, store: Store) -> None:
    other = await backend.open()
    seen = await store.pair_state(MOBILE, LONG_CODE, [KEY])
    results = await asyncio.gather(*(s.record_mo([stop(f"f{i}")], seen) for i, s in
                                     enumerate([store, other] * 4)))
    assert sum(r is not None for r in results) == 1
    assert len([e for e in await store.events_after(0) if e.op == "stop"]) == 1


async def test_nul_in_text_is_stored_escaped_and_health_kept(store: Store) -> None:
    event, change = stop()
    await store.record(AuditEvent(at=1.0, op="stop", number=MOBILE, text="STOP\x00"), change)
    assert store.healthy
    [stored] = await store.events_after(0)
    assert stored.text == "STOP\\u0000"
    assert event.text == ""


async def test_a_data_error_does_not_count_against_health(backend: Backend, store: Store) -> None:
    await store.ping()
    assert store.healthy
    with pytest.raises((StoreError, OverflowError)):
        await store.record(AuditEvent(at=1.0, op="x", data_coding=2**70))
    assert store.healthy
    await store.ping()


async def test_clarification_offered_read_and_consumed(store: Store) -> None:
    """Revoke-all's pending clarification: written with the STOP, read by pair_state for the
    asked account key, consumed with its answer; rows older than CLARIFY_KEEP are purged."""
    account = BlockKey(MOBILE, "acme", "account")
    seen = await store.pair_state(MOBILE, LONG_CODE, [KEY, account])
    assert seen.clarify_at == 0.0
    assert await store.record_mo([stop()], seen, (MOBILE, "acme", 1000.0)) is not None
    state = await store.pair_state(MOBILE, LONG_CODE, [KEY, account])
    assert state.clarify_at == 1000.0
    assert (await store.pair_state(MOBILE, LONG_CODE, [KEY])).clarify_at == 0.0  # no account asked
    assert (await store.pair_state(MOBILE, LONG_CODE, [BlockKey(MOBILE, "other", "account")])).clarify_at == 0.0
    other = "+14155550124"
    assert await store.record_mo([], await store.pair_state(other, LONG_CODE, []), (other, "acme", 1400.0)) is not None
    assert (await store.pair_state(MOBILE, LONG_CODE, [account])).clarify_at == 0.0  # purged: older than 300 s
    assert await store.record_mo([start()], state, (MOBILE, "acme", 0.0)) is not None  # consuming a purged one
    assert await store.record_mo([stop("again")], state, (MOBILE, "acme", 1500.0)) is None  # stale: nothing written
    assert (await store.pair_state(MOBILE, LONG_CODE, [account])).clarify_at == 0.0
    fresh = await store.pair_state(other, LONG_CODE, [BlockKey(other, "acme", "account")])
    assert fresh.clarify_at == 1400.0
    assert await store.record_mo([], fresh, (other, "acme", 0.0)) is not None  # consumed
    assert (await store.pair_state(other, LONG_CODE, [BlockKey(other, "acme", "account")])).clarify_at == 0.0
