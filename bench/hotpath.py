"""Issue 10's bench figures: the minimal-forwarder ratio, CPU per message with shaping on and off,
and shaping accuracy.

  forwarder  loadgen -> bench.forwarder -> sink: the least an SMPP-aware proxy does (same load)
  limits     like gateway with account and carrier max_tps far above the load (shaping on, not
             binding); 'gateway' is the same without limits (shaping off)
  shaping    the measured rate at a carrier max_tps and at an account max_tps of 1,000 and 10,000:
             carrier: every submit waits its turn and succeeds, the rate is the OK rate;
             account: the rest get 0x58 at once, the rate is the OK rate too. Target: within 2 %.

The ratio is gateway msg/s / forwarder msg/s of the same run (target >= 0.5, shaping on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.procs import Child, Children

TARGET_RATIO = 0.5
TARGET_US = 5.0  # gateway CPU per message
SHAPING_RATES = (1_000, 10_000)
SHAPING_KINDS = ("carrier", "account")
SHAPING_TOLERANCE = 0.02


def run_forwarder(kids: Children, args: argparse.Namespace, sink: Child, sink_port: int, results: list) -> None:  # type: ignore[type-arg]
    from bench import run as R

    fwd = kids.spawn("forwarder", [R.PY, "-m", "bench.forwarder", "--sink-port", str(sink_port),
                                   "--sessions", str(args.carrier_sessions)])
    port = int(fwd.json_line(timeout=30)["port"])
    try:
        results.append(R.run_load(kids, args, "forwarder", port, sink, fwd))
    finally:
        fwd.stop(timeout=5.0)


def run_limits(kids: Children, args: argparse.Namespace, sink: Child, sink_port: int, workdir: Path,
               results: list, notes: list[str]) -> None:  # type: ignore[type-arg]
    """The 'gateway' load with shaping on (account and carrier max_tps 1e9: never binding)."""
    from bench import run as R

    on = argparse.Namespace(**{**vars(args), "limits": True})
    gw = R.start_gateway(kids, on, sink_port, workdir / "bench-limits.db", name="gateway-limits")
    try:
        results.append(R.run_load(kids, on, "limits", gw.smpp_port, sink, gw.child))
    finally:
        notes.append(R.stop_gateway(gw))


def _ok_rate(load: dict[str, Any]) -> float:
    refused = sum(int(v) for v in (load.get("statuses") or {}).values())
    return (int(load["count"]) - refused) / float(load["seconds"] or 1.0)


def run_shaping(kids: Children, args: argparse.Namespace, sink: Child, sink_port: int, workdir: Path,
                notes: list[str]) -> list[str]:
    """One gateway per (kind, limit); the loadgen offers as much as the window allows."""
    from bench import run as R

    lines = []
    for kind in getattr(args, "shaping_kinds", SHAPING_KINDS):
        for limit in SHAPING_RATES:
            if kind == "carrier":
                env = {"GATEWAY_CARRIER__MAX_TPS": str(limit)}
            else:
                env = {"GATEWAY_ACCOUNTS": json.dumps([{"system_id": "bench", "password": "bench",
                                                        "window": args.window, "max_binds": 64,
                                                        "max_tps": limit}])}
            name = f"gateway-{kind}-{limit}"
            gw = R.start_gateway(kids, args, sink_port, workdir / f"{name}.db", name=name, env_extra=env)
            try:
                r = R.run_load(kids, args, f"{kind}-{limit}", gw.smpp_port, sink, gw.child)
            finally:
                notes.append(R.stop_gateway(gw))
            rate = _ok_rate(r.load)
            err = rate / limit - 1
            ok = abs(err) <= SHAPING_TOLERANCE
            lines.append(f"shaping {kind} max_tps {limit:>6,}: measured {rate:>9,.1f} OK/s, error {err:+.2%} "
                         f"(target within {SHAPING_TOLERANCE:.0%}): {'PASS' if ok else 'FAIL'}"
                         f"  [{r.load['rate']:,.0f} answers/s, p99 {r.load['p99_ms']:.1f} ms, {r.load.get('statuses') or {}}]")
    return lines


def _us(r: Any) -> float | None:
    return 1e6 * r.gw_cpu_s / r.count if r.gw_cpu_s is not None and r.count else None


def verdict(by: dict) -> list[str]:  # type: ignore[type-arg]
    out = []
    fwd = by.get("forwarder")
    for name, label in (("gateway", "shaping off"), ("limits", "shaping on, not binding")):
        if name not in by:
            continue
        r = by[name]
        us = _us(r)
        if us is not None:
            out.append(f"gateway CPU per message ({label}): {us:.2f} µs, target ≤ {TARGET_US:g} µs: "
                       f"{'PASS' if us <= TARGET_US else 'FAIL'}")
        if fwd is not None:
            ratio = r.load["rate"] / fwd.load["rate"]
            line = (f"minimal-forwarder ratio ({label}): {r.load['rate']:,.0f} / {fwd.load['rate']:,.0f} msg/s "
                    f"= {ratio:.2f}")
            if name == "limits":
                line += f", target ≥ {TARGET_RATIO}: {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}"
            out.append(line)
    if fwd is not None and _us(fwd) is not None:
        out.append(f"minimal forwarder CPU per message: {_us(fwd):.2f} µs")
    return out
