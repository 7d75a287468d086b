"""Store and index at scale: import, index load, index memory, lookup time.

Not collected by pytest (the name does not start with test_); ``make bench``
calls ``run(n, url)``, or from a shell::

    .venv/bin/python -m tests.store.bench_store 1000000 postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python -m tests.store.bench_store 1000000 sqlite:////tmp/bench.db [--uniform]

PostgreSQL runs in a fresh schema that is dropped afterwards; SQLite needs a
file that does not exist yet and removes it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from gateway.store import open_store
from gateway.store.base import Block, BlockKey, Store
from gateway.store.index import BlockIndex
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

LONG_CODES = [f"+1415555{i:04d}" for i in range(20)]
ACCOUNTS = ["acme", "beta", "gamma"]
LOOKUPS = 200_000


def make_mobiles(n: int, rng: random.Random, clustered: bool) -> list[int]:
    """n distinct US-like mobiles: clustered in 2,000 random NPA-NXX blocks of
    10,000 numbers (like real allocations), or uniform over +1 200... to +1 999...
    (the worst case for roaring bitmaps: about one container per entry)."""
    if not clustered:
        return rng.sample(range(12_000_000_000, 19_999_999_999), n)
    prefixes = rng.sample(range(1_200_000, 2_000_000), max(2_000, n // 5_000))
    return [prefixes[i // 10_000] * 10_000 + i % 10_000
            for i in rng.sample(range(len(prefixes) * 10_000), n)]


def make_blocks(n: int, seed: int = 1, clustered: bool = True) -> list[Block]:
    """n blocks: 80% per long code (20 of them), 15% per account (3), 5% global;
    1% carrier and 0.1% admin kinds."""
    rng = random.Random(seed)
    mobiles = make_mobiles(n, rng, clustered)
    blocks = []
    for i, mobile in enumerate(mobiles):
        r = i % 20
        if r < 16:
            key = BlockKey(f"+{mobile}", LONG_CODES[i % len(LONG_CODES)], "number")
        elif r < 19:
            key = BlockKey(f"+{mobile}", ACCOUNTS[i % len(ACCOUNTS)], "account")
        else:
            key = BlockKey(f"+{mobile}", "", "global")
        kind = "admin" if i % 1000 == 7 else "carrier" if i % 100 == 3 else "optout"
        blocks.append(Block(key, kind, "import", 1_700_000_000.0))
    return blocks


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def lookup_ns(index: BlockIndex, blocks: list[Block]) -> float:
    """Mean is_blocked() time over hits and misses, loop overhead included."""
    rng = random.Random(2)
    probes = []
    for b in rng.sample(blocks, min(LOOKUPS // 2, len(blocks))):
        mobile = int(b.key.number[1:])
        probes += [(mobile, LONG_CODES[0], ACCOUNTS[0]), (mobile + 1, LONG_CODES[1], ACCOUNTS[1])]
    is_blocked = index.is_blocked
    started = time.perf_counter_ns()
    for mobile, originating, account in probes:
        is_blocked(mobile, originating, account)
    return (time.perf_counter_ns() - started) / len(probes)


async def _open(url: str) -> tuple[Store, str]:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if Path(path).exists():
            raise SystemExit(f"{path} exists: give a fresh file for the benchmark")
        return open_store(url), path
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    return PostgresStore(url, schema=schema, channel=schema, command_timeout=600), schema


async def _cleanup(store: Store, url: str, location: str) -> None:
    await store.close()
    if isinstance(store, SqliteStore):
        for suffix in ("", "-wal", "-shm"):
            Path(location + suffix).unlink(missing_ok=True)
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{location}" CASCADE')
    finally:
        await conn.close()


async def _run(n: int, url: str, clustered: bool) -> dict[str, float | int | str]:
    blocks = make_blocks(n, clustered=clustered)
    store, location = await _open(url)
    try:
        await store.open()
        started = time.perf_counter()
        inserted = await store.import_blocks(blocks)
        import_s = time.perf_counter() - started
        assert inserted == n, inserted
        rss_before = _rss_bytes()
        index = BlockIndex()
        started = time.perf_counter()
        loaded = await index.load_store(store)
        load_s = time.perf_counter() - started
        assert loaded == len(index) == n, (loaded, len(index))
        return {
            "backend": "sqlite" if isinstance(store, SqliteStore) else "postgresql",
            "n": n,
            "numbers": "clustered" if clustered else "uniform",
            "import_seconds": round(import_s, 2),
            "load_seconds": round(load_s, 2),
            "index_memory_bytes": index.memory_bytes(),
            "index_rss_delta_bytes": _rss_bytes() - rss_before,
            "lookup_ns": round(lookup_ns(index, blocks), 1),
        }
    finally:
        await _cleanup(store, url, location)


def run(n: int, url: str, clustered: bool = True) -> dict[str, float | int | str]:
    """Import n blocks into a fresh database at url, load them into a BlockIndex, measure."""
    return asyncio.run(_run(n, url, clustered))


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]), sys.argv[2], "--uniform" not in sys.argv[3:])))
