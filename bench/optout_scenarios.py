"""The opt-out scenarios of `make bench` (issues 3 and 4): blocks, mo, propagation.

blocks       N blocks in the gateway's SQLite DB (import_blocks), every 100th submit_sm
             to a blocked recipient: throughput, refused vs ok, index load time, RSS.
mo           keyword MO round trip through a gateway: bench.mo smsc -> gateway -> bench.mo app.
propagation  STOP acked on gateway A -> first 0x0B on gateway B, both on one PostgreSQL schema.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from bench import run as R
from bench.blocks import fill_gateway_db, log_event, mb, vm_rss
from bench.procs import Child, Children

nan = float("nan")
BUSINESS = "14155550000"  # the loadgen's source_addr (bench.loadgen.templates)
LOADGEN_DESTS = range(14155550000, 14155551000)  # its other destinations: never blocked
MO_BASE = 12085550000  # area code 208: none of bench.blocks.NPAS, so never pre-blocked
PROP_BASE = 12085560000


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def run_blocks(kids: Children, args: argparse.Namespace, sink: Child, sink_port: int, workdir: Path,
               results: list[R.Result], baseline_rss: int) -> tuple[list[str], list[str], Path | None]:
    """(report lines, stop notes, the filled DB for reuse)."""
    db_path = workdir / "blocks.db"
    n = args.blocks
    inserted, fill_s = fill_gateway_db(db_path, n, "+" + BUSINESS, R.BLOCKED_DEST, LOADGEN_DESTS)
    lines = [(f"blocks: {inserted:,} blocks (scope number, counterpart +{BUSINESS}, incl. +{R.BLOCKED_DEST}) "
             f"imported with Store.import_blocks in {fill_s:.1f} s")]
    t0 = time.monotonic()
    gw = R.start_gateway(kids, args, sink_port, db_path, name="gateway-blocks", env_extra={"GATEWAY_LOG_LEVEL": "INFO"})
    ready_s = time.monotonic() - t0
    rss = vm_rss(gw.child.pid)
    notes = []
    try:
        extra = ["--blocked-every", str(R.BLOCKED_EVERY), "--blocked-dest", R.BLOCKED_DEST]
        result = R.run_load(kids, args, "blocks", gw.smpp_port, sink, gw.child, extra=extra)
        results.append(result)
        rss_after = vm_rss(gw.child.pid)
    finally:
        notes.append(R.stop_gateway(gw))
    loaded = log_event(gw.child.log_path, "blocks_loaded") or {}
    lines.append(f"blocks: gateway index load {loaded.get('seconds', '?')} s for {loaded.get('blocks', '?'):,} blocks "
                 f"(its blocks_loaded log line, log level INFO; spawn -> ready {ready_s:.1f} s)"
                 if isinstance(loaded.get("blocks"), int) else "blocks: no blocks_loaded log line found")
    base = f", baseline gateway with an empty DB {mb(baseline_rss)} -> growth {mb(rss - baseline_rss)}" \
        if baseline_rss else ""
    lines.append(f"blocks: gateway VmRSS after start {mb(rss)}{base}; after the run {mb(rss_after)}")
    lines += blocks_check(result)
    return lines, notes, db_path


def blocks_check(r: R.Result) -> list[str]:
    check = r.load.get("blocked_check") or {}
    refused_ok = check.get("blocked:0xb", 0)
    wrong = {k: v for k, v in check.items() if k != "blocked:0xb"}
    refused = sum(v for k, v in check.items() if k.endswith(":0xb"))
    ok = r.count - sum(check.values()) + check.get("blocked:0x0", 0)
    exact = refused_ok > 0 and not wrong
    rate = r.load["rate"]
    return [
        (f"blocks: {r.count:,} submit_sm measured: ok {ok:,}, refused 0x0B {refused:,} "
        f"(expected ~{r.count // R.BLOCKED_EVERY:,}); exactly the blocked ones refused: "
        f"{'PASS' if exact else 'FAIL ' + str(wrong)}"),
        (f"target ≥ {R.TARGET_RATE:,} msg/s with blocks loaded, 1/{R.BLOCKED_EVERY} blocked ({r.binds}×{r.window}): "
        f"{'PASS' if rate >= R.TARGET_RATE else 'FAIL'} ({rate:,.0f} msg/s, p50 {r.load['p50_ms']:.3f} ms, "
        f"p99 {r.load['p99_ms']:.3f} ms)"),
    ]


def _mo_stack(kids: Children, args: argparse.Namespace, db_url: str, name: str, base: int, count: int,
              inflight: str, gap: float, workdir: Path) -> tuple[Child, R.Gateway, Child]:
    smsc = kids.spawn(f"{name}-smsc", [R.PY, "-m", "bench.mo", "smsc", "--count", str(count),
                                       "--inflight", inflight, "--gap", str(gap), "--mobile-base", str(base)])
    port = int(smsc.json_line(timeout=30)["port"])
    gw = R.start_gateway(kids, args, port, workdir / "unused.db", name=f"gateway-{name}",
                         env_extra={"GATEWAY_DATABASE_URL": db_url, "GATEWAY_LOG_LEVEL": "INFO"})
    app = kids.spawn(f"{name}-app", [R.PY, "-m", "bench.mo", "app", "--port", str(gw.smpp_port)])
    app.expect("bound", timeout=30)
    return smsc, gw, app


def run_mo(kids: Children, args: argparse.Namespace, workdir: Path, db_path: Path | None) -> tuple[list[str], list[str]]:
    fresh = db_path is None
    db_path = db_path or workdir / "mo.db"
    smsc, gw, app = _mo_stack(kids, args, f"sqlite:///{db_path}", "mo", MO_BASE, args.mo_count,
                              args.mo_inflight, 0.0, workdir)
    notes: list[str] = []
    try:
        time.sleep(0.2)
        os.kill(smsc.pid, signal.SIGUSR1)
        res = smsc.expect("result", timeout=60 + 0.1 * args.mo_count)
        rss = vm_rss(gw.child.pid)
    finally:
        app.stop()
        received = _result(app).get("received", "?")
        notes.append(R.stop_gateway(gw))
        smsc.stop()
    where = "a fresh SQLite DB" if fresh else "the blocks scenario's SQLite DB"
    lines = [(f"mo: deliver_sm 'STOP' from distinct mobiles to +{BUSINESS} over {res['links']} carrier binds, "
             f"gateway on {where} (log level INFO), application bound as receiver (default route); "
             f"gateway VmRSS {mb(rss)}"),
             ("mo: (a) deliver_sm -> deliver_sm_resp at the SMSC: block durable + MO forwarded + application ack; "
             "(b) deliver_sm -> auto-reply submit_sm at the SMSC")]
    total = 0
    for ph in res["phases"]:
        mos = ph["mos"]
        a = [1e3 * (m["resp"] - m["sent"]) for m in mos if "resp" in m and m["resp"] > 0]
        b = [1e3 * (m["reply"] - m["sent"]) for m in mos if "reply" in m]
        total += len(mos)
        lines.append(f"mo: {len(mos)} MOs, {ph['inflight']} in flight: {len(a) / ph['seconds']:,.0f} MO/s; "
                     f"(a) p50 {pct(a, .5):.2f} ms p99 {pct(a, .99):.2f} ms; (b) p50 {pct(b, .5):.2f} ms "
                     f"p99 {pct(b, .99):.2f} ms; acked {len(a)}/{len(mos)}, replies {len(b)}/{len(mos)}")
    lines.append(f"mo: the application received {received} of {total} MOs")
    return lines, notes


def _result(child: Child) -> dict[str, Any]:
    try:
        return child.expect("result", timeout=5)
    except RuntimeError:
        return {}


def pg_url_for(schema: str) -> tuple[str, str]:
    """The GATEWAY_DATABASE_URL for schema: ?schema= when the store accepts it, else ?search_path=."""
    import asyncio

    from bench.index_bench import PG_URL
    from gateway.store import open_store

    async def probe(url: str) -> None:
        store = open_store(url)
        try:
            await store.open()
        finally:
            await store.close()

    url = f"{PG_URL}?schema={schema}"
    try:
        asyncio.run(probe(url))
        return url, f"?schema={schema} accepted"
    except Exception as exc:  # noqa: BLE001 - any failure: fall back and say why
        return f"{PG_URL}?search_path={schema}", (f"?schema= NOT supported ({exc}); used ?search_path={schema} "
                                                   "(asyncpg server setting) on a schema the bench created")


def pg_count_blocks(schema: str) -> int | str:
    import asyncio

    import asyncpg

    from bench.index_bench import PG_URL

    async def count() -> int:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".blocks'))
        finally:
            await conn.close()

    try:
        return asyncio.run(count())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return f"? ({exc})"


def run_propagation(kids: Children, args: argparse.Namespace, sink_port: int, workdir: Path) -> tuple[list[str], list[str]]:
    from bench.index_bench import PG_URL, pg_reachable, pg_schema

    why = pg_reachable()
    if why:
        return [f"propagation: skipped, PostgreSQL {PG_URL} unreachable: {why}"], []
    schema = f"bench_prop_{uuid.uuid4().hex[:10]}"
    pg_schema("create", schema)
    notes: list[str] = []
    count = args.prop_count
    try:
        url, how = pg_url_for(schema)
        smsc, gw_a, app = _mo_stack(kids, args, url, "prop-a", PROP_BASE, count, "1", 0.25, workdir)
        gw_b = R.start_gateway(kids, args, sink_port, workdir / "unused.db", name="gateway-prop-b",
                               env_extra={"GATEWAY_DATABASE_URL": url})
        probe = kids.spawn("prop-probe", [R.PY, "-m", "bench.mo", "probe", "--port", str(gw_b.smpp_port),
                                          "--count", str(count), "--mobile-base", str(PROP_BASE),
                                          "--interval", "0.002", "--timeout", str(5 + count)])
        try:
            probe.expect("bound", timeout=30)
            time.sleep(0.3)
            os.kill(smsc.pid, signal.SIGUSR1)
            res = smsc.expect("result", timeout=30 + count)
            seen = probe.expect("result", timeout=30 + count)
        finally:
            probe.stop()
            app.stop()
            notes += [R.stop_gateway(gw_a), R.stop_gateway(gw_b)]
            smsc.stop()
        in_schema = pg_count_blocks(schema)
    finally:
        pg_schema("drop", schema)
    refused = seen.get("refused", {})
    mos = [m for m in res["phases"][0]["mos"] if m.get("resp", 0) > 0 and m["mobile"] in refused]
    from_ack = [1e3 * (refused[m["mobile"]] - m["resp"]) for m in mos]
    from_mo = [1e3 * (refused[m["mobile"]] - m["sent"]) for m in mos]
    within = sum(d < 1000 for d in from_ack)
    lines = [(f"propagation: two gateways on one PostgreSQL, schema {schema}: {how}; "
             f"STOP blocks found in that schema: {in_schema}"),
             (f"propagation: STOP acked on A -> first 0x0B on B (B probed every 2 ms per mobile): "
              f"{len(mos)}/{count} refused; p50 {pct(from_ack, .5):.1f} ms, max {max(from_ack, default=nan):.1f} ms "
              f"(negative: B refused before A's ack reached the carrier, A acks after the application does); "
              f"deliver_sm sent to A -> 0x0B on B: p50 {pct(from_mo, .5):.1f} ms, max {max(from_mo, default=nan):.1f} ms"),
             f"target STOP through A refuses on B within 1 s: {'PASS' if within == count else 'FAIL'} ({within}/{count})"]
    return lines, notes
