"""The gateway's own binds to the carrier SMSC: bind, keepalive, window, reconnect with backoff.

aiosmpplib's ESME always answers deliver_sm with ESME_ROK; the gateway must pass the
application's status back, so the session is ours, built on aiosmpplib's PDU classes
for the few PDUs the gateway writes itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from typing import Any

from aiosmpplib import BindTransceiver

from gateway import hotpath
from gateway.config import Carrier
from gateway.connection import Connection
from gateway.proxy import Pending, Proxy
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.smpp.session import Sequencer
from gateway.tls import ClientTls, describe, failure_reason

log = logging.getLogger(__name__)
THROTTLE_STATUSES = frozenset({st.ESME_RTHROTTLED, st.ESME_RMSGQFUL})  # the carrier asks us to slow down


class CarrierConnection(Connection):
    side = "carrier"

    def __init__(self, pool: CarrierPool) -> None:
        super().__init__(pool.proxy.stats)
        self.error_status = pool.proxy.unbound_status  # a bug of ours must not make the carrier drop an MO
        self.pool = pool
        self.proxy = pool.proxy
        self.config = pool.config
        self.window = pool.config.window  # 0 while paused by a carrier throttle, then grows back (throttled)
        self.full_window = pool.config.window
        self.throttle_pause = pool.config.throttle_pause
        self.timeout = pool.config.response_timeout
        self.seq = Sequencer()
        self.pending: dict[int, Pending] = {}
        self.bound = False
        self.unbinding = False  # our unbind sent: still bound (SMPP 3.4 2.3) until unbind_resp
        self.bind_seq = 0
        self.bound_future: asyncio.Future[int] = self.loop.create_future()
        self.enquire_sent: float | None = None
        self.lost_error: Exception | None = None  # e.g. a TLS alert that arrived after the handshake

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_error = exc
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The carrier reads slowly: keep reading its answers (the window bounds what we send)."""

    def resume_writing(self) -> None:
        pass

    def on_connected(self) -> None:
        cfg = self.config
        bind = BindTransceiver(
            system_id=cfg.system_id,
            password=cfg.password.get_secret_value(),
            system_type=cfg.system_type,
            address_range="",
        )
        self.bind_seq = self.seq.next()
        bind.sequence_num = self.bind_seq
        self.send(bind.pdu())

    data_received = hotpath.carrier_read  # the fused read loop; on_pdu is the generic path

    def answered(self, pdu: P.Pdu, pending: Pending) -> None:
        """The carrier's answer to one of our requests (pending: popped from self.pending)."""
        try:
            status = pdu.command_status
            if status:
                if status in THROTTLE_STATUSES:
                    self.throttled(status)
            elif self.window < self.full_window:  # resuming after a throttle: one more per answer
                self.window += 1
            self.proxy.mt_answered(pending, pdu, self.last_rx)  # read once per read, not per PDU
        except Exception:  # our bug: keep the session (an answer is never answered)
            log.exception("pdu_handler_failed", extra=self.log_extra(pdu=repr(pdu)))

    def on_pdu(self, pdu: P.Pdu) -> None:
        cid = pdu.command_id
        if cid & P.RESPONSE_BIT:
            pending = self.pending.pop(pdu.sequence_number, None)
            if pending is not None:
                self.answered(pdu, pending)
            elif cid == P.ENQUIRE_LINK_RESP:
                self.enquire_sent = None
            elif cid == P.UNBIND_RESP:
                self.close()
            elif pdu.sequence_number == self.bind_seq and not self.bound:
                self._on_bind_resp(pdu)
            return
        if not self.bound:
            self.send(P.response_for(pdu, st.ESME_RINVBNDSTS))
        elif cid in (P.DELIVER_SM, P.DATA_SM):
            self.proxy.on_carrier_request(self, pdu, self.loop.time())
        elif cid == P.ENQUIRE_LINK:
            self.send(P.response_for(pdu, st.ESME_ROK))
        elif cid == P.UNBIND:
            log.warning("carrier_unbound_us", extra=self.log_extra())
            self.send(P.response_for(pdu, st.ESME_ROK))
            self.close()
        elif cid == P.ALERT_NOTIFICATION:
            pass  # no response exists for alert_notification (4.12)
        else:
            self.send(P.generic_nack(st.ESME_RINVCMDID, pdu.sequence_number))

    def _on_bind_resp(self, pdu: P.Pdu) -> None:
        if not self.bound_future.done():
            self.bound_future.set_result(pdu.command_status)
        if pdu.command_status == st.ESME_ROK and pdu.command_id == P.BIND_TRANSCEIVER_RESP:
            self.bound = True
            self.proxy.carrier_bound(self)
        else:
            self.close()

    def forward(self, pdu: P.Pdu, pending: Pending, raw: bytes | None = None) -> None:
        seq = self.seq.next()
        self.pending[seq] = pending
        self.send_with_sequence(raw if raw is not None else pdu.raw, seq, pdu.command_id)

    def throttled(self, status: int) -> None:
        """The carrier answered 0x58 / 0x14 (the answer itself goes to the application unchanged):
        send nothing more on this bind for carrier.throttle_pause, then resume with a window of
        one that grows by one per successful answer (doubling per round trip) to the full window."""
        self.proxy.metrics.carrier_throttled.labels(f"0x{status:02x}").inc()
        if self.throttle_pause <= 0 or self.window == 0:
            return  # slowing disabled, or already paused
        self.window = 0
        log.warning("carrier_throttled", extra=self.log_extra(status=status, pause=self.throttle_pause))
        self.loop.call_later(self.throttle_pause, self._resume)

    def _resume(self) -> None:
        if not self.closed and self.window == 0:
            self.window = 1

    def tick(self, now: float) -> None:
        if self.enquire_sent is not None and now - self.enquire_sent > self.timeout:
            log.warning("carrier_keepalive_timeout", extra=self.log_extra())
            self.abort()
            return
        if self.bound and not self.unbinding and self.enquire_sent is None and now - self.last_rx > self.config.enquire_link_interval:
            self.enquire_sent = now
            self.send(P.encode(P.ENQUIRE_LINK, 0, self.seq.next()))
        expired = []
        for seq, pending in self.pending.items():
            if now - pending.started < self.timeout:
                break  # insertion order is start order
            expired.append(seq)
        if expired:
            self.proxy.metrics.carrier_timeouts.inc(len(expired))
        for seq in expired:
            self.proxy.mt_failed(self.pending.pop(seq), self.proxy.timeout_status)

    def on_closed(self) -> None:
        if self.bound:
            self.bound = False
            self.proxy.carrier_gone(self)
        if not self.bound_future.done():
            self.bound_future.set_result(-1)

    async def unbind(self, timeout: float) -> None:
        """Unbind and wait for unbind_resp. Until it arrives the session is still bound: no new MT
        goes here, but deliver_sm and enquire_link from the carrier are answered as usual (during
        shutdown the proxy answers MOs with routing.unbound_status, so the carrier retries them)."""
        if self.bound and not self.closed:
            self.proxy.carrier_gone(self)
            self.unbinding = True
            self.send(P.encode(P.UNBIND, 0, self.seq.next()))
            self.loop.call_later(timeout, self.abort)
            try:
                await asyncio.wait_for(asyncio.shield(self.closed_future), timeout)
            except TimeoutError:
                pass
        self.close()


class CarrierPool:
    """Keeps `sessions` transceiver binds up, reconnecting with exponential backoff and jitter."""

    def __init__(self, proxy: Proxy, config: Carrier, tls: ClientTls | None = None) -> None:
        self.proxy = proxy
        self.config = config
        self.tls = tls
        self.last_error: str | None = None  # why the last attempt did not bind (for /readyz)
        self.connections: list[CarrierConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    def start(self) -> None:
        for n in range(self.config.sessions):
            self.tasks.append(asyncio.create_task(self._keep(n), name=f"carrier-{n}"))

    async def _keep(self, n: int) -> None:
        delay = self.config.reconnect_min_interval
        while not self.stopping:
            self.proxy.metrics.carrier_reconnects.inc()
            conn = await self._connect(n)
            if conn is not None:
                delay = self.config.reconnect_min_interval
                await conn.closed_future
                self.connections.remove(conn)
                if self.stopping:
                    return
                log.warning("carrier_lost", extra={"session": n})
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.config.reconnect_max_interval)

    async def _connect(self, n: int) -> CarrierConnection | None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        made: list[CarrierConnection] = []

        def factory() -> CarrierConnection:
            made.append(CarrierConnection(self))
            return made[-1]

        try:
            async with asyncio.timeout(cfg.bind_timeout):
                _, conn = await loop.create_connection(factory, cfg.host, cfg.port, **self._tls_args())
                self.connections.append(conn)
                status = await asyncio.shield(conn.bound_future)
        except (OSError, TimeoutError) as exc:
            self._failed(n, exc)
            for conn in made:
                conn.abort()
                if conn in self.connections:
                    self.connections.remove(conn)
            return None
        if status == -1:  # closed before bind_resp
            hint = " (over TLS: was our client certificate refused?)" if self.tls is not None else ""
            self._failed(n, conn.lost_error or ConnectionError(f"closed before bind_resp{hint}"))
            conn.abort()
            self.connections.remove(conn)
            return None
        if status != st.ESME_ROK:
            log.error("carrier_bind_refused", extra={"session": n, "status": status})
            self.last_error = f"carrier refused the bind: status 0x{status & 0xFFFFFFFF:08x}"
            conn.close()
            self.connections.remove(conn)
            return None
        self.last_error = None
        log.info("carrier_bound", extra={"session": n, "peer": conn.peer, **describe(conn.transport)})
        return conn

    def _tls_args(self) -> dict[str, Any]:
        """TLS or nothing: a failed handshake is retried as TLS, never downgraded."""
        if self.tls is None:
            return {}
        return {"ssl": self.tls.context, "server_hostname": self.tls.server_name,
                "ssl_handshake_timeout": self.config.bind_timeout}

    def _failed(self, n: int, exc: BaseException) -> None:
        self.last_error = failure_reason(exc)
        if isinstance(exc, ssl.SSLError):
            kind = "certificate" if isinstance(exc, ssl.SSLCertVerificationError) else "handshake"
            self.proxy.metrics.carrier_tls_failures.labels(kind).inc()
        log.warning("carrier_connect_failed", extra={"session": n, "error": self.last_error})

    def tick(self, now: float) -> None:
        for conn in self.connections:
            conn.tick(now)

    async def stop(self, timeout: float) -> None:
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.unbind(timeout) for c in self.connections), return_exceptions=True)
