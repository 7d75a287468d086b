"""`make bench` (`python -m bench.run`): submit_sm throughput and latency, direct and through the gateway.

Processes: a sink SMSC (bench.sink), the gateway (`python -m gateway run`, pointed at
the sink) and one load generator per scenario (bench.loadgen). Scenarios:

  direct   loadgen -> sink, binds x window, as fast as the window allows
  gateway  loadgen -> gateway -> sink, same load; the ratio to direct
  forwarder  loadgen -> bench.forwarder -> sink: the minimal SMPP-aware forwarder (bench.hotpath)
  limits   like gateway with account and carrier max_tps set far above the load (shaping on);
           prints gateway/forwarder msg/s (the ratio, target >= 0.5) and gateway CPU µs/msg on and off
  shaping  measured rate at carrier and account max_tps of 1,000 and 10,000 (within 2 %)
  tls      like gateway with both legs on SMPP over TLS (loadgen -TLS-> gateway -TLS-> sink):
           msg/s and p99 beside the plaintext 'gateway' figure of the same run (target ≥ 0.6×)
  paced    loadgen -> gateway -> sink at --rate msg/s total: p50/p99 latency
  blocks   like gateway with --blocks N (default 1,000,000) loaded into its SQLite DB and
           every 100th submit_sm to a blocked recipient: refused vs ok, index load, RSS
  mo       keyword MO round trip: STOP in, block durable, reply out, MO forwarded and acked
  index    BlockIndex bytes a block, load seconds and peak, lookup ns (hit, miss) at 1M (and --scale N:
           10000000, 100000000) for random US mobiles over 1,000 counterparts and the clustered layout;
           the candidate structures side by side (bench.index_candidates); the 1M-row CSV import
  propagation  STOP acked on gateway A -> refusal on gateway B, one PostgreSQL (skipped
           when unreachable; --no-propagation)
  routes   receipt-route map: bytes per route at --routes N (default 2,000,000) and the longest
           event-loop stall while they are purged (bench.routes_bench)

Gateway CPU per message is utime+stime from /proc/<pid>/stat across the measured window.
`python -m bench.hotloop [--limits] [--profile]`: the same MT path in one process with fake
transports (no syscalls): CPU and Python function calls per message, for comparing code changes.
BENCH_ARGS="--binds 8 --window 50 --duration 10" make bench
BENCH_ARGS="--scale 10000000" make bench       (index figures at 1M and 10M; 100000000: 1M and 100M)
BENCH_ARGS="--scenarios direct,gateway,paced" make bench   (the core proxy only)
BENCH_ARGS="--scenarios direct,gateway --limits" make bench   (with shaping on but not binding)
BENCH_ARGS="--scenarios gateway --dest-prefix 44740012 --programs" make bench   (programs and quiet hours
    configured, window open; compare with the same line without --programs; 1415555 at night: deferred)
BENCH_ARGS="--scenarios forwarder,gateway,limits" make bench   (the ratio and CPU per message, issue 10)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profiling
from bench.procs import Child, Children, free_port

PY = sys.executable
SCENARIOS = ("direct", "forwarder", "gateway", "limits", "shaping", "tls", "paced", "blocks", "mo", "index", "propagation", "crash", "routes")
TARGET_RATE = 50_000  # submit_sm/s through the gateway, 4 binds x window 100 (issue 2)
TARGET_P99_MS = 2.0  # at 10,000 msg/s paced
BLOCKED_EVERY = 100
BLOCKED_DEST = "14155559999"


@dataclass
class Result:
    scenario: str
    binds: int
    window: int
    rate: float
    load: dict[str, Any]
    gw_cpu_s: float | None = None
    sink_cpu_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.load["count"])

    @property
    def seconds(self) -> float:
        return float(self.load["seconds"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--binds", type=int, default=4, help="application binds (default 4)")
    p.add_argument("--window", type=int, default=100, help="outstanding submit_sm per bind (default 100)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per scenario (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    p.add_argument("--rate", type=float, default=10_000, help="total msg/s of the paced scenario (default 10000)")
    p.add_argument("--carrier-sessions", type=int, default=2, help="gateway carrier binds (default 2)")
    p.add_argument("--carrier-window", type=int, default=1000, help="gateway window per carrier bind")
    p.add_argument("--bind", choices=["transmitter", "transceiver"], default="transmitter")
    p.add_argument("--registered-delivery", type=int, default=0, help="1: every submit_sm asks for a receipt")
    p.add_argument("--limits", action="store_true",
                   help="configure account and carrier max_tps far above the load (shaping on, not binding)")
    p.add_argument("--programs", action="store_true",
                   help="the bench account declares programs (a transactional one and a marketing default with "
                        "quiet hours 'defer'), a program keyword, and an all-day window for GB: every submit_sm "
                        "takes the program and quiet-hours step")
    p.add_argument("--dest-prefix", default="1415555",
                   help="loadgen destinations: this prefix and 4 digits (44740012: UK, where --programs opens the "
                        "window all day; 1415555: California, held by quiet hours at night, then deferred)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated, from {','.join(SCENARIOS)} (default all)")
    p.add_argument("--routes", type=int, default=2_000_000, help="receipt routes in the 'routes' scenario")
    p.add_argument("--blocks", type=int, default=1_000_000, help="blocks loaded in the 'blocks' scenario")
    p.add_argument("--scale", type=int, default=1_000_000,
                   help="index figures at 1M and, when larger, at this many blocks too (default 1M only)")
    p.add_argument("--csv-rows", type=int, default=1_000_000, help="rows of the CSV import figure (0: skip)")
    p.add_argument("--mo-count", type=int, default=200, help="MOs per phase of the 'mo' scenario")
    p.add_argument("--mo-inflight", default="1,8", help="MOs in flight, one phase each (default 1,8)")
    p.add_argument("--prop-count", type=int, default=10, help="STOPs timed by the 'propagation' scenario")
    p.add_argument("--propagation", action=argparse.BooleanOptionalAction, default=True,
                   help="run 'propagation' (default: on; skipped with a note when PostgreSQL is unreachable)")
    p.add_argument("--profile", choices=["none", "py-spy", "cprofile"], default="none",
                   help="profile the gateway during the 'gateway' scenario and print its hot spots")
    p.add_argument("--gateway-cmd", default="-m gateway run",
                   help="python arguments that start the gateway (default: -m gateway run)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not args.propagation and "propagation" in args.scenarios:
        args.scenarios.remove("propagation")
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


# --- the gateway ------------------------------------------------------------------


@dataclass
class Gateway:
    child: Child
    smpp_port: int
    http_port: int


# --programs: the loadgen sends from 14155550000 to 1415555xxxx (California): marketing by default,
# held by quiet hours at night (then 'defer' rewrites schedule_delivery_time, the costlier path)
BENCH_PROGRAMS = {"programs": [
    {"name": "alerts", "category": "transactional", "service_types": ["ALRT"]},
    {"name": "promo", "category": "marketing", "default": True, "quiet_hours": "defer"},
]}


def gateway_env(args: argparse.Namespace, sink_port: int, db_path: Path, smpp: int, http: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({
        "GATEWAY_LISTEN__PORT": str(smpp),
        "GATEWAY_HTTP__PORT": str(http),
        "GATEWAY_CARRIER__PORT": str(sink_port),
        "GATEWAY_CARRIER__SESSIONS": str(args.carrier_sessions),
        "GATEWAY_CARRIER__WINDOW": str(args.carrier_window),
        "GATEWAY_ACCOUNTS": json.dumps(
            [{"system_id": "bench", "password": "bench", "window": args.window, "max_binds": 64,
              **({"max_tps": 1e9} if args.limits else {}), **(BENCH_PROGRAMS if args.programs else {})}]),
        "GATEWAY_DATABASE_URL": f"sqlite:///{db_path}",
        "GATEWAY_LOG_LEVEL": "WARNING",
    })
    if args.limits:
        env["GATEWAY_CARRIER__MAX_TPS"] = "1e9"
    if args.programs:
        env["GATEWAY_OPTOUT__PROGRAMS__KEYWORDS"] = json.dumps([{"program": "promo", "stop": ["STOP PROMO"]}])
        env["GATEWAY_OPTOUT__PROGRAMS__QUIET_HOURS__COUNTRIES"] = json.dumps(
            {"GB": [{"start": "00:00", "end": "24:00"}], "FR": [{"start": "08:00", "end": "22:00"}]})
    return env


def start_gateway(kids: Children, args: argparse.Namespace, sink_port: int, db_path: Path,
                  name: str = "gateway", profile_out: Path | None = None,
                  env_extra: dict[str, str] | None = None) -> Gateway:
    smpp, http = free_port(), free_port()
    cmd = [PY, *args.gateway_cmd.split()]
    if profile_out is not None:
        cmd = [PY, "-m", "bench.gwprofile", str(profile_out), "run"]
    child = kids.spawn(name, cmd, {**gateway_env(args, sink_port, db_path, smpp, http), **(env_extra or {})})
    url = f"http://127.0.0.1:{http}/readyz"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{name} exited {child.proc.returncode} before ready{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return Gateway(child, smpp, http)
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready within 60 s{child.tail()}")


def stop_gateway(gw: Gateway) -> str:
    rc = gw.child.stop(timeout=30)
    if rc == 0:
        return f"{gw.child.name}: SIGTERM -> exit 0"
    if rc is None:
        return f"{gw.child.name}: SIGTERM -> still running after 30 s, killed{gw.child.tail()}"
    return f"{gw.child.name}: SIGTERM -> exit {rc} (expected 0){gw.child.tail()}"


# --- one load run -------------------------------------------------------------------


def run_load(kids: Children, args: argparse.Namespace, scenario: str, port: int, sink: Child,
             gateway: Child | None = None, rate: float = 0, extra: list[str] | None = None,
             profile: str = "none", logdir: Path | None = None) -> Result:
    cmd = [PY, "-m", "bench.loadgen", "--port", str(port), "--binds", str(args.binds), "--window", str(args.window),
           "--duration", str(args.duration), "--warmup", str(args.warmup), "--rate", str(rate),
           "--bind", args.bind, "--registered-delivery", str(args.registered_delivery),
           "--dest-prefix", args.dest_prefix, *(extra or [])]
    gen = kids.spawn(f"loadgen-{scenario}", cmd)
    gen.expect("bound", timeout=30)
    gen.expect("measure_start", timeout=args.warmup + 30)
    sink0 = sink.cpu()
    gw0 = gateway.cpu() if gateway else 0.0
    spy = None
    if profile == "py-spy" and gateway is not None and logdir is not None:
        spy = profiling.start_py_spy(gateway.pid, args.duration, logdir / "py-spy.raw")
    gen.expect("measure_end", timeout=args.duration + 30)
    sink1 = sink.cpu()
    gw1 = gateway.cpu() if gateway else 0.0
    load = gen.expect("result", timeout=60)
    if gen.wait(timeout=15) != 0:
        raise RuntimeError(f"{gen.name} failed{gen.tail()}")
    result = Result(scenario, args.binds, args.window, rate, load,
                    gw_cpu_s=(gw1 - gw0) if gateway else None, sink_cpu_s=sink1 - sink0)
    if spy is not None:
        _, err = spy.communicate(timeout=args.duration + 30)
        if spy.returncode != 0:
            result.notes.append(f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
    return result


# --- the table ----------------------------------------------------------------------


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(results: list[Result]) -> str:
    head = (f"{'scenario':<10} {'binds×win':>9} {'target/s':>9} {'msg/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'p99.9 ms':>8} {'max ms':>8} {'gw µs/msg':>9} {'gw CPU':>7} {'sink CPU':>8} {'gen CPU':>7}  errors")
    lines = [head, "-" * len(head)]
    for r in results:
        secs = r.seconds or 1.0
        gw_us = f"{1e6 * r.gw_cpu_s / r.count:.1f}" if r.gw_cpu_s is not None and r.count else "-"
        gw_pct = f"{100 * r.gw_cpu_s / secs:.0f}%" if r.gw_cpu_s is not None else "-"
        errs = dict(r.load.get("statuses") or {})
        for key in ("window_full", "unanswered"):
            if r.load.get(key):
                errs[key] = r.load[key]
        lines.append(
            f"{r.scenario:<10} {f'{r.binds}×{r.window}':>9} {f'{r.rate:,.0f}' if r.rate else 'max':>9} "
            f"{r.load['rate']:>10,.0f} {_ms(r.load['p50_ms']):>8} {_ms(r.load['p99_ms']):>8} "
            f"{_ms(r.load['p999_ms']):>8} {_ms(r.load['max_ms']):>8} {gw_us:>9} {gw_pct:>7} "
            f"{100 * r.sink_cpu_s / secs:>7.0f}% {r.load['cpu_pct']:>6.0f}%  {errs or '-'}")
    return "\n".join(lines)


def verdicts(results: list[Result]) -> list[str]:
    by = {r.scenario: r for r in results}
    out = []
    if "direct" in by and "gateway" in by:
        out.append(f"gateway/direct throughput: {by['gateway'].load['rate'] / by['direct'].load['rate']:.1%}")
    if "gateway" in by:
        g = by["gateway"]
        ok = g.load["rate"] >= TARGET_RATE
        out.append(f"target ≥ {TARGET_RATE:,} msg/s through the gateway ({g.binds}×{g.window}): "
                   f"{'PASS' if ok else 'FAIL'} ({g.load['rate']:,.0f})")
    if "paced" in by:
        pc = by["paced"]
        ok = pc.load["p99_ms"] < TARGET_P99_MS and pc.load["rate"] >= 0.97 * pc.rate
        out.append(f"target p99 < {TARGET_P99_MS} ms at {pc.rate:,.0f} msg/s paced: "
                   f"{'PASS' if ok else 'FAIL'} (p99 {pc.load['p99_ms']:.3f} ms at {pc.load['rate']:,.0f} msg/s)")
    from bench import hotpath
    from bench.tls_scenario import verdict

    out += hotpath.verdict(by)
    out += verdict(by)
    for r in results:
        for note in r.notes:
            out.append(f"{r.scenario}: {note}")
    return out


# --- main ---------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Result], list[str], list[str]]:
    """(table rows, stop notes, the opt-out sections' lines)."""
    from bench import optout_scenarios as O  # imports this module: keep it out of module scope

    results: list[Result] = []
    notes: list[str] = []
    lines: list[str] = []
    baseline_rss = 0
    with Children(workdir) as kids:
        sink = kids.spawn("sink", [PY, "-m", "bench.sink", "--port", "0"])
        sink_port = int(sink.json_line(timeout=30)["port"])
        if "direct" in args.scenarios:
            results.append(run_load(kids, args, "direct", sink_port, sink))
        if {"gateway", "paced"} & set(args.scenarios):
            prof = workdir / "gateway.prof" if args.profile == "cprofile" else None
            gw = start_gateway(kids, args, sink_port, workdir / "bench.db", profile_out=prof)
            baseline_rss = O.vm_rss(gw.child.pid)
            try:
                if "gateway" in args.scenarios:
                    results.append(run_load(kids, args, "gateway", gw.smpp_port, sink, gw.child,
                                            profile=args.profile, logdir=workdir))
                if "paced" in args.scenarios:
                    results.append(run_load(kids, args, "paced", gw.smpp_port, sink, gw.child, rate=args.rate))
            finally:
                notes.append(stop_gateway(gw))
        from bench import hotpath

        if "forwarder" in args.scenarios:
            hotpath.run_forwarder(kids, args, sink, sink_port, results)
        if "limits" in args.scenarios:
            hotpath.run_limits(kids, args, sink, sink_port, workdir, results, notes)
        if "shaping" in args.scenarios:
            lines += hotpath.run_shaping(kids, args, sink, sink_port, workdir, notes)
        if "tls" in args.scenarios:
            from bench.tls_scenario import run_tls

            run_tls(kids, args, workdir, results, notes)
        blocks_db = None
        if "blocks" in args.scenarios:
            more, stops, blocks_db = O.run_blocks(kids, args, sink, sink_port, workdir, results, baseline_rss)
            lines += more
            notes += stops
        if "mo" in args.scenarios:
            more, stops = O.run_mo(kids, args, workdir, blocks_db)
            lines += more
            notes += stops
        if "propagation" in args.scenarios:
            more, stops = O.run_propagation(kids, args, sink_port, workdir)
            lines += more
            notes += stops
    if "index" in args.scenarios:
        from bench import index_bench

        sizes = sorted({1_000_000, args.scale})
        lines += index_bench.report(sizes, args.csv_rows)
    if "routes" in args.scenarios:
        from bench import routes_bench

        lines += routes_bench.report(args.routes)
    if "crash" in args.scenarios:
        import asyncio

        from bench import crash_window

        crash = asyncio.run(crash_window.measure())
        lines.append(f"crash: receipt routes after SIGKILL at 5,000 submit/s: {crash['acked']:,} acked, "
                     f"{crash['lost_routes']:,} not persisted (≈ {crash['lost_ms']:.0f} ms; flush interval 250 ms)")
    return results, notes, lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    print(f"bench: {args.binds} binds × window {args.window}, {args.duration:g} s after {args.warmup:g} s warm-up, "
          f"carrier sessions {args.carrier_sessions}, {os.cpu_count()} CPUs; logs in {workdir}", flush=True)
    try:
        results, notes, lines = run(args, workdir)
    except (RuntimeError, OSError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    if results:
        print()
        print(table(results))
        print()
    for line in verdicts(results):
        print(line)
    if lines:
        print()
    for line in lines + notes:
        print(line)
    if args.profile == "py-spy" and (workdir / "py-spy.raw").exists():
        print("\n" + profiling.summarize_py_spy(workdir / "py-spy.raw"))
    if args.profile == "cprofile" and (workdir / "gateway.prof").exists():
        print("\n" + profiling.summarize_cprofile(workdir / "gateway.prof"))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2, default=str))
    return 0 if all("exit 0" in n for n in notes if n.startswith("gateway")) else 1


if __name__ == "__main__":
    sys.exit(main())
