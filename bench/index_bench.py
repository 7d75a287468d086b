"""Block index figures at scale (issues 4 and 13): fill, index load, memory, lookups; CSV import.

Two layouts, per size:
- random: US mobiles drawn uniformly from +12000000000..+19999999999, scope number over 1,000
  originating numbers (what real opt-out lists look like);
- clustered: the old layout (90% scope number over 50 long codes, 9% account over 5 accounts,
  1% global; each counterpart's numbers in 3 of 40 area codes).
Per layout and size: fill a fresh store (generate + Store.import_blocks in batches), then in a fresh
process (so RSS is not polluted by the fill) BlockIndex().load_store(store): load seconds,
memory_bytes(), RssAnon growth and its peak across the load, is_blocked() hit/miss ns.
PostgreSQL runs in a throwaway schema (dropped afterwards); SQLite takes the 1M random case too
(and every case when PostgreSQL is unreachable).

`python -m bench.index_bench load URL [--schema S]` is the measuring child.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.blocks import SPREAD_NOTE, as_blocks, fill, mb, spread
from gateway.store.base import Block, BlockKey

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
LONG_CODES = [("number", f"+1415555{1000 + i:04d}") for i in range(50)]
ACCOUNTS = [("account", f"acct{i}") for i in range(5)]
DISTRIBUTION = (f"90% scope number over 50 long codes, 9% scope account over 5 accounts, 1% global; "
                f"{SPREAD_NOTE}")
PROBES = 100_000


RANDOM_COUNTERPARTS = [f"+1800555{i:04d}" for i in range(1000)]
RANDOM_NOTE = "US mobiles uniform over +12000000000..+19999999999, scope number over 1,000 originating numbers"
LAYOUTS = ("random", "clustered")


def generate(n: int, layout: str = "clustered") -> Any:
    if layout == "random":
        return random_blocks(n)
    n_num, n_acc = n * 90 // 100, n * 9 // 100
    return as_blocks(itertools.chain(
        spread(n_num, LONG_CODES, seed=1), spread(n_acc, ACCOUNTS, seed=2),
        spread(n - n_num - n_acc, [("global", "")], seed=3)))


def random_blocks(n: int, seed: int = 11) -> Iterator[Block]:
    """n distinct (mobile, counterpart) blocks: mobiles uniform over 12000000000..19999999999,
    counterparts uniform over RANDOM_COUNTERPARTS (numpy draws in chunks; repeats dropped)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    now = time.time()
    seen = 0
    shift = np.uint64(10)
    while seen < n:
        k = min(1 << 20, n - seen)
        packed = np.unique((rng.integers(12_000_000_000, 20_000_000_000, size=k + k // 100 + 10,
                                         dtype=np.uint64) << shift)
                           | rng.integers(0, len(RANDOM_COUNTERPARTS), size=k + k // 100 + 10, dtype=np.uint64))
        rng.shuffle(packed)
        # chunks are drawn apart: a repeat across chunks would only lower n by a few (1 in 8e12 a pair)
        for value in packed[:k].tolist():
            yield Block(BlockKey(f"+{value >> 10}", RANDOM_COUNTERPARTS[value & 1023], "number"),
                        "optout", "import", now)
        seen += min(k, packed.size)


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


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM, RssAnon)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def _load(url: str, schema: str | None, account: str) -> dict[str, Any]:
    from gateway.store import open_store
    from gateway.store.index import BlockIndex

    if schema:
        from gateway.store.postgres import PostgresStore

        store: Any = PostgresStore(url, schema=schema, channel=schema, command_timeout=600)
    else:
        store = open_store(url)
    await store.open()
    gc.collect()
    rss0 = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak of this load only
    index = BlockIndex()
    started = time.perf_counter()
    try:
        await index.load_store(store)
    finally:
        load_s = time.perf_counter() - started
        await store.close()
    gc.collect()
    rss = _status("VmRSS") - rss0
    out = {"blocks": len(index), "load_s": load_s, "memory_bytes": index.memory_bytes(),
           "rss_delta": rss, "peak_delta": _status("VmHWM") - rss0}
    out.update(lookups(index, account))
    return out


def _direct(n: int) -> dict[str, Any]:
    """The random layout built in memory through the same Loader the stores feed (no store): the
    figure for sizes whose PostgreSQL fill would take hours here."""
    import numpy as np

    from gateway.store.index import BlockIndex
    from gateway.store.index_load import Loader

    rng = np.random.default_rng(11)
    index = BlockIndex()
    gc.collect()
    rss0 = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    loader = Loader(index, capacity=n)
    loader.adopt_ids((i + 1, "number", cp) for i, cp in enumerate(RANDOM_COUNTERPARTS))
    for start in range(0, n, 1 << 20):
        k = min(1 << 20, n - start)
        cps = np.sort(rng.integers(0, len(RANDOM_COUNTERPARTS), size=k))
        mobiles = rng.integers(12_000_000_000, 20_000_000_000, size=k, dtype=np.int64)
        bounds = np.searchsorted(cps, np.arange(len(RANDOM_COUNTERPARTS) + 1))
        loader.groups(("number", cp, "optout", mobiles[bounds[i]:bounds[i + 1]])
                      for i, cp in enumerate(RANDOM_COUNTERPARTS))
        del cps, mobiles, bounds  # the generator's own arrays are not the index's
    loader.finish()
    load_s = time.perf_counter() - started
    gc.collect()
    out = {"blocks": len(index), "load_s": load_s, "memory_bytes": index.memory_bytes(),
           "rss_delta": _status("VmRSS") - rss0, "peak_delta": _status("VmHWM") - rss0}
    out.update(lookups(index, "nobody"))
    return out


def measure_direct(n: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.index_bench", "direct", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"index build failed: {proc.stderr.strip()[-800:]}")
    return {"backend": "memory", "n": n, "fill_s": 0.0, "layout": "random",
            **json.loads(proc.stdout.strip().splitlines()[-1])}


def lookups(index: Any, account: str) -> dict[str, float]:
    """is_blocked() ns: hits (scope number, first check) and misses (every scope with blocks checked)."""
    import numpy as np

    rng = np.random.default_rng(5)
    names = {cp: name for name, cp in index.ids["number"].items()}
    segments = index.keys.segments[0]
    hits: list[tuple[int, str]] = []
    while len(hits) < PROBES:  # the bench samples real members
        seg = segments[int(rng.integers(len(segments)))]
        key = int(seg[int(rng.integers(seg.size))]) >> 2
        name = names.get(key >> index.shift)
        if name is not None:
            hits.append((key & index.mobile_max, name))
    f = index.is_blocked
    misses = [(m + 1, o) for m, o in hits if not f(m + 1, o, account)]
    out: dict[str, float] = {}
    for label, probes in (("hit", hits), ("miss", misses)):
        assert all(f(m, o, account) for m, o in probes[:1000]) == (label == "hit")
        m, o = probes[0]
        t = timeit.Timer("f(m, o, a)", globals={"f": f, "m": m, "o": o, "a": account})
        number, _ = t.autorange()
        out[f"{label}_ns"] = min(t.repeat(5, number)) / number * 1e9
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter_ns()
            for m, o in probes:
                f(m, o, account)
            best = min(best, (time.perf_counter_ns() - started) / len(probes))
        out[f"{label}_spread_ns"] = best
    return out


def measure_load(url: str, schema: str | None = None, account: str = "nobody") -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.index_bench", "load", url, "--account", account]
    cmd += ["--schema", schema] if schema else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"index load failed: {proc.stderr.strip()[-800:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --- the parent --------------------------------------------------------------------


def one_size(n: int, layout: str, tmp: Path, pg_skip: str | None) -> list[dict[str, Any]]:
    rows = []
    account = "acct0" if layout == "clustered" else "nobody"  # clustered: misses check all three scopes
    if pg_skip is not None or (layout == "random" and n <= 1_000_000):
        url = f"sqlite:///{tmp}/index-{n}.db"
        inserted, fill_s = asyncio.run(fill(url, generate(n, layout)))
        rows.append({"backend": "sqlite", "n": inserted, "fill_s": fill_s, **measure_load(url, account=account)})
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp}/index-{n}.db{suffix}").unlink(missing_ok=True)
    if layout == "random":
        rows.append(measure_direct(n))
    if pg_skip is None and (n < 100_000_000 or os.environ.get("BENCH_INDEX_PG_100M")):
        schema = f"bench_index_{uuid.uuid4().hex[:10]}"
        kw = {"schema": schema, "channel": schema, "command_timeout": 3600}
        try:
            inserted, fill_s = asyncio.run(fill(PG_URL, generate(n, layout), kw))
            rows.append({"backend": "postgresql", "n": inserted, "fill_s": fill_s,
                         **measure_load(PG_URL, schema, account)})
        finally:
            pg_schema("drop", schema)
    return [{**r, "layout": layout} for r in rows]


def report(sizes: list[int], csv_rows: int, candidates: bool = True) -> list[str]:
    pg_skip = pg_reachable()
    out = [f"index: layout random: {RANDOM_NOTE}", f"index: layout clustered: {DISTRIBUTION}"]
    if pg_skip:
        out.append(f"index: PostgreSQL {PG_URL} skipped: {pg_skip}")
    head = (f"{'layout':<9} {'backend':<10} {'blocks':>11} {'fill s':>7} {'load s':>7} {'memory_bytes':>12} "
            f"{'B/block':>7} {'RSS +':>9} {'peak/RSS':>8} {'hit ns':>7} {'miss ns':>7} {'hit ns*':>7} {'miss ns*':>8}")
    out += [head, "-" * len(head)]
    with tempfile.TemporaryDirectory(prefix="gw-index-bench-") as tmp:
        for n in sizes:
            for layout in LAYOUTS:
                for r in one_size(n, layout, Path(tmp), pg_skip):
                    out.append(
                        f"{layout:<9} {r['backend']:<10} {r['blocks']:>11,} {r['fill_s']:>7.1f} {r['load_s']:>7.2f} "
                        f"{mb(r['memory_bytes']):>12} {r['memory_bytes'] / max(r['blocks'], 1):>7.2f} "
                        f"{mb(r['rss_delta']):>9} {r['peak_delta'] / max(r['rss_delta'], 1):>8.2f} "
                        f"{r['hit_ns']:>7.0f} {r['miss_ns']:>7.0f} {r['hit_spread_ns']:>7.0f} "
                        f"{r['miss_spread_ns']:>8.0f}")
                    out.extend(verdicts(r))
    out.append("  hit/miss ns: timeit of one key (min of 5); ns*: best of 3 passes over 100k distinct keys, loop "
               "included; misses check every scope with blocks (clustered: all three). Lookup ns are noisy on a "
               "busy machine; memory figures are not")
    out.append("  RSS +: VmRSS growth across load_store in a fresh process; peak/RSS: its peak (VmHWM, reset "
               "before the load) over that growth (target <= 1.5)")
    if candidates:
        from bench import index_candidates

        out += index_candidates.report([1_000_000])
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
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    n, per = r["blocks"], r["memory_bytes"] / max(r["blocks"], 1)
    where = f"({r['layout']}, {r['backend']}, {n:,})"
    big = n >= 10_000_000  # below, the load's fixed ~20 MB of page buffers dominate RSS
    rss_ok = f"; RSS <= 12 B a block: {mark(r['rss_delta'] / n <= 12)}" if big else ""
    peak_ok = f"; peak <= final + 50%: {mark(r['peak_delta'] <= 1.5 * r['rss_delta'])}" if big else ""
    out = [(f"  miss <= 0.5 µs {where}: {mark(r['miss_spread_ns'] <= 500)}; "
           f"memory_bytes <= 12 B a block: {mark(per <= 12)}{rss_ok}{peak_ok}")]
    if r["backend"] == "postgresql" and n >= 10_000_000:
        limit = 10.0 if n < 100_000_000 else 60.0
        out.append(f"  load < {limit:.0f} s from PostgreSQL {where}: {mark(r['load_s'] < limit)}")
    if n >= 100_000_000:
        out.append(f"  <= 1.2 GB in all {where}: {mark(max(r['memory_bytes'], r['rss_delta']) <= 1.2e9)}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.index_bench")
    p.add_argument("mode", choices=["load", "direct", "report"])
    p.add_argument("url", nargs="?")
    p.add_argument("--schema")
    p.add_argument("--account", default="nobody")
    p.add_argument("--no-candidates", action="store_true")
    p.add_argument("--sizes", default="1000000")
    p.add_argument("--csv-rows", type=int, default=0)
    args = p.parse_args(argv)
    if args.mode == "direct":
        print(json.dumps(_direct(int(args.url))))
    elif args.mode == "load":
        print(json.dumps(asyncio.run(_load(args.url, args.schema, args.account))))
    else:
        print("\n".join(report([int(x) for x in args.sizes.split(",")], args.csv_rows, not args.no_candidates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
