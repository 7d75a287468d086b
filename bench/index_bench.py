"""Block index figures at scale (issue 4): fill, index load, memory, lookups; CSV import.

Per backend and size: fill a fresh store (generate + Store.import_blocks in batches), then
in a fresh process (so RSS is not polluted by the fill) BlockIndex().load_store(store):
load seconds, memory_bytes(), VmRSS growth across the load, is_blocked() hit/miss ns.
PostgreSQL runs in a throwaway schema (dropped afterwards); skipped when unreachable.

`python -m bench.index_bench load URL [--schema S]` is the measuring child.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

from bench.blocks import SPREAD_NOTE, as_blocks, fill, mb, spread, vm_rss

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
LONG_CODES = [("number", f"+1415555{1000 + i:04d}") for i in range(50)]
ACCOUNTS = [("account", f"acct{i}") for i in range(5)]
DISTRIBUTION = (f"90% scope number over 50 long codes, 9% scope account over 5 accounts, 1% global; "
                f"{SPREAD_NOTE}")
PROBES = 100_000
TARGETS = {"load_s_10m_pg": 30.0, "memory_10m": 100e6, "lookup_ns": 1000.0}


def generate(n: int) -> Any:
    n_num, n_acc = n * 90 // 100, n * 9 // 100
    return as_blocks(itertools.chain(
        spread(n_num, LONG_CODES, seed=1), spread(n_acc, ACCOUNTS, seed=2),
        spread(n - n_num - n_acc, [("global", "")], seed=3)))


def pg_reachable(url: str = PG_URL) -> str | None:
    """None when PostgreSQL answers, else why not."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means "skip"
        return f"{type(exc).__name__}: {exc}"
    return None


def pg_schema(action: str, name: str, url: str = PG_URL) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            sql = f'CREATE SCHEMA "{name}"' if action == "create" else f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


# --- the measuring child ------------------------------------------------------------


async def _load(url: str, schema: str | None) -> dict[str, Any]:
    from gateway.store import open_store
    from gateway.store.index import BlockIndex

    if schema:
        from gateway.store.postgres import PostgresStore

        store: Any = PostgresStore(url, schema=schema, channel=schema, command_timeout=600)
    else:
        store = open_store(url)
    await store.open()
    gc.collect()
    rss0 = vm_rss(os.getpid())
    index = BlockIndex()
    started = time.perf_counter()
    try:
        await index.load_store(store)
    finally:
        load_s = time.perf_counter() - started
        await store.close()
    gc.collect()
    out = {"blocks": len(index), "load_s": load_s, "memory_bytes": index.memory_bytes(),
           "rss_delta": vm_rss(os.getpid()) - rss0}
    out.update(lookups(index))
    return out


def lookups(index: Any) -> dict[str, float]:
    """is_blocked() ns: hits (scope number, first check) and misses (all three scopes checked)."""
    rng = random.Random(5)
    originating = LONG_CODES[0][1]
    members = index._number[originating]  # the bench samples real members
    hits = [members[rng.randrange(len(members))] for _ in range(PROBES)]
    misses = [m + 1 for m in hits if not index.is_blocked(m + 1, originating, "nobody")]
    f = index.is_blocked
    out: dict[str, float] = {}
    for name, probes in (("hit", hits), ("miss", misses)):
        assert all(f(m, originating, "nobody") for m in probes) == (name == "hit")
        one = probes[0]
        t = timeit.Timer("f(m, o, a)", globals={"f": f, "m": one, "o": originating, "a": "nobody"})
        number, _ = t.autorange()
        out[f"{name}_ns"] = min(t.repeat(5, number)) / number * 1e9
        started = time.perf_counter_ns()
        for m in probes:
            f(m, originating, "nobody")
        out[f"{name}_spread_ns"] = (time.perf_counter_ns() - started) / len(probes)
    return out


def measure_load(url: str, schema: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.index_bench", "load", url] + (["--schema", schema] if schema else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"index load failed: {proc.stderr.strip()[-800:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --- the parent --------------------------------------------------------------------


def one_size(n: int, tmp: Path, pg_skip: str | None) -> list[dict[str, Any]]:
    rows = []
    url = f"sqlite:///{tmp}/index-{n}.db"
    inserted, fill_s = asyncio.run(fill(url, generate(n)))
    rows.append({"backend": "sqlite", "n": inserted, "fill_s": fill_s, **measure_load(url)})
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}/index-{n}.db{suffix}").unlink(missing_ok=True)
    if pg_skip is None:
        schema = f"bench_index_{uuid.uuid4().hex[:10]}"
        kw = {"schema": schema, "channel": schema, "command_timeout": 600}
        try:
            inserted, fill_s = asyncio.run(fill(PG_URL, generate(n), kw))
            rows.append({"backend": "postgresql", "n": inserted, "fill_s": fill_s, **measure_load(PG_URL, schema)})
        finally:
            pg_schema("drop", schema)
    return rows


def report(sizes: list[int], csv_rows: int) -> list[str]:
    pg_skip = pg_reachable()
    out = [f"index: distribution {DISTRIBUTION}"]
    if pg_skip:
        out.append(f"index: PostgreSQL {PG_URL} skipped: {pg_skip}")
    head = (f"{'backend':<10} {'blocks':>11} {'fill s':>7} {'load s':>7} {'memory_bytes':>12} {'B/block':>7} "
            f"{'RSS +':>9} {'hit ns':>7} {'miss ns':>7} {'hit ns*':>7} {'miss ns*':>8}")
    out += [head, "-" * len(head)]
    with tempfile.TemporaryDirectory(prefix="gw-index-bench-") as tmp:
        for n in sizes:
            for r in one_size(n, Path(tmp), pg_skip):
                out.append(
                    f"{r['backend']:<10} {r['blocks']:>11,} {r['fill_s']:>7.1f} {r['load_s']:>7.2f} "
                    f"{mb(r['memory_bytes']):>12} {r['memory_bytes'] / max(r['blocks'], 1):>7.2f} "
                    f"{mb(r['rss_delta']):>9} {r['hit_ns']:>7.0f} {r['miss_ns']:>7.0f} "
                    f"{r['hit_spread_ns']:>7.0f} {r['miss_spread_ns']:>8.0f}")
                out.extend(verdicts(r))
    out.append("  hit/miss ns: timeit of one key (min of 5); ns*: mean over 100k distinct keys, loop included; "
               "miss = all three scopes checked")
    out.append("  RSS +: VmRSS growth across load_store in a fresh process (pyroaring allocates with C malloc, "
               "so tracemalloc cannot see the bitmaps)")
    if csv_rows:
        from gateway.admin_bench import bench_import

        r = bench_import(csv_rows)
        ok = r["total_s"] < r["target_s"]
        out.append(f"CSV import (gateway blocks import, SQLite): {r['rows']:,} rows ({r['file_mb']} MB) in "
                   f"{r['total_s']:.1f} s = {r['rows_per_s']:,} rows/s (validate {r['validate_s']} s, "
                   f"load {r['load_s']} s; invalid {r['invalid']}): "
                   f"{'PASS' if ok else 'FAIL'} vs < {r['target_s']:.0f} s")
    return out


def verdicts(r: dict[str, Any]) -> list[str]:
    out = []
    worst = max(r["hit_spread_ns"], r["miss_spread_ns"])
    out.append(f"  lookup < 1 µs ({r['backend']}, {r['blocks']:,}): {'PASS' if worst < 1000 else 'FAIL'}")
    if r["blocks"] >= 10_000_000:
        out.append(f"  memory < 100 MB at 10M: {'PASS' if r['memory_bytes'] < 100e6 else 'FAIL'} "
                   f"(memory_bytes {mb(r['memory_bytes'])}, RSS + {mb(r['rss_delta'])})")
        if r["backend"] == "postgresql":
            out.append(f"  load < 30 s from PostgreSQL at 10M: {'PASS' if r['load_s'] < 30 else 'FAIL'}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.index_bench")
    p.add_argument("mode", choices=["load", "report"])
    p.add_argument("url", nargs="?")
    p.add_argument("--schema")
    p.add_argument("--sizes", default="1000000")
    p.add_argument("--csv-rows", type=int, default=0)
    args = p.parse_args(argv)
    if args.mode == "load":
        print(json.dumps(asyncio.run(_load(args.url, args.schema))))
    else:
        print("\n".join(report([int(x) for x in args.sizes.split(",")], args.csv_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
