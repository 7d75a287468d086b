"""Block lists for the bench: realistic generators, bulk fill through the store API, gateway figures.

Every fill goes through the gateway's own ``open_store`` + ``Store.import_blocks`` (batches
of BATCH blocks, one transaction and one "admin_import" event each): the bench writes no SQL.

Distribution (``spread``): US mobiles +1 NPA NXX XXXX. Each counterpart draws its mobiles
from AREA_CODES_PER_CP area codes (taken from a pool of 40 real, populous NPAs), exchange
NXX 200-999, line 0000-9999, uniformly inside those area codes: the way a business's
opt-outs concentrate where its customers live. Distinct per counterpart.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.store import open_store
from gateway.store.base import Block, BlockKey

BATCH = 500_000
NPAS = (212, 213, 214, 215, 216, 281, 305, 310, 312, 313, 347, 404, 408, 415, 469, 480, 503, 512, 602, 617,
        619, 646, 650, 678, 702, 713, 718, 720, 732, 773, 786, 801, 832, 858, 909, 917, 925, 949, 954, 972)
AREA_CODES_PER_CP = 3
SPREAD_NOTE = (f"US mobiles, each counterpart's in {AREA_CODES_PER_CP} of {len(NPAS)} populous area codes, "
               "NXX 200-999 and line uniform inside them")


def mobiles_in(npas: list[int], k: int, rng: random.Random, exclude: range | None = None) -> list[int]:
    """k distinct E.164 integers 1NPANXXXXXX spread uniformly over the area codes' NXX 200-999."""
    per = [k // len(npas) + (1 if i < k % len(npas) else 0) for i in range(len(npas))]
    out: list[int] = []
    for npa, n in zip(npas, per, strict=True):
        base = 10_000_000_000 + npa * 10_000_000 + 2_000_000
        picks = rng.sample(range(base, base + 8_000_000), n + (n // 100 + 10 if exclude else 0))
        if exclude is not None:
            picks = [m for m in picks if m not in exclude][:n]
        out.extend(picks)
    return out


def spread(n: int, counterparts: list[tuple[str, str]], seed: int = 7,
           exclude: range | None = None) -> Iterator[tuple[str, str, int]]:
    """(scope, counterpart, mobile) for n blocks shared evenly by counterparts (see module doc)."""
    rng = random.Random(seed)
    for i, (scope, cp) in enumerate(counterparts):
        k = n // len(counterparts) + (1 if i < n % len(counterparts) else 0)
        npas = rng.sample(NPAS, AREA_CODES_PER_CP)
        for mobile in mobiles_in(npas, k, rng, exclude):
            yield scope, cp, mobile


def as_blocks(rows: Iterator[tuple[str, str, int]], kind: str = "optout") -> Iterator[Block]:
    now = time.time()
    for scope, cp, mobile in rows:
        yield Block(BlockKey(f"+{mobile}", cp, scope), kind, "import", now)


async def fill(url: str, blocks: Iterator[Block], store_kw: dict[str, Any] | None = None) -> tuple[int, float]:
    """Import blocks into url in batches; returns (rows inserted, seconds)."""
    if store_kw:
        from gateway.store.postgres import PostgresStore

        store: Any = PostgresStore(url, **store_kw)
    else:
        store = open_store(url)
    await store.open()
    inserted = 0
    started = time.perf_counter()
    try:
        batch: list[Block] = []
        for b in blocks:
            batch.append(b)
            if len(batch) >= BATCH:
                inserted += await store.import_blocks(batch)
                batch = []
        if batch:
            inserted += await store.import_blocks(batch)
    finally:
        await store.close()
    return inserted, time.perf_counter() - started


def fill_gateway_db(db_path: Path, n: int, counterpart: str, blocked_dest: str, avoid: range) -> tuple[int, float]:
    """The blocks scenario's DB: n blocks for counterpart (scope number), one of them blocked_dest.

    avoid: the loadgen's other destinations, kept unblocked so only the intended ones are refused.
    """
    def rows() -> Iterator[Block]:
        now = time.time()
        yield Block(BlockKey(f"+{blocked_dest}", counterpart, "number"), "optout", "import", now)
        yield from as_blocks(spread(n - 1, [("number", counterpart)], exclude=avoid))

    return asyncio.run(fill(f"sqlite:///{db_path}", rows()))


def vm_rss(pid: int) -> int:
    """VmRSS of a process in bytes (0 when unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def log_event(log_path: Path, event: str) -> dict[str, Any] | None:
    """The first JSON log line of the gateway's stderr whose message/event is `event`."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if event not in line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and event in (value.get("msg"), value.get("event"), value.get("message")):
            return value
    return None


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"
