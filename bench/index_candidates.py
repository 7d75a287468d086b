"""Block index candidates side by side (issue 13): bytes a block, build seconds, lookup ns.

Each candidate holds packed 64-bit keys (counterpart id << 44 | mobile digits) and is built in a
fresh child process, so its VmRSS growth is its own. Layouts:
- random: US mobiles uniform over +12000000000..+19999999999, over 1,000 counterparts
- clustered: the old bench layout, 50 counterparts, each in 3 of 40 area codes

Candidates: cykhash Int64Set (when installed), sorted numpy uint64 array with an rbloom Bloom
filter in front, pyroaring BitMap64 over two key layouts (counterpart high: cp<<44|mobile;
mobile high: mobile<<20|cp), and a plain Python set (the model) for reference.

`python -m bench.index_candidates [--sizes 1000000,10000000]` prints the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.blocks import NPAS, mb

CANDIDATES = ("cykhash", "numpy+rbloom", "roaring-cp-high", "roaring-mobile-high", "python-set")
PROBES = 100_000
SHIFT = 44


def keys(n: int, layout: str, seed: int = 1) -> Any:
    """n distinct packed keys (cp << 44 | mobile) as a numpy uint64 array, unsorted."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if layout == "random":
        cps, lo, hi = 1000, 12_000_000_000, 20_000_000_000
        mobiles = rng.integers(lo, hi, size=n + n // 50, dtype=np.uint64)
        cp = rng.integers(0, cps, size=mobiles.size, dtype=np.uint64)
    else:
        cps = 50
        cp = rng.integers(0, cps, size=n + n // 50, dtype=np.uint64)
        npa_of = np.array([rng.choice(NPAS, 3, replace=False) for _ in range(cps)], dtype=np.uint64)
        npa = npa_of[cp, rng.integers(0, 3, size=cp.size)]
        mobiles = 10_000_000_000 + npa * 10_000_000 + 2_000_000 + rng.integers(0, 8_000_000, size=cp.size,
                                                                                 dtype=np.uint64)
    packed = np.unique((cp << np.uint64(SHIFT)) | mobiles)
    rng.shuffle(packed)
    return packed[:n]


def probes(packed: Any) -> tuple[list[int], list[int]]:
    import numpy as np

    rng = np.random.default_rng(9)
    hits = packed[rng.integers(0, packed.size, PROBES)].tolist()
    members = set(hits)
    misses = [k + 1 for k in hits if k + 1 not in members][:PROBES]
    return hits, misses


def build(name: str, packed: Any) -> tuple[Any, Any]:
    """(structure, contains function)."""
    import numpy as np

    if name == "cykhash":
        from cykhash import Int64Set

        s = Int64Set(number_of_elements_hint=packed.size)
        s.update(packed.view(np.int64))
        return s, s.__contains__
    if name == "numpy+rbloom":
        from rbloom import Bloom

        arr = np.sort(packed)
        bloom = Bloom(max(arr.size, 1), 0.01)
        for start in range(0, arr.size, 1 << 20):
            bloom.update(arr[start:start + (1 << 20)].tolist())
        search, u64, size = np.searchsorted, np.uint64, arr.size

        def contains(k: int) -> bool:  # a uint64 probe: a Python int would make numpy cast the array
            if k not in bloom:
                return False
            i = int(search(arr, u64(k)))
            return i < size and int(arr[i]) == k

        return (arr, bloom), contains
    if name.startswith("roaring"):
        from pyroaring import BitMap64

        if name == "roaring-mobile-high":
            cp = packed >> np.uint64(SHIFT)
            mobile = packed & np.uint64((1 << SHIFT) - 1)
            packed = (mobile << np.uint64(20)) | cp
        bm = BitMap64()
        for start in range(0, packed.size, 1 << 20):
            bm.update(packed[start:start + (1 << 20)].tolist())
        bm.run_optimize()
        bm.shrink_to_fit()
        if name == "roaring-mobile-high":
            mask = (1 << SHIFT) - 1
            return bm, lambda k: ((k & mask) << 20 | k >> SHIFT) in bm
        return bm, bm.__contains__
    s = set(packed.tolist())
    return s, s.__contains__


def rss_anon() -> int:
    """RssAnon of this process in bytes: the keys are read from a mapped file, which is not counted."""
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(name: str, n: int, layout: str, path: str) -> dict[str, Any]:
    import numpy as np

    packed = np.load(path, mmap_mode="r")
    hits, misses = probes(packed)
    gc.collect()
    rss0 = rss_anon()
    started = time.perf_counter()
    structure, contains = build(name, packed)
    build_s = time.perf_counter() - started
    del packed
    gc.collect()
    out: dict[str, Any] = {"candidate": name, "n": n, "layout": layout, "build_s": build_s,
                           "rss_delta": rss_anon() - rss0}
    if name == "numpy+rbloom":
        arr, bloom = structure
        out["exact_bytes"] = arr.nbytes + bloom.size_in_bits // 8
    for label, ks in (("hit", hits), ("miss", misses)):
        assert all(map(contains, ks[:1000])) == (label == "hit")
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            for k in ks:
                contains(k)
            best = min(best, (time.perf_counter_ns() - t0) / len(ks))
        out[f"{label}_ns"] = best
    return out


def run_child(name: str, n: int, layout: str, path: str) -> dict[str, Any] | str:
    cmd = [sys.executable, "-m", "bench.index_candidates", "child", name, str(n), layout, path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def report(sizes: list[int], candidates: tuple[str, ...] = CANDIDATES) -> list[str]:
    out = [("index candidates: packed 64-bit keys (counterpart id << 44 | mobile); random = US mobiles "
           "uniform over +12000000000..+19999999999 on 1,000 counterparts; clustered = 50 counterparts, "
           "3 area codes each"),
           (f"{'candidate':<20} {'layout':<9} {'blocks':>11} {'build s':>7} {'RSS +':>9} {'B/block':>7} "
           f"{'hit ns':>7} {'miss ns':>7}")]
    import numpy as np

    for n in sizes:
        for layout in ("random", "clustered"):
            with tempfile.TemporaryDirectory(prefix="gw-cand-") as tmp:
                path = f"{tmp}/keys.npy"
                np.save(path, keys(n, layout))
                out.extend(one_layout(n, layout, path, candidates))
    out.append("  RSS +: RssAnon growth across the build in a fresh child (the keys come from a mapped file), "
               "reliable; hit/miss ns: best of 3 passes over 100k distinct keys, Python loop included "
               "(noisy on a busy machine); numpy+rbloom at 1% false positives")
    return out


def one_layout(n: int, layout: str, path: str, candidates: tuple[str, ...]) -> list[str]:
    out = []
    for name in candidates:
        if name == "python-set" and n > 10_000_000:
            continue
        r = run_child(name, n, layout, path)
        if isinstance(r, str):
            out.append(f"{name:<20} {layout:<9} {n:>11,} not measured: {r[:80]}")
            continue
        exact = f" (exact {r['exact_bytes'] / n:.2f})" if "exact_bytes" in r else ""
        out.append(f"{name:<20} {layout:<9} {n:>11,} {r['build_s']:>7.2f} {mb(r['rss_delta']):>9} "
                   f"{r['rss_delta'] / n:>7.2f} {r['hit_ns']:>7.0f} {r['miss_ns']:>7.0f}{exact}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.index_candidates")
    p.add_argument("mode", nargs="?", default="report", choices=["report", "child"])
    p.add_argument("args", nargs="*")
    p.add_argument("--sizes", default="1000000,10000000")
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    a = p.parse_args(argv)
    if a.mode == "child":
        name, n, layout, path = a.args
        print(json.dumps(measure(name, int(n), layout, path)))
    else:
        print("\n".join(report([int(x) for x in a.sizes.split(",")], tuple(a.candidates.split(",")))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
