"""Store.record_events (refusal summaries, one transaction) and Store.events_of (one mobile), both backends."""

from __future__ import annotations

from gateway.refusals import RefusalLog, parse_refusal
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, Store

MOBILE = "+14155550123"


async def test_refusal_summaries_and_one_mobiles_events(store: Store) -> None:
    log = RefusalLog()
    for _ in range(3):
        log.note(14155550123, "blocked", "acme")
    log.note(14155550124, "deactivated", "acme")
    assert await log.flush(store) == 2
    assert await log.flush(store) == 0  # nothing new: no write
    key = BlockKey(MOBILE, "+14155550100", "number")
    await store.record(AuditEvent(at=1.0, op="stop", text="STOP"), BlockChange("add", Block(key, "optout", "keyword", 1.0)))
    mine = await store.events_of(MOBILE)
    assert [e.op for e in mine] == ["mt_refused", "stop"]
    count, first, last = parse_refusal(mine[0].text)
    assert (count, mine[0].rule, mine[0].account) == (3, "blocked", "acme") and first <= last and abs(last - mine[0].at) < 0.001
    assert [e.rule for e in await store.events_of("+14155550124")] == ["deactivated"]
    assert await store.events_of("+14155550999") == []


def test_failed_flush_keeps_counts() -> None:
    log = RefusalLog(max_keys=1)
    log.note(1, "blocked", "a")
    log.note(2, "blocked", "a")  # beyond max_keys: only counted
    events = log.drain()
    log.note(1, "blocked", "a")
    log.restore(events)  # the flush of events failed
    (event,) = log.drain()
    assert parse_refusal(event.text)[0] == 2 and log.dropped == 1
