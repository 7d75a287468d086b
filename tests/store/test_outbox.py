"""The durable outbox contract (both backends), and exactly-once claims across two PostgreSQL pools."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.base import AuditEvent, OutboxItem, Store
from gateway.store.postgres import PostgresStore
from tests.store.conftest import Backend

NOW = 1_700_000_000.0
DAY = 86_400.0


async def put(store: Store, account: str, n: int, now: float = NOW) -> list[int]:
    return [await store.outbox_put(account, f"{account}-{i}".encode(), now, now + DAY) for i in range(n)]


async def test_put_then_claim_in_id_order(store: Store) -> None:
    ids = await put(store, "acme", 3)
    await put(store, "beta", 1)
    assert ids == sorted(ids)
    items = await store.outbox_claim("acme", "gw1", NOW, lease=30)
    assert [i.id for i in items] == ids
    assert [i.raw for i in items] == [b"acme-0", b"acme-1", b"acme-2"]
    first = items[0]
    assert (first.account, first.enqueued_at, first.expires_at, first.attempts) == (
        "acme", NOW, NOW + DAY, 0)
    assert await store.outbox_counts() == {"acme": 3, "beta": 1}


async def test_claim_limit_and_not_before_enqueue(store: Store) -> None:
    ids = await put(store, "acme", 5)
    assert await store.outbox_claim("acme", "gw1", NOW - 1, lease=30) == []
    assert [i.id for i in await store.outbox_claim("acme", "gw1", NOW, 30, limit=2)] == ids[:2]
    assert await store.outbox_claim("acme", "gw2", NOW, 30, limit=2) == []  # behind gw1's leases
    assert [i.id for i in await store.outbox_claim("acme", "gw1", NOW, 30, limit=2)] == ids[2:4]


async def test_lease_is_exclusive_until_it_expires(store: Store) -> None:
    (item_id,) = await put(store, "acme", 1)
    assert [i.id for i in await store.outbox_claim("acme", "gw1", NOW, lease=30)] == [item_id]
    assert await store.outbox_claim("acme", "gw2", NOW + 29, lease=30) == []
    assert await store.outbox_accounts(NOW + 29) == []
    assert await store.outbox_accounts(NOW + 30) == ["acme"]
    again = await store.outbox_claim("acme", "gw2", NOW + 30, lease=30)
    assert [(i.id, i.attempts) for i in again] == [(item_id, 0)]


async def test_retry_counts_and_backs_off(store: Store) -> None:
    (item_id,) = await put(store, "acme", 1)
    await store.outbox_claim("acme", "gw1", NOW, lease=30)
    await store.outbox_retry(item_id, next_attempt_at=NOW + 10)
    assert await store.outbox_claim("acme", "gw1", NOW + 9, lease=30) == []
    assert await store.outbox_accounts(NOW + 9) == []
    (item,) = await store.outbox_claim("acme", "gw1", NOW + 10, lease=30)
    assert (item.id, item.attempts) == (item_id, 1)


async def test_done_deletes(store: Store) -> None:
    ids = await put(store, "acme", 3)
    await store.outbox_claim("acme", "gw1", NOW, lease=30)
    await store.outbox_done(ids[:2])
    await store.outbox_done([])
    await store.outbox_done([999_999])
    assert await store.outbox_counts() == {"acme": 1}
    assert [i.id for i in await store.outbox_claim("acme", "gw1", NOW + 30, 30)] == ids[2:]


async def test_release_frees_only_the_owners_leases(store: Store) -> None:
    a, b = await put(store, "acme", 2)
    (c,) = await put(store, "beta", 1)
    await store.outbox_claim("acme", "gw1", NOW, lease=30, limit=1)
    await store.outbox_claim("beta", "gw2", NOW, lease=30)
    await store.outbox_release("gw1")
    assert [(i.id, i.attempts) for i in await store.outbox_claim("acme", "gw3", NOW, lease=30)] == [
        (a, 0), (b, 0)]
    assert await store.outbox_claim("beta", "gw3", NOW, lease=30) == []
    await store.outbox_release("gw2")
    assert [i.id for i in await store.outbox_claim("beta", "gw3", NOW, lease=30)] == [c]


async def test_expire_returns_and_deletes_unleased_rows(store: Store) -> None:
    await store.outbox_put("acme", b"old", NOW, NOW + 10)
    leased = await store.outbox_put("acme", b"leased", NOW, NOW + 10)
    await store.outbox_put("beta", b"fresh", NOW, NOW + DAY)
    await store.outbox_claim("acme", "gw1", NOW, lease=60, limit=2)
    await store.outbox_release("gw1")
    await store.outbox_claim("acme", "gw1", NOW, lease=60, limit=1)  # relock "old" only
    expired = await store.outbox_expire(NOW + 10)
    assert [(i.raw, i.account) for i in expired] == [(b"leased", "acme")]
    assert [i.id for i in expired] == [leased]
    assert [i.raw for i in await store.outbox_expire(NOW + 60)] == [b"old"]
    assert await store.outbox_counts() == {"beta": 1}
    assert await store.outbox_accounts(NOW + 60) == ["beta"]


async def test_outbox_survives_reopen(backend: Backend, store: Store) -> None:
    (item_id,) = await put(store, "acme", 1)
    await store.close()
    reopened = await backend.open()
    assert [i.id for i in await reopened.outbox_claim("acme", "gw1", NOW, 30)] == [item_id]


async def _drain(store: PostgresStore, owner: str) -> list[int]:
    """Claim and deliver until the queue is empty. Per-account order holds a claim back
    while another owner's lease is live, so an empty claim waits instead of stopping."""
    claimed: list[int] = []
    while await store.outbox_counts():
        items = await store.outbox_claim("acme", owner, NOW, lease=600, limit=7)
        claimed.extend(i.id for i in items)
        await store.outbox_done([i.id for i in items[::2]])  # delivered in two steps:
        await asyncio.sleep(0)  # the rest stays leased a while
        await store.outbox_done([i.id for i in items[1::2]])
        await asyncio.sleep(0 if items else 0.001)
    return claimed


async def test_two_pools_claim_each_row_exactly_once(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("row locking across gateways is PostgreSQL's job")
    first, second = await backend.open(), await backend.open()
    assert isinstance(first, PostgresStore) and isinstance(second, PostgresStore)
    await backend.raw(
        "INSERT INTO outbox (account, raw, enqueued_at, expires_at, next_attempt_at) "
        f"SELECT 'acme', int4send(g), {NOW}, {NOW + DAY}, {NOW} FROM generate_series(1, 1000) g"
    )
    async with asyncio.timeout(30):
        results = await asyncio.gather(
            *(_drain(s, f"{name}-{t}") for name, s in (("a", first), ("b", second)) for t in range(3))
        )
    claimed = [item_id for result in results for item_id in result]
    assert len(claimed) == len(set(claimed)) == 1000
    assert sum(map(len, results[:3])) and sum(map(len, results[3:]))  # both pools took part
    assert await first.outbox_accounts(NOW) == []


async def test_claim_keeps_account_order_behind_retries_and_leases(store: Store) -> None:
    ids = await put(store, "acme", 3)
    (other,) = await put(store, "beta", 1)
    items = await store.outbox_claim("acme", "gwA", NOW, lease=60)
    for item in items:  # row 1 failed: the rest waits behind it
        await store.outbox_retry(item.id, NOW + 10)
    (late,) = await put(store, "acme", 1, now=NOW)
    assert await store.outbox_claim("acme", "gwA", NOW + 1, lease=60) == []
    assert await store.outbox_accounts(NOW + 1) == ["beta"]
    assert [i.id for i in await store.outbox_claim("beta", "gwA", NOW + 1, lease=60)] == [other]
    # due again: all four in order; while gwA holds row 1, gwB gets none of the later ones
    (first,) = await store.outbox_claim("acme", "gwA", NOW + 10, lease=60, limit=1)
    assert first.id == ids[0]
    assert await store.outbox_claim("acme", "gwB", NOW + 10, lease=60) == []
    assert await store.outbox_accounts(NOW + 10) == []
    assert [i.id for i in await store.outbox_claim("acme", "gwA", NOW + 10, lease=60)] == [*ids[1:], late]
    await store.outbox_done([*ids, late])
    assert await store.outbox_counts() == {"beta": 1}


async def test_expired_lease_no_longer_holds_the_account_back(store: Store) -> None:
    ids = await put(store, "acme", 2)
    await store.outbox_claim("acme", "gw1", NOW, lease=30, limit=1)
    assert await store.outbox_claim("acme", "gw2", NOW + 29, lease=30) == []
    assert [i.id for i in await store.outbox_claim("acme", "gw2", NOW + 30, lease=30)] == ids


async def test_expire_appends_events_in_the_same_transaction(store: Store) -> None:
    await store.outbox_put("acme", b"old", NOW, NOW + 10)
    await store.outbox_put("beta", b"older", NOW - 1, NOW + 5)
    await store.outbox_put("beta", b"fresh", NOW, NOW + DAY)
    before = await store.last_event_id()

    def audit(item: OutboxItem) -> AuditEvent:
        return AuditEvent(at=NOW + 10, op="outbox_expired", account=item.account, source="gateway",
                          text=item.raw.hex())

    expired = await store.outbox_expire(NOW + 10, event_for=audit)
    assert [i.raw for i in expired] == [b"old", b"older"]
    events = await store.events_after(before)
    assert [(e.op, e.account, bytes.fromhex(e.text)) for e in events] == [
        ("outbox_expired", "acme", b"old"), ("outbox_expired", "beta", b"older")]
    assert await store.outbox_expire(NOW + 10, event_for=audit) == []
    assert await store.events_after(events[-1].id) == []

    def broken(item: OutboxItem) -> AuditEvent:
        raise RuntimeError("no event")

    with pytest.raises(RuntimeError):  # the event fails: the rows stay
        await store.outbox_expire(NOW + DAY, event_for=broken)
    assert await store.outbox_counts() == {"beta": 1}
    assert [i.raw for i in await store.outbox_expire(NOW + DAY)] == [b"fresh"]  # no events
    assert await store.events_after(events[-1].id) == []


async def test_renew_keeps_the_lease_only_for_its_holder(store: Store) -> None:
    (item_id,) = await put(store, "acme", 1)
    assert [i.id for i in await store.outbox_claim("acme", "gw1", NOW, lease=30)] == [item_id]
    assert await store.outbox_renew(item_id, "gw1", NOW + 90)
    assert not await store.outbox_renew(item_id, "gw2", NOW + 90)
    assert await store.outbox_claim("acme", "gw2", NOW + 60, lease=30) == []  # renewed past 60
    assert [i.id for i in await store.outbox_claim("acme", "gw2", NOW + 91, lease=30)] == [item_id]
    assert not await store.outbox_renew(item_id, "gw1", NOW + 200)  # gw1 lost it


async def test_summary_counts_rows_and_the_oldest_per_account(store: Store) -> None:
    assert await store.outbox_summary() == {}
    await put(store, "acme", 2, now=NOW + 5)
    await put(store, "acme", 1, now=NOW)
    await put(store, "beta", 1, now=NOW + 9)
    assert await store.outbox_summary() == {"acme": (3, NOW), "beta": (1, NOW + 9)}


@pytest.mark.timeout(120)
async def test_a_long_queue_is_claimed_without_a_scan_per_row(backend: Backend, store: Store) -> None:
    """Found by the chaos soak: "nothing earlier blocks it" was a NOT EXISTS per row, O(n²): at
    44,000 queued rows one poll took 80 s on PostgreSQL, past the command timeout, so the outbox
    never drained again. 30,000 rows of one account, one of them waiting for a retry."""
    now = 1_000_000.0
    series = ("generate_series(1, 30000) AS n" if backend.name == "postgres" else
              "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 30000) "
              "SELECT n FROM s)")
    raw = "'\\x00'::bytea" if backend.name == "postgres" else "x'00'"
    await backend.raw(
        "INSERT INTO outbox (account, raw, enqueued_at, expires_at, next_attempt_at) "
        f"SELECT 'acme', {raw}, {now}, {now + 3600}, "
        f"CASE WHEN n = 20000 THEN {now + 60} ELSE {now} END FROM {series}")
    assert await store.outbox_accounts(now) == ["acme"]
    items = await store.outbox_claim("acme", "gw-a", now, 60.0, 100)
    assert len(items) == 100 and [i.id for i in items] == sorted(i.id for i in items)
    await backend.raw(f"DELETE FROM outbox WHERE next_attempt_at <= {now} AND id < "
                      f"(SELECT min(id) FROM outbox WHERE next_attempt_at > {now})")
    assert await store.outbox_accounts(now) == []  # the row waiting for its retry now comes first
