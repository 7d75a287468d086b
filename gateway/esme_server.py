"""The SMPP server applications bind to: one EsmeConnection per TCP connection."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway import hotpath
from gateway.bind_guard import BindGuard
from gateway.config import Account, Esme
from gateway.connection import Connection
from gateway.errors import MalformedPduError
from gateway.limits.bucket import TokenBucket
from gateway.limits.networks import key as address_key
from gateway.proxy import AccountState, OnStatus, Proxy
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.smpp.session import (
    BIND_STATE_FOR,
    BOUND,
    CAN_RECEIVE,
    CAN_SUBMIT,
    FORWARDED,
    BindState,
    Sequencer,
    esme_request_status,
)
from gateway.tls import ServerTls, describe

log = logging.getLogger(__name__)
GATEWAY_SYSTEM_ID = "gateway"


@dataclass(slots=True)
class OutRequest:
    """A request the gateway sent to the application (deliver_sm, data_sm)."""

    on_status: OnStatus | None
    deadline: float


class EsmeConnection(Connection):
    side = "esme"

    def __init__(self, server: EsmeServer) -> None:
        super().__init__(server.proxy.stats, server.limits.max_pdu)
        self.server = server
        self.proxy = server.proxy
        self.limits = server.limits
        self.state = BindState.OPEN
        self.account: AccountState | None = None
        self.system_id = ""
        self.window = 0
        self.outstanding = 0
        self.bucket: TokenBucket | None = None  # the account's max_tps (Proxy.esme_bound)
        self.account_stats = self.stats.unbound  # the account's counters once bound (_bound)
        self.seq = Sequencer()
        self.out: dict[int, OutRequest] = {}
        self.opened_at = self.loop.time()
        self.enquire_sent: float | None = None
        self.ip = ""
        self.tls = False  # came in on the TLS listener (an account's require_tls)
        self.admitted = False  # counted in the connection caps
        self.binding = False  # a bind under verification: later PDUs wait in `held`, in order
        self.held: list[P.Pdu] = []
        self.bind_task: asyncio.Task[None] | None = None

    def on_connected(self) -> None:
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        self.ip = address_key(str(peer[0])) if peer else "?"
        self.tls = self.transport.get_extra_info("ssl_object") is not None
        if not self.server.guard.admit_connection(self.ip):
            log.debug("esme_connection_refused", extra=self.log_extra())  # counted; no line per attempt
            self.abort()
            return
        self.admitted = True
        self.server.connections.add(self)
        log.info("esme_connected", extra=self.log_extra())

    data_received = hotpath.esme_read  # the fused read loop; on_pdu is the generic path

    def on_pdu(self, pdu: P.Pdu) -> None:
        if self.binding:
            self.held.append(pdu)
            return
        cid = pdu.command_id
        if cid in FORWARDED and self.state in CAN_SUBMIT:
            if self.outstanding >= self.window:
                self.send(P.response_for(pdu, st.ESME_RTHROTTLED))
            else:
                self.proxy.forward_mt(self, pdu, self.last_rx)  # read once per read, not per PDU
            return
        if pdu.is_response:
            self._on_response(pdu)
            return
        if cid not in P.COMMAND_NAMES or cid in (P.DELIVER_SM, P.OUTBIND, P.ALERT_NOTIFICATION):
            self.send(P.generic_nack(st.ESME_RINVCMDID, pdu.sequence_number))
            return
        refused = esme_request_status(self.state, cid)
        if refused is not None:
            self.send(P.response_for(pdu, refused))
        elif cid == P.ENQUIRE_LINK:
            self.send(P.response_for(pdu, st.ESME_ROK))
        elif cid in P.BIND_COMMANDS:
            self._on_bind(pdu)
        elif cid == P.UNBIND:
            self.send(P.response_for(pdu, st.ESME_ROK))
            self._unbound()
            self.close()
        else:  # a forwarded command in a state that allows it but reached here: cannot happen
            self.send(P.response_for(pdu, st.ESME_RSYSERR))

    def _on_bind(self, pdu: P.Pdu) -> None:
        try:
            bind = F.parse_bind(pdu.raw)
        except MalformedPduError:
            self._bind_refused(pdu, st.ESME_RBINDFAIL, "malformed", "")
            return
        self.binding = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.bind_task = self.loop.create_task(self._bind(pdu, bind), name="esme-bind")

    async def _bind(self, pdu: P.Pdu, bind: F.BindRequest) -> None:
        try:
            try:
                status, account, reason = await self.server.guard.bind(bind, self.ip, self.tls)
            except Exception:  # our bug: a check that errors denies
                log.exception("bind_check_failed", extra=self.log_extra(system_id=bind.system_id))
                status, account, reason = st.ESME_RBINDFAIL, None, "error"
            if account is not None and (self.closed or self.state != BindState.OPEN):
                status, account, reason = st.ESME_RBINDFAIL, None, "closed"  # gone or unbound meanwhile
            if account is None:
                self._bind_refused(pdu, status, reason, bind.system_id)
            else:
                self._bound(pdu, account)
        except Exception:  # our bug after the decision: answer and close rather than hang
            log.exception("bind_failed", extra=self.log_extra(system_id=bind.system_id))
            self.send(P.response_for(pdu, st.ESME_RSYSERR))
            self.close()
        finally:
            self.binding = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        self._replay()

    def _bind_refused(self, pdu: P.Pdu, status: int, reason: str, system_id: str) -> None:
        """Answer, then close the socket: always, whatever the reason."""
        self.proxy.metrics.bind_failures.labels(reason).inc()
        if reason not in ("locked_out", "busy"):  # those are counted only: an attack must not flood the log
            log.info("bind_refused", extra=self.log_extra(system_id=system_id, status=status, reason=reason))
        self.send(P.response_for(pdu, status))
        self.close()

    def _bound(self, pdu: P.Pdu, account: AccountState) -> None:
        self.state = BIND_STATE_FOR[pdu.command_id]
        self.account = account
        self.system_id = account.config.system_id
        self.window = account.config.window
        counters = self.account_stats = self.stats.account(self.system_id)  # per account at no cost per PDU
        self._in_counts = counters.pdus_in
        self._out_counts = counters.pdus_out
        self.proxy.esme_bound(account, self)
        self.send(P.response_for(pdu, st.ESME_ROK, F.bind_resp_body(GATEWAY_SYSTEM_ID)))
        log.info("esme_bound", extra=self.log_extra(system_id=self.system_id, mode=self.state.name,
                                                    **describe(self.transport)))

    def _replay(self) -> None:
        """PDUs that arrived while the bind was verified, in their order."""
        held, self.held = self.held, []
        self.last_rx = self.loop.time()  # the `now` of their handling (they arrived during the bind)
        for i, pdu in enumerate(held):
            if self.binding:  # cannot happen (a second bind is answered at once), kept safe
                self.held[:0] = held[i:]
                return
            self.handle(pdu)

    def resume_writing(self) -> None:
        if not self.binding:  # reading stays paused until the bind is decided
            super().resume_writing()

    def _on_response(self, pdu: P.Pdu) -> None:
        request = self.out.pop(pdu.sequence_number, None)
        if request is None:
            return  # enquire_link_resp, unbind_resp, or a late answer we already timed out
        self.stats.inflight["esme"] -= 1
        if request.on_status is not None:
            request.on_status(pdu.command_status, pdu)

    # --- requests to the application -------------------------------------------
    def can_receive(self) -> bool:
        return self.state in CAN_RECEIVE and not self.closed

    def deliver(self, pdu: P.Pdu, raw: bytes, on_status: OnStatus) -> None:
        if self.closed:  # closed after it was chosen (the outbox awaits the store in between): no
            self.loop.call_soon(on_status, self.proxy.unbound_status, None)  # timer would ever fail it
            return
        seq = self.seq.next()
        self.out[seq] = OutRequest(on_status, self.loop.time() + self.limits.response_timeout)
        self.stats.inflight["esme"] += 1
        self.send(raw[:12] + P.SEQ.pack(seq) + raw[16:])

    def request(self, command_id: int) -> None:
        """enquire_link / unbind from the gateway; the answer needs no handling."""
        seq = self.seq.next()
        self.send(P.encode(command_id, 0, seq))

    # --- timers ------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if self.state == BindState.OPEN and now - self.opened_at > self.limits.session_init_timeout:
            # whatever it sent (an enquire_link keeps nothing alive); a close that did not finish: abort
            if self.closed:
                self.abort()
            else:
                log.info("session_init_timeout", extra=self.log_extra())
                self.close()
            return
        if now - self.last_rx > self.limits.inactivity_timeout:
            log.info("inactivity_timeout", extra=self.log_extra(system_id=self.system_id))
            self.unbind()
            return
        if self.enquire_sent is not None and self.last_rx < self.enquire_sent \
                and now - self.enquire_sent > self.limits.response_timeout:
            log.info("enquire_link_unanswered", extra=self.log_extra(system_id=self.system_id))
            self.unbind()
            return
        if self.state in BOUND and now - self.last_rx > self.limits.enquire_link_interval \
                and (self.enquire_sent is None or self.enquire_sent < self.last_rx):
            self.enquire_sent = now
            self.request(P.ENQUIRE_LINK)
        self._expire(now)

    def _expire(self, now: float) -> None:
        expired = [seq for seq, r in self.out.items() if r.deadline <= now]
        for seq in expired:
            self._fail(self.out.pop(seq))

    def _fail(self, request: OutRequest) -> None:
        self.stats.inflight["esme"] -= 1
        if request.on_status is not None:
            request.on_status(self.proxy.unbound_status, None)

    def unbind(self, close: bool = True, answered: bool = False) -> None:
        """Send unbind; new requests are refused from now on. Closing may wait for in-flight answers;
        answered: the unbind_resp counts as one (`out`), so a drain waits for it too."""
        if self.state in BOUND:
            if answered:
                seq = self.seq.next()
                self.out[seq] = OutRequest(None, self.loop.time() + self.limits.response_timeout)
                self.stats.inflight["esme"] += 1
                self.send(P.encode(P.UNBIND, 0, seq))
            else:
                self.request(P.UNBIND)
        self._unbound()
        if close:
            self.close()

    def _unbound(self) -> None:
        if self.account is not None:
            self.proxy.esme_gone(self.account, self)
            self.account = None
        self.state = BindState.UNBOUND

    def on_closed(self) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self.server.guard.release_connection(self.ip)
        self._unbound()
        self.server.connections.discard(self)
        for request in list(self.out.values()):
            self._fail(request)
        self.out.clear()
        log.info("esme_closed", extra=self.log_extra(system_id=self.system_id))


class EsmeServer:
    def __init__(self, proxy: Proxy, limits: Esme) -> None:
        self.proxy = proxy
        self.limits = limits
        self.connections: set[EsmeConnection] = set()
        self.unbinding: set[asyncio.Task[None]] = set()  # sessions a reload unbinds, until they close
        self.servers: list[asyncio.Server] = []
        self.guard = BindGuard(proxy, limits, proxy.metrics)

    async def start(self, host: str, port: int, tls: ServerTls | None = None) -> int:
        """One listener (plaintext, or SMPP over TLS whose handshake must end within
        session_init_timeout); the port it got."""
        loop = asyncio.get_running_loop()
        if tls is None:
            server = await loop.create_server(lambda: EsmeConnection(self), host, port, reuse_address=True)
        else:
            server = await loop.create_server(lambda: EsmeConnection(self), host, port, reuse_address=True,
                                              ssl=tls.context,
                                              ssl_handshake_timeout=self.limits.session_init_timeout)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def tick(self, now: float) -> None:
        for conn in list(self.connections):
            conn.tick(now)
        self.guard.tick(now)

    def stop_accepting(self) -> None:
        self.proxy.accepting = False
        for server in self.servers:
            server.close()

    def inflight(self) -> int:
        return sum(c.outstanding + len(c.out) for c in self.connections)

    def reconfigure(self, limits: Esme, accounts: list[Account]) -> None:
        """A reload's session limits: timeouts and max_pdu for connections from now on, caps and
        lockout at once (BindGuard.reconfigure)."""
        self.limits = limits
        self.guard.reconfigure(limits, accounts)

    def unbind_sessions(self, sessions: list[EsmeConnection], drain_timeout: float, reason: str) -> None:
        """Unbind these sessions now (new requests are refused), close each once its in-flight
        answers reached it and it answered the unbind, or drain_timeout passed (a reload's removed
        accounts)."""
        for conn in sessions:
            log.info("esme_unbound_by_reload", extra=conn.log_extra(system_id=conn.system_id, reason=reason))
            conn.unbind(close=False, answered=True)
        if sessions:
            self.unbinding.add(task := asyncio.create_task(self._drain_and_close(sessions, drain_timeout)))
            task.add_done_callback(self.unbinding.discard)

    async def _drain_and_close(self, sessions: list[EsmeConnection], drain_timeout: float) -> None:
        """Until each session has its in-flight answers and our unbind's answer, or drain_timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while any(c.outstanding or c.out for c in sessions if not c.closed) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in sessions:
            conn.close()
        waits = [c.closed_future for c in sessions]
        await asyncio.wait(waits, timeout=1.0)
        for conn in sessions:
            if not conn.closed_future.done():
                conn.abort()

    async def unbind_all(self, drain_timeout: float) -> None:
        """Unbind every application, let in-flight answers reach them, then close."""
        loop = asyncio.get_running_loop()
        for conn in list(self.connections):
            conn.unbind(close=False)
        deadline = loop.time() + drain_timeout
        while self.inflight() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        waits = [c.closed_future for c in self.connections]
        if waits:
            await asyncio.wait(waits, timeout=1.0)
        for conn in list(self.connections):
            conn.abort()
        if self.unbinding:
            await asyncio.wait(self.unbinding, timeout=1.0)
        self.guard.close()
        for server in self.servers:
            await server.wait_closed()
