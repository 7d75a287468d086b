"""Chaos soak: two gateways on one PostgreSQL behind fault proxies, applications and a carrier,
a seeded schedule of faults, and every message counted end to end.

    python -m bench.soak --duration 60 --seed 1        (make soak SOAK_ARGS="--duration 600")

    apps ──▶ gateway 0 ──▶ faultproxy ──▶ carrier (in this process)
         ──▶ gateway 1 ──▶ faultproxy ──▶
              │  └──────▶ faultproxy ──▶ PostgreSQL (one schema, dropped at the end)
              └─────────▶ faultproxy ──▶

Faults: carrier link cut / stall / refuse / cut mid-PDU / delay / throttle, PostgreSQL outages
(refuse and cut, stall) per gateway, SIGKILL of a gateway and restart, SIGTERM and restart,
applications dropping their session mid-window or before answering a deliver_sm. After the
duration the faults stop, everything settles, and `bench.soak_ledger.check` judges the books.
The last line is `soak: N submitted, N delivered, N lost, N duplicated, N faults injected,
N invariants broken`; the exit status is 1 when anything was lost or an invariant broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench.faultproxy import FaultProxy
from bench.soak_apps import App, submit_body
from bench.soak_carrier import SoakCarrier
from bench.soak_ledger import Ledger, check, render
from gateway.smpp import pdu as P
from gateway.smpp.pdu import cstring

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "pw"
# name -> (weight, shortest hold, longest hold)
FAULTS: dict[str, tuple[float, float, float]] = {
    "carrier cut": (3, 0, 0), "carrier stall": (2, 2, 6), "carrier refuse": (2, 1, 5),
    "carrier cut mid-PDU": (1.5, 1, 3), "carrier delay": (1, 2, 5), "carrier throttle": (1, 2, 5),
    "store outage": (2, 1, 5), "store stall": (1, 1, 3),
    "gateway SIGKILL": (1.5, 1, 4), "gateway SIGTERM": (1.5, 0.5, 2),
    "app abort mid-window": (2, 0, 0), "app abort before deliver_sm_resp": (1, 0, 0),
}
PROXY_KIND = {"carrier cut": "cut", "carrier stall": "stall", "carrier refuse": "refuse",
              "carrier cut mid-PDU": "mid_pdu", "carrier delay": "delay", "carrier throttle": "throttle",
              "store outage": "refuse", "store stall": "stall"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProc:
    """One `gateway run` child (bench.soakgw), restartable on the same ports."""

    def __init__(self, index: int, env: dict[str, str], logdir: Path, ledger: Ledger) -> None:
        self.index = index
        self.env = env
        self.port = int(env["GATEWAY_LISTEN__PORT"])
        self.http_port = int(env["GATEWAY_HTTP__PORT"])
        self.log_path = logdir / f"gateway{index}.log"
        self.ledger = ledger
        self.proc: asyncio.subprocess.Process | None = None
        self.killed_at: list[float] = []
        self.up_since = 0.0
        self.starts = 0

    async def start(self, timeout: float = 60) -> None:
        """Spawn and wait until /readyz answers 200; respawn while it exits (store away)."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - a local file, once a start
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.soakgw", "run", env=self.env,
                    stdout=asyncio.subprocess.DEVNULL, stderr=log, start_new_session=True)
            self.starts += 1
            while time.monotonic() < deadline and self.proc.returncode is None:
                if await http_status(self.http_port, "/readyz") == 200:
                    self.up_since = self.ledger.now()
                    return
                await asyncio.sleep(0.2)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"gateway {self.index} not ready within {timeout} s; see {self.log_path}")
            await asyncio.sleep(0.5)  # exited (PostgreSQL unreachable at start): again

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        assert self.proc is not None
        self.ledger.crashed(self.index)
        self.killed_at.append(self.ledger.now())
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.ledger.notes.append(f"gateway {self.index} ignored SIGTERM for {timeout} s: killed")
            await self.kill()
            return None

    def killed_since(self, since: float) -> bool:
        return any(t >= since for t in self.killed_at)

    def resources(self) -> dict[str, float]:
        assert self.proc is not None
        pid = self.proc.pid
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        rss = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        return {"fds": float(fds), "rss_mb": rss}


async def http_status(port: int, path: str) -> int:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 3)
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.ledger = Ledger()
        self.logdir = Path(args.logdir or tempfile.mkdtemp(prefix="soak-"))
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.dsn = args.dsn or os.environ.get("GATEWAY_TEST_DATABASE_URL") or DEFAULT_DSN
        self.schema = f"soak_{os.getpid()}_{args.seed}"
        self.mobiles = [f"+1415555{2000 + i:04d}" for i in range(args.mobiles)]
        self.numbers = {f"+14155550{100 + k:03d}": f"app{k}" for k in range(args.apps)}
        self.carrier = SoakCarrier(self.ledger, random.Random(args.seed + 1), self.mobiles, self.numbers)
        self.carrier_proxies: list[FaultProxy] = []
        self.store_proxies: list[FaultProxy] = []
        self.gateways: list[GatewayProc] = []
        self.apps: list[App] = []
        self.process_lock = asyncio.Lock()
        self.busy: set[tuple[str, int]] = set()  # (carrier|store, gateway) with a fault on
        self.stop_traffic = asyncio.Event()
        self.settling = asyncio.Event()
        self.stop_all = asyncio.Event()
        self.baselines: dict[int, dict[str, float]] = {}

    # --- set-up -------------------------------------------------------------------------

    def gateway_env(self, index: int, carrier_port: int, store_port: int) -> dict[str, str]:
        parts = urlsplit(self.dsn)
        user = f"{parts.username}@" if parts.username else ""
        url = parts._replace(netloc=f"{user}127.0.0.1:{store_port}", query=f"schema={self.schema}").geturl()
        accounts = [{"system_id": app, "password": PASSWORD, "numbers": [number], "window": 100}
                    for number, app in self.numbers.items()]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "SOAK_"))}
        env.update({
            "GATEWAY_LISTEN__PORT": str(free_port()), "GATEWAY_HTTP__PORT": str(free_port()),
            "GATEWAY_CARRIER__HOST": "127.0.0.1", "GATEWAY_CARRIER__PORT": str(carrier_port),
            "GATEWAY_CARRIER__SYSTEM_ID": "gw", "GATEWAY_CARRIER__PASSWORD": "gwpw",
            "GATEWAY_CARRIER__SESSIONS": "2", "GATEWAY_CARRIER__RESPONSE_TIMEOUT": "3",
            "GATEWAY_CARRIER__ENQUIRE_LINK_INTERVAL": "2",
            "GATEWAY_CARRIER__RECONNECT_MIN_INTERVAL": "0.2", "GATEWAY_CARRIER__RECONNECT_MAX_INTERVAL": "2",
            "GATEWAY_ESME__RESPONSE_TIMEOUT": "5", "GATEWAY_DRAIN_TIMEOUT": "6",
            "GATEWAY_ACCOUNTS": json.dumps(accounts), "GATEWAY_DATABASE_URL": url,
            "GATEWAY_LOG_LEVEL": "WARNING",
        })
        if self.args.drop_mo_every:
            env["SOAK_DROP_MO_EVERY"] = str(self.args.drop_mo_every)
        return env

    async def setup(self) -> None:
        await self.carrier.start()
        self.carrier.gateway_of = self.gateway_of
        parts = urlsplit(self.dsn)
        for index in range(2):
            carrier_proxy = FaultProxy("127.0.0.1", self.carrier.smpp_port)
            store_proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
            await carrier_proxy.start()
            await store_proxy.start()
            self.carrier_proxies.append(carrier_proxy)
            self.store_proxies.append(store_proxy)
            env = self.gateway_env(index, carrier_proxy.port, store_proxy.port)
            self.gateways.append(GatewayProc(index, env, self.logdir, self.ledger))
        await asyncio.gather(*(gw.start() for gw in self.gateways))
        ports = [gw.port for gw in self.gateways]
        per_app = self.args.rate / self.args.apps
        for number, name in self.numbers.items():
            self.apps.append(App(name, number, self.mobiles, self.ledger, random.Random(f"{self.args.seed}{name}"),
                                 ports, self.killed, per_app, window=50, owners=self.numbers))

    def gateway_of(self, session: Any) -> int:
        """Which gateway a carrier session belongs to (by the proxy's upstream port)."""
        try:
            port = int(session.writer.get_extra_info("peername")[1])
        except (TypeError, IndexError, ValueError):
            return -1
        for index, proxy in enumerate(self.carrier_proxies):
            if port in proxy.upstream_ports():
                return index
        return -1

    def killed(self, gateway: int, since: float) -> bool:
        return self.gateways[gateway].killed_since(since)

    # --- running ------------------------------------------------------------------------------

    async def mo_source(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        made = 0
        while not self.stop_traffic.is_set():
            due = int((loop.time() - start) * self.args.mo_rate)
            while made < due:
                made += 1
                self.carrier.new_mo(self.args.keyword_share)
            await asyncio.sleep(0.02)

    async def faults(self) -> None:
        targets = {name: ["0", "1"] for name in FAULTS}
        for name in ("app abort mid-window", "app abort before deliver_sm_resp"):
            targets[name] = [str(i) for i in range(len(self.apps))]
        plan = schedule_plan(self.args.seed, self.args.duration, targets, self.args.fault_interval)
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = set()
        for fault in plan:
            await asyncio.sleep(max(0.0, start + fault.at - loop.time()))
            if self.stop_traffic.is_set():
                break
            task = loop.create_task(self.inject(fault.kind, int(fault.target), fault.hold))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)

    async def inject(self, kind: str, target: int, hold: float) -> None:
        at = self.ledger.now()
        if kind.startswith("app abort"):
            self.apps[target].abort_mode = "window" if "window" in kind else "deliver"
            self.ledger.fault_log.append((at, kind, f"app{target}", 0))
            return  # counted by the app when it acts
        if kind.startswith("gateway"):
            if self.process_lock.locked():
                return  # one process fault at a time, and never both gateways down
            async with self.process_lock:
                gw = self.gateways[target]
                self.ledger.faults[kind] += 1
                self.ledger.fault_log.append((at, kind, f"gateway{target}", hold))
                if kind == "gateway SIGKILL":
                    await gw.kill()
                else:
                    await gw.terminate()
                await asyncio.sleep(hold)
                self.store_proxies[target].heal()  # a restart needs its store
                await gw.start()
                self.baselines.pop(target, None)
            return
        proxies = self.carrier_proxies if kind.startswith("carrier") else self.store_proxies
        link = (kind.split()[0], target)
        if link in self.busy:
            return  # one fault at a time on a link: the end of one must not heal another
        self.busy.add(link)
        proxy = proxies[target]
        self.ledger.faults[kind] += 1
        self.ledger.fault_log.append((at, kind, f"gateway{target}", hold))
        if kind.startswith("store"):
            self.ledger.store_outages.append((target, at, at + hold))
        try:
            await proxy.inject(PROXY_KIND[kind], hold, delay=0.3, bandwidth=20_000)
        finally:
            self.busy.discard(link)

    async def sample_baselines(self) -> None:
        """Each gateway's fds and RSS 15 s after it (re)started: the baseline for the leak check."""
        while not self.stop_all.is_set():
            for gw in self.gateways:
                if gw.alive and gw.index not in self.baselines and self.ledger.now() - gw.up_since >= 15:
                    self.baselines[gw.index] = gw.resources()
            await asyncio.sleep(1)

    async def settle(self) -> dict[str, Any]:
        """Faults off, both gateways up, no new traffic; wait until every message has an end."""
        for proxy in self.carrier_proxies + self.store_proxies:
            proxy.heal()
        async with self.process_lock:
            for gw in self.gateways:
                if not gw.alive:
                    await gw.start()
        self.settling.set()
        deadline = time.monotonic() + self.args.settle
        outbox = -1
        while time.monotonic() < deadline:
            unresolved = sum(app.unresolved() for app in self.apps)
            pending = self.carrier.pending()
            outbox = await self.outbox_rows()
            if not unresolved and not any(pending.values()) and outbox == 0:
                break
            await asyncio.sleep(1)
        return {"outbox": outbox}

    async def outbox_rows(self) -> int:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=5)
        except (OSError, asyncpg.PostgresError):
            return -1
        try:
            exists = await conn.fetchval("SELECT to_regclass($1)", f'"{self.schema}".outbox')
            if exists is None:
                return 0
            return int(await conn.fetchval(f'SELECT count(*) FROM "{self.schema}".outbox'))
        finally:
            await conn.close()

    async def outbox_post_mortem(self) -> None:
        """Why rows are still queued: per account, attempts, leases and retry times."""
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            rows = await conn.fetch(
                f'SELECT account, count(*) AS n, min(attempts) AS amin, max(attempts) AS amax, '
                f'count(*) FILTER (WHERE locked_until > extract(epoch FROM now())) AS leased, '
                f'max(locked_until) - extract(epoch FROM now()) AS lease_left, '
                f'min(next_attempt_at) - extract(epoch FROM now()) AS next_in, '
                f'array_agg(DISTINCT locked_by) AS owners FROM "{self.schema}".outbox GROUP BY account')
        finally:
            await conn.close()
        for row in rows:
            self.ledger.notes.append(f"outbox left: {dict(row)}")

    async def store_blocks(self) -> set[tuple[str, str]]:
        from gateway.store import open_store

        parts = urlsplit(self.dsn)
        store = open_store(parts._replace(query=f"schema={self.schema}").geturl())
        await store.open()
        try:
            blocks = await store.list_blocks(limit=1_000_000)
        finally:
            await store.close()
        return {(b.key.number, b.key.counterpart) for b in blocks}

    async def probe(self, pairs: list[tuple[str, str]]) -> None:
        """Every pair that should be blocked, submitted on both gateways: refused, never sent."""
        loop = asyncio.get_running_loop()
        for gi, gw in enumerate(self.gateways):
            for number, app in self.numbers.items():
                mine = [m for m, n in pairs if n == number]
                if not mine:
                    continue
                results: dict[int, int] = {}
                done = asyncio.Event()
                session = Probe(results, done)
                transport, _ = await loop.create_connection(lambda s=session: s, "127.0.0.1", gw.port)
                transport.write(P.encode(P.BIND_TRANSCEIVER, 0, 1, cstring(app) + cstring(PASSWORD)
                                         + cstring("soak") + bytes([0x34, 0, 0]) + cstring("")))
                for i, mobile in enumerate(mine):
                    text = f"pr {mobile}>{number} {gi}".encode()
                    transport.write(P.encode(P.SUBMIT_SM, 0, 100 + i, submit_body(number, mobile, text, 0)))
                session.expect = len(mine)
                try:
                    await asyncio.wait_for(done.wait(), 30)
                except TimeoutError:
                    self.ledger.unanswered["probe submit_sm"] += len(mine) - len(results)
                transport.close()
                for i, mobile in enumerate(mine):
                    pair = f"{mobile}>{number}"
                    status = results.get(100 + i, -1)
                    self.ledger.probes.append((pair, gi, status, False))
        await asyncio.sleep(1)
        reached = self.carrier.probes_reached
        self.ledger.probes = [(p, g, s, f"{p} {g}" in reached) for p, g, s, _ in self.ledger.probes]

    async def run(self) -> int:
        print(f"soak: seed {self.args.seed}, {self.args.duration:g} s, logs in {self.logdir}", flush=True)
        await self.setup()
        loop = asyncio.get_running_loop()
        background = [loop.create_task(self.carrier.run_deliveries()), loop.create_task(self.sample_baselines())]
        traffic = [loop.create_task(self.mo_source())]
        for app in self.apps:
            traffic.append(loop.create_task(app.offer(self.stop_traffic)))
            background.append(loop.create_task(app.run(self.stop_all, self.settling)))
        faults = loop.create_task(self.faults())
        await asyncio.sleep(self.args.duration)
        self.stop_traffic.set()
        await asyncio.gather(*traffic)
        await faults
        await self.settle()
        expected = self.ledger.expected_blocks()
        blocked = [pair for pair, on in expected.items() if on]
        await self.probe(blocked)
        outbox = await self.outbox_rows()
        if outbox:
            await self.outbox_post_mortem()
        await asyncio.sleep(2)
        for gw in self.gateways:
            base = self.baselines.get(gw.index)
            if base is not None and gw.alive:
                self.ledger.resources.append((gw.index, base, gw.resources()))
        store_blocks = await self.store_blocks()
        self.stop_all.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for gw in self.gateways:
            code = await gw.terminate()
            if code not in (0, None):
                self.ledger.notes.append(f"gateway {gw.index} exited {code} on SIGTERM")
        await self.carrier.stop(unbind_timeout=0)
        for proxy in self.carrier_proxies + self.store_proxies:
            await proxy.aclose()
        if not self.args.keep_schema:
            await drop_schema(self.dsn, self.schema)
        else:
            print(f"schema {self.schema} kept", flush=True)
        self.dump()
        verdict = check(self.ledger, store_blocks, outbox, self.carrier.pending())
        for gi, base, end in self.ledger.resources:
            print(f"gateway {gi}: fds {base['fds']:.0f} -> {end['fds']:.0f}, "
                  f"RSS {base['rss_mb']:.0f} -> {end['rss_mb']:.0f} MB")
        for gw in self.gateways:
            print(f"gateway {gw.index}: started {gw.starts} times")
        for note in self.ledger.notes:
            print(f"note: {note}")
        print(render(verdict, self.args.seed), flush=True)
        return 1 if verdict.lost or verdict.broken else 0


    def dump(self) -> None:
        """The fault log and the keyword history of every pair an invariant names, for replay."""
        ledger = self.ledger
        pairs = {(ledger.mts[t].destination, ledger.mts[t].source) for t, _ in ledger.blocked_arrivals}
        data = {"seed": self.args.seed, "faults": ledger.fault_log,
                "pairs": {f"{m}>{n}": ledger.keyword_events.get((m, n), []) for m, n in pairs},
                "blocked_arrivals": ledger.blocked_arrivals,
                "kills": {gw.index: gw.killed_at for gw in self.gateways}}
        (self.logdir / "soak-debug.json").write_text(json.dumps(data, indent=1))


class Probe(asyncio.Protocol):
    def __init__(self, results: dict[int, int], done: asyncio.Event) -> None:
        self.results = results
        self.done = done
        self.framer = P.Framer()
        self.expect = 1 << 30

    def data_received(self, data: bytes) -> None:
        for pdu in self.framer.feed(data):
            if pdu.command_id == P.SUBMIT_SM_RESP:
                self.results[pdu.sequence_number] = pdu.command_status
                if len(self.results) >= self.expect:
                    self.done.set()


def schedule_plan(seed: int, duration: float, targets: dict[str, list[str]], interval: float) -> list[Any]:
    from bench.faultproxy import schedule

    return schedule(seed, duration, FAULTS, targets, interval, start=min(5.0, duration / 4))


async def drop_schema(dsn: str, schema: str) -> None:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic and faults (60)")
    p.add_argument("--seed", type=int, default=None, help="replays a run (default: random, printed)")
    p.add_argument("--rate", type=float, default=240.0, help="MT submits per second, all apps (240)")
    p.add_argument("--mo-rate", type=float, default=40.0, help="MO per second from the carrier (40)")
    p.add_argument("--keyword-share", type=float, default=0.2, help="share of MO that are STOP/START/HELP")
    p.add_argument("--apps", type=int, default=4)
    p.add_argument("--mobiles", type=int, default=40, help="the pool of mobiles (40)")
    p.add_argument("--fault-interval", type=float, default=8.0, help="mean seconds between faults (8)")
    p.add_argument("--settle", type=float, default=120.0, help="longest wait for the system to settle")
    p.add_argument("--dsn", default=None, help="PostgreSQL (default GATEWAY_TEST_DATABASE_URL or local test)")
    p.add_argument("--logdir", default=None)
    p.add_argument("--keep-schema", action="store_true", help="leave the PostgreSQL schema for a post-mortem")
    p.add_argument("--drop-mo-every", type=int, default=0,
                   help="test only: gateways drop every Nth MO (the checker must report it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    from bench.procs import use_uvloop

    use_uvloop()
    return asyncio.run(Soak(args).run())


if __name__ == "__main__":
    sys.exit(main())
