"""`bench_import(n, url)`: time `gateway blocks import` of n generated rows (for `make bench`).

python -m gateway.admin_bench --rows 1000000 [--url sqlite:////tmp/bench.db]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.admin_import import import_blocks
from gateway.admin_rows import RowDefaults
from gateway.store import Store, open_store

BUSINESS = ("+14155550100", "+14155550101", "+442071838750")


def write_csv(path: Path, n: int, seed: int = 1) -> None:
    """n distinct US/UK mobiles, every column filled, mixed created_at formats."""
    rng = random.Random(seed)
    picks = rng.sample(range(10**9), n)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("number,counterpart,scope,kind,source,created_at\n")
        for i, p in enumerate(picks):
            number = f"+1{2 + p % 8}{p // 8 % 10**9:09d}" if i % 4 else f"+447{p:09d}"
            when = "2024-05-01T12:00:00Z" if i % 2 else "1714564800"
            f.write(f"{number},{BUSINESS[i % 3]},number,optout,import,{when}\n")


async def _run(path: Path, url: str, schema: str | None) -> dict[str, Any]:
    if schema:
        from gateway.store.postgres import PostgresStore

        store: Store = PostgresStore(url, schema=schema, channel=schema)
    else:
        store = open_store(url)
    await store.open()
    try:
        started = time.perf_counter()
        with path.open(encoding="utf-8", newline="") as source:
            report = await import_blocks(store, source, RowDefaults("number"), "US", err=io.StringIO())
        total = time.perf_counter() - started
    finally:
        await store.close()
    return {
        "rows": report.read, "invalid": report.invalid, "inserted": report.inserted,
        "slow_checks": report.slow_checks, "validate_s": round(report.validate_seconds, 2),
        "load_s": round(report.load_seconds, 2), "total_s": round(total, 2),
        "rows_per_s": round(report.read / total),
    }


def bench_import(n: int, url: str | None = None, schema: str | None = None) -> dict[str, Any]:
    """Generate n rows, import them into url (default: a fresh SQLite file), return timings.

    schema: a PostgreSQL schema to create the tables in (dropping it is the caller's job).
    """
    with tempfile.TemporaryDirectory(prefix="gw-import-bench-") as tmp:
        path = Path(tmp) / "blocks.csv"
        write_csv(path, n)
        result = asyncio.run(_run(path, url or f"sqlite:///{tmp}/bench.db", schema))
        result["file_mb"] = round(os.path.getsize(path) / 1e6, 1)
    result["backend"] = (url or "sqlite").split(":", 1)[0]
    result["target_s"] = 60.0
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--url", help="database URL (default: a fresh temporary SQLite file)")
    p.add_argument("--schema", help="PostgreSQL schema for the tables (not dropped afterwards)")
    args = p.parse_args()
    print(json.dumps(bench_import(args.rows, args.url, args.schema)))


if __name__ == "__main__":
    main()
