"""Receipt-route map figures (issue 7 item 10): memory per route and the longest event-loop stall
while the expired routes are purged, through the Proxy's own remember_route / purge_routes.

In a fresh process (so RSS growth is the map's own): fill N routes (16-hex-digit ids, 4 accounts),
VmRSS growth / N = bytes per route; then, inside a running loop, purge them all as the gateway's
ticker does (one purge_routes call) while a heartbeat task measures the longest gap between loop
iterations in thread CPU time: the longest stall the purge caused any other connection (CPU time,
so that a busy shared machine preempting the process does not count as the purge's stall).

`python -m bench.routes_bench [--routes N]` prints one JSON line; bench.run calls report().
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.blocks import vm_rss

ACCOUNTS = ["acme", "beta", "gamma", "delta"]
TARGET_STALL_MS = 10.0


def measure(n: int) -> dict[str, Any]:
    from gateway.config import load_settings
    from gateway.metrics import Metrics
    from gateway.proxy import Proxy

    settings = load_settings(None, accounts=[{"system_id": a, "password": "pw"} for a in ACCOUNTS],
                             routing={"max_receipt_routes": max(n, 1000)})
    proxy = Proxy(settings, Metrics())
    gc.collect()
    before = vm_rss(os.getpid())
    started = time.perf_counter()
    for i in range(n):
        proxy.remember_route(b"%016x" % (0x5A00000000 + i * 7919), ACCOUNTS[i & 3], 0.0)
    insert_s = time.perf_counter() - started
    gc.collect()
    grown = vm_rss(os.getpid()) - before
    stall, purge_s = asyncio.run(_purge(proxy, settings.routing.receipt_route_ttl * 2))
    return {"routes": n, "bytes_per_route": grown / max(n, 1), "rss_delta": grown,
            "insert_ns": 1e9 * insert_s / max(n, 1), "max_stall_ms": 1000 * stall, "purge_s": purge_s}


async def _purge(proxy: Any, later: float) -> tuple[float, float]:
    longest = 0.0
    done = False

    async def heartbeat() -> None:  # CPU time of this thread: a busy machine's preemption is not ours
        nonlocal longest
        last = time.thread_time()
        while not done:
            await asyncio.sleep(0)
            now = time.thread_time()
            longest = max(longest, now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    started = time.perf_counter()
    proxy.purge_routes(later)  # what the ticker calls every 60 s
    while len(proxy.routes):
        await asyncio.sleep(0)
    purge_s = time.perf_counter() - started
    done = True
    await beat
    return longest, purge_s


def report(n: int) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "bench.routes_bench", "--routes", str(n)],
                         capture_output=True, text=True, timeout=600, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    verdict = "ok" if r["max_stall_ms"] < TARGET_STALL_MS else "MISSED"
    memory = (f"routes: {r['routes']:,} receipt routes: +{r['rss_delta'] / 1e6:.0f} MB RSS, "
              f"{r['bytes_per_route']:.0f} B/route, remember_route {r['insert_ns']:.0f} ns")
    stall = (f"routes: purge of all {r['routes']:,}: {r['purge_s'] * 1000:.0f} ms in total, longest event-loop "
             f"stall {r['max_stall_ms']:.1f} ms CPU (target < {TARGET_STALL_MS:g} ms: {verdict})")
    return [memory, stall]

def main() -> None:
    p = argparse.ArgumentParser(prog="bench.routes_bench")
    p.add_argument("--routes", type=int, default=2_000_000)
    args = p.parse_args()
    print(json.dumps(measure(args.routes)))


if __name__ == "__main__":
    main()
