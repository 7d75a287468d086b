"""Start order, the periodic tick, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import pidfile, sdnotify
from gateway.admin.api import AdminApi
from gateway.admin.auth import ApiTokens
from gateway.carrier import CarrierPool
from gateway.cluster import ClusterShare
from gateway.config import Settings
from gateway.errors import ConfigError, StoreError
from gateway.esme_server import EsmeServer
from gateway.httpd import BearerToken, Response, start_http
from gateway.metrics import Metrics
from gateway.optout import OptoutPolicy
from gateway.outbox import Outbox
from gateway.proxy import NullPolicy, Policy, Proxy
from gateway.reload import ConfigSource, Reloader, ReloadResult, settings_part
from gateway.store import describe_database, open_store, require_existing, resolve_database_url
from gateway.store.base import Store
from gateway.store.index import BlockIndex
from gateway.sync import IndexSync
from gateway.tls import TlsSet

log = logging.getLogger(__name__)
TICK_INTERVAL = 0.25
ROUTE_PURGE_INTERVAL = 60.0
HOUSEKEEPING_INTERVAL = 3600.0


class Gateway:
    def __init__(self, settings: Settings, policy: Policy | None = None, source: ConfigSource | None = None) -> None:
        self.settings = settings  # what runs: a reload replaces it (restart-needed settings kept)
        self.metrics = Metrics()
        self.proxy = Proxy(settings, self.metrics, policy)
        self.store: Store | None = None
        self.index = BlockIndex()
        self.optout: OptoutPolicy | None = None
        self.sync: IndexSync | None = None
        self.outbox: Outbox | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._flusher_task: asyncio.Task[None] | None = None
        self._refusals_task: asyncio.Task[None] | None = None
        # ConfigError when a file does not load: before anything starts; reports each file's expiry
        self.tls = TlsSet(settings, self.metrics.certificate_expiry)
        self.metrics_token = metrics_token(settings)
        self.reloader = Reloader(self.metrics, settings, source)  # source: where settings came from
        self.tls.register(self.reloader)
        self.reloader.add("http.metrics_token", self._prepare_token)
        self.reloader.add("settings", settings_part(self))
        self.reloader.version = lambda: self.optout.version if self.optout else self.settings.optout.config_version
        self.admin_api = AdminApi(self)  # off until http.api_tokens has one; ConfigError: a token file
        self.notifier: sdnotify.Notifier | None = None  # systemd Type=notify: reloads are announced (handle_sighup)
        self.reloader.add("http.api_tokens", lambda s: self.admin_api.tokens.prepare(s.http.api_tokens))
        self.esme = EsmeServer(self.proxy, settings.esme)
        self.carrier = CarrierPool(self.proxy, settings.carrier, self.tls.carrier)
        self.cluster = ClusterShare(settings.cluster, self.metrics)
        self.cluster.on_share = self.proxy.apply_share  # every account and carrier limit takes its share
        self.http: asyncio.Server | None = None
        self.smpp_port = 0
        self.smpp_tls_port = 0
        self.http_port = 0
        self._tick_task: asyncio.Task[None] | None = None
        self.stopped = asyncio.Event()
        self.metrics.ready.set_function(lambda: 1.0 if self.ready() else 0.0)  # read at scrape time

    async def start(self) -> None:
        s = self.settings
        if self.proxy.policy is None or isinstance(self.proxy.policy, NullPolicy):
            await self._open_store()
        if self.store is not None:
            await self.cluster.start(self.store)  # the share is known before the first bind
        if s.carrier.tls and not s.carrier.tls_verify:
            log.warning("carrier_tls_unverified", extra={"carrier": s.carrier.host,
                                                         "reason": "carrier.tls_verify is false"})
        self.carrier.start()
        if s.listen.enabled:
            self.smpp_port = await self.esme.start(s.listen.host, s.listen.port)
        if self.tls.listen is not None:
            self.smpp_tls_port = await self.esme.start(s.listen_tls.host, s.listen_tls.port, self.tls.listen)
        http_tls = self.tls.http.context if self.tls.http is not None else None
        self.http = await start_http(s.http.host, s.http.port, self._http, self.metrics_token, http_tls,
                                     mount=self.admin_api)
        self.http_port = int(self.http.sockets[0].getsockname()[1])
        self._tick_task = asyncio.create_task(self._ticker(), name="tick")
        gc.collect()
        gc.freeze()  # phonenumbers metadata and the block index never need scanning again
        log.info("gateway_started", extra={"smpp_port": self.smpp_port, "smpp_tls_port": self.smpp_tls_port,
                                           "http_port": self.http_port})

    def reload(self) -> ReloadResult:
        """SIGHUP and the admin API: re-read the configuration and apply it between two PDUs
        (gateway/reload.py). Truthy when applied; an invalid file changes nothing. Under systemd
        (`notifier`, set by handle_sighup) the reload is announced: RELOADING=1, then READY=1."""
        notifier = self.notifier
        if notifier is None or not notifier.enabled:
            return self.reloader.reload()
        # started (READY=1 sent once): systemd holds `systemctl reload` from RELOADING=1 until READY=1,
        # which ends the reload whether the carrier is bound now or not. Before that: no READY early.
        announce = notifier.ready_sent
        if announce:
            notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        result = self.reloader.reload()
        lines = ["READY=1"] if announce else []
        notifier.notify(*lines, f"STATUS=reload {'applied' if result else 'failed: nothing changed'}")
        return result

    def _prepare_token(self, s: Settings) -> Callable[[], None]:
        token = s.http.metrics_token.get_secret_value().strip() if s.http.metrics_token is not None else None
        return self.metrics_token.prepare(token, s.http.metrics_token_file)

    async def _open_store(self) -> None:
        """Open the store, load every block into the in-memory index, plug the opt-out engine in."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        url = resolve_database_url(self.settings.database_url)  # once: a later chdir moves nothing
        if self.settings.database_must_exist:
            await require_existing(url)
        self.store = store = open_store(url)
        await store.open()
        last = await store.last_event_id()
        await self.index.load_store(store)
        self.optout = optout = OptoutPolicy(self.settings.optout, store, self.index, self.proxy)
        self.proxy.policy = optout
        self.sync = IndexSync(store, self.index, last, self._swap_index, optout.refresh_gauges)
        optout.on_applied = self.sync.note_local
        await self.sync.catch_up()  # changes made while we were loading
        await self.sync.start()
        self.proxy.route_store = store
        self._housekeeping_task = asyncio.create_task(self._housekeeping(), name="housekeeping")
        self._flusher_task = asyncio.create_task(self._route_flusher(), name="route-flusher")
        self._refusals_task = asyncio.create_task(optout.refusals.run(store), name="refusals-flusher")
        if self.settings.routing.unbound == "outbox":
            routing = self.settings.routing
            self.outbox = Outbox(self.proxy, store, routing.outbox_ttl, routing.outbox_retry_interval,
                                 poll_interval=min(2.0, routing.outbox_retry_interval))
            self.proxy.outbox = self.outbox
            self.outbox.start()
        log.info("blocks_loaded", extra={"blocks": len(self.index), "seconds": round(loop.time() - started, 3),
                                         "store": describe_database(url)})

    async def _housekeeping(self) -> None:
        """Hourly: audit events past their retention, expired receipt routes."""
        assert self.store is not None
        while True:
            retention = self.settings.events_retention_days * 86400.0  # a reload may change it
            try:
                events = await self.store.purge_events(time.time() - retention)
                routes = await self.store.purge_receipt_routes(time.time())
                if events or routes:
                    log.info("store_purged", extra={"events": events, "receipt_routes": routes})
            except StoreError as exc:
                log.warning("store_purge_failed", extra={"error": str(exc)})
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    async def _answer_owed_mos(self, timeout: float) -> None:
        """MOs whose store writes are under way still get their carrier answer (a keyword job may
        start an outbox write, a receipt lookup a delivery: wait for those too)."""
        groups = [self.proxy.tasks]
        if self.optout is not None:
            groups.append(self.optout.tasks)
        if self.outbox is not None:
            groups.append(self.outbox.tasks)
        await _drain_tasks(groups, timeout)

    def _swap_index(self, index: BlockIndex) -> None:
        self.index = index
        if self.optout is not None:
            self.optout.index = index
            self.optout.refresh_gauges()

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time() + ROUTE_PURGE_INTERVAL
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            now = loop.time()
            try:  # timers never wait on anything: the store has its own task
                self.esme.tick(now)
                self.carrier.tick(now)
                if now >= next_purge:
                    next_purge = now + ROUTE_PURGE_INTERVAL
                    self.proxy.purge_routes(now)
            except Exception:  # our bug: log it, keep every timer running
                log.exception("tick_failed")

    async def _route_flusher(self) -> None:
        """Receipt routes to the store in batches, off the submit path and off the timers."""
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            try:
                await self.proxy.flush_routes()
            except Exception:
                log.exception("route_flush_failed")

    @property
    def store_ready(self) -> bool:
        if self.store is None or self.sync is None:
            return True
        return self.sync.healthy and self.store.healthy

    def ready(self) -> bool:
        return bool(self.proxy.carriers) and self.store_ready

    async def _http(self, method: str, path: str, body: bytes) -> Response:
        if method != "GET":
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render()
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            if self.ready():
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", ("; ".join(self.not_ready_reasons()) + "\n").encode()
        return 404, "text/plain", b"not found\n"

    def not_ready_reasons(self) -> list[str]:
        """What /readyz names while not ready."""
        reasons = []
        if not self.proxy.carriers:
            why = self.carrier.last_error
            reasons.append(f"no carrier session bound ({why})" if why else "no carrier session bound")
        if not self.store_ready:
            reasons.append("store unavailable")
        return reasons

    def status_line(self) -> str:
        """systemd's STATUS=: readiness and the carrier sessions bound."""
        if self.ready():
            return f"ready: {len(self.proxy.carriers)} carrier session(s) bound"
        return "not ready: " + "; ".join(self.not_ready_reasons())

    async def stop(self) -> None:
        """Stop accepting binds, unbind applications after draining, unbind the carrier."""
        log.info("gateway_stopping")
        self.esme.stop_accepting()
        await self.esme.unbind_all(self.settings.drain_timeout)
        await self.cluster.stop()  # no more application traffic: the others take our share
        self.proxy.accepting_mo = False  # from here the carrier gets a temporary status and retries
        await self._answer_owed_mos(self.settings.drain_timeout)
        await self.carrier.stop(timeout=2.0)
        if self.proxy.pacer is not None:  # what still waits for the carrier rate gets its answer
            self.proxy.pacer.close()
        for task in (self._tick_task, self._housekeeping_task, self._flusher_task, self._refusals_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.http is not None:
            self.http.close()
            await self.http.wait_closed()
        if self.outbox is not None:
            await self.outbox.stop()
        await self.proxy.flush_routes()
        if self.optout is not None and self.store is not None:
            await self.optout.refusals.flush(self.store)
        if self.sync is not None:
            await self.sync.stop()
        if self.store is not None:
            await self.store.close()
        self.stopped.set()
        log.info("gateway_stopped")


async def _drain_tasks(groups: list[set[asyncio.Task[None]]], timeout: float) -> None:
    """Until every task in the groups is done, including ones they start meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (pending := [t for group in groups for t in group if not t.done()]) and loop.time() < deadline:
        await asyncio.wait(pending, timeout=deadline - loop.time())


async def wait_for_signal() -> None:
    """Until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def handle_sighup(gateway: Gateway, notifier: sdnotify.Notifier | None = None) -> None:
    """SIGHUP reloads; under systemd every reload (SIGHUP or the admin API) is announced
    (RELOADING=1, then READY=1 again: Gateway.reload)."""
    gateway.notifier = notifier
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, gateway.reload)


async def run(settings: Settings, pid_file: Path | None = None, **kw: Any) -> int:
    """`gateway run`: the pid file is written once SIGHUP reloads (before, it would end the process)."""
    gateway = Gateway(settings, **kw)
    notifier = sdnotify.Notifier.from_environment()  # systemd Type=notify; no-op elsewhere
    await gateway.start()
    handle_sighup(gateway, notifier)
    watch = sdnotify.start(notifier, gateway.ready, gateway.status_line)
    if pid_file is not None:
        try:
            pidfile.write(pid_file)
        except OSError as exc:
            await gateway.stop()
            notifier.close()
            raise ConfigError(f"--pid-file {pid_file}: {exc.strerror or exc}") from None
    try:
        await wait_for_signal()
    finally:
        if pid_file is not None:
            pidfile.remove(pid_file)
    notifier.notify("STOPPING=1", "STATUS=stopping: draining sessions")
    if watch is not None:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    await gateway.stop()
    notifier.close()
    return 0


def metrics_token(s: Settings) -> BearerToken:
    """The /metrics bearer token (none configured: /metrics is open, as on loopback)."""
    token = s.http.metrics_token.get_secret_value().strip() if s.http.metrics_token is not None else None
    try:
        return BearerToken(token, s.http.metrics_token_file, frozenset({"/metrics"}))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"http.metrics_token_file: {exc}") from None


def check_files(s: Settings) -> None:
    """check-config: every certificate, key and token file loads (ConfigError says which does not)."""
    TlsSet(s)
    metrics_token(s)
    ApiTokens(s.http.api_tokens)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
