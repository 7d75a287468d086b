"""The durable outbox contract (both backends), and exactly-once claims across two PostgreSQL pools."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.base import Store
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
    assert [i.id for i in await store.outbox_claim("acme", "gw2", NOW, 30, limit=2)] == ids[2:4]


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
    a, _ = await put(store, "acme", 2)
    await store.outbox_claim("acme", "gw1", NOW, lease=30, limit=1)
    await store.outbox_claim("acme", "gw2", NOW, lease=30, limit=1)
    await store.outbox_release("gw1")
    (item,) = await store.outbox_claim("acme", "gw3", NOW, lease=30)
    assert (item.id, item.attempts) == (a, 0)


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
    claimed: list[int] = []
    while items := await store.outbox_claim("acme", owner, NOW, lease=600, limit=7):
        claimed.extend(i.id for i in items)
        await store.outbox_done([i.id for i in items[::2]])  # some delivered, some left leased
        await asyncio.sleep(0)
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


async def test_renew_keeps_the_lease_only_for_its_holder(store: Store) -> None:
    (item_id,) = await put(store, "acme", 1)
    assert [i.id for i in await store.outbox_claim("acme", "gw1", NOW, lease=30)] == [item_id]
    assert await store.outbox_renew(item_id, "gw1", NOW + 90)
    assert not await store.outbox_renew(item_id, "gw2", NOW + 90)
    assert await store.outbox_claim("acme", "gw2", NOW + 60, lease=30) == []  # renewed past 60
    assert [i.id for i in await store.outbox_claim("acme", "gw2", NOW + 91, lease=30)] == [item_id]
    assert not await store.outbox_renew(item_id, "gw1", NOW + 200)  # gw1 lost it
