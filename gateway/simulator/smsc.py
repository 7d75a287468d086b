"""The carrier SMSC simulator: listeners, message ids, delivery receipts, MO injection, test knobs.

`Simulator` runs in-process (tests) or under `serve()` (the CLI). It records every PDU it
receives and every deliver_sm_resp status it gets back, and lets tests wait on either with a
deadline; waiting is event based (a waiter is re-checked on every change), never polling.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from gateway.httpd import MAX_BODY, serve
from gateway.limits.bucket import TokenBucket
from gateway.simulator.codec import (
    decode_text,
    deliver_sm_body,
    encode_text,
    query_sm_message_id,
    query_sm_resp_body,
    receipt_body,
)
from gateway.simulator.http import routes
from gateway.simulator.records import Submission, address_octets, parse_submission
from gateway.simulator.session import (
    NoReceiverError,
    ResponseTimeoutError,
    SmscSession,
)
from gateway.smpp import status as st
from gateway.smpp.fields import (
    Address,
    submit_multi_resp_body,
)
from gateway.smpp.pdu import (
    CANCEL_SM,
    DELIVER_SM,
    QUERY_SM,
    REPLACE_SM,
    SUBMIT_MULTI,
    UNBIND,
    Pdu,
    cstring,
    response_for,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_UNDELIVERED = 10_000
REGISTERED_DELIVERY_MASK = 0x03


class Simulator:
    """An SMSC over real sockets, plus its tiny HTTP endpoint. See the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        smpp_port: int = 0,
        http_port: int | None = 0,
        system_id: str | None = None,
        password: str | None = None,
        receipt_delay: float = 0.0,
        *,
        keep_records: bool = True,
        smsc_system_id: str = "simulator",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.tls = tls  # set: SMPP over TLS (a test may swap it before a restart)
        self._smpp_port_config = smpp_port
        self._http_port_config = http_port
        self.system_id = system_id
        self.password = password
        self.receipt_delay = receipt_delay
        self.keep_records = keep_records
        self._smsc_system_id = smsc_system_id
        # knobs for tests
        self.respond = True
        self.submit_status = st.ESME_ROK
        self.max_tps: float | None = None  # set: submissions beyond this rate get 0x58 ESME_RTHROTTLED
        self.throttle_burst = 1.0  # ... beyond this many at once
        self._throttle: TokenBucket | None = None
        self.arrivals: list[float] = []  # loop.time() each submission arrived, in `submissions` order
        # records
        self.received: list[Pdu] = []
        self.deliver_results: list[tuple[bytes, int]] = []
        self.submissions: list[Submission] = []
        # internals
        self._sessions: list[SmscSession] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._undelivered: deque[bytes] = deque(maxlen=MAX_UNDELIVERED)
        self._ids = itertools.count(secrets.randbits(32) | (1 << 32))
        self._round_robin = itertools.count()
        self._smpp_server: asyncio.Server | None = None
        self._http_server: asyncio.Server | None = None
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._smpp_server = await asyncio.start_server(
            self._accept_smpp, self.host, self._smpp_port_config, ssl=self.tls,
            ssl_handshake_timeout=10.0 if self.tls is not None else None,
        )
        if self._http_port_config is not None:
            handler = routes(self)
            self._http_server = await asyncio.start_server(
                lambda r, w: self._tracked(serve(handler, r, w), w),
                self.host,
                self._http_port_config,
                limit=MAX_BODY,
            )
        log.info("simulator_started", extra={"port": self.smpp_port, "http_port": self.http_port})

    async def stop(self, unbind_timeout: float = 1.0) -> None:
        """Stop listening, unbind bound sessions (up to unbind_timeout), then drop the rest."""
        self._stopping = True
        for server in (self._smpp_server, self._http_server):
            if server is not None:
                server.close()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if unbind_timeout > 0 and any(s.bound for s in self._sessions):
            for session in self._sessions:
                if session.bound:
                    session.send_request(UNBIND, b"")
            try:
                await self.wait_until(lambda: not self._sessions, unbind_timeout)
            except TimeoutError:
                pass
        self.drop_all()
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=3.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in (self._smpp_server, self._http_server):
            if server is not None:
                await server.wait_closed()
        self._smpp_server = self._http_server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def smpp_port(self) -> int:
        if self._smpp_server is None:
            raise RuntimeError("simulator not started")
        return int(self._smpp_server.sockets[0].getsockname()[1])

    @property
    def http_port(self) -> int | None:
        if self._http_server is None:
            return None
        return int(self._http_server.sockets[0].getsockname()[1])

    @property
    def smsc_system_id(self) -> str:
        return self._smsc_system_id

    @property
    def sessions(self) -> int:
        """Open SMPP connections, bound or not."""
        return len(self._sessions)

    @property
    def bound_count(self) -> int:
        return sum(1 for s in self._sessions if s.bound)

    @property
    def receiver_count(self) -> int:
        return sum(1 for s in self._sessions if s.can_receive)

    def drop_all(self) -> None:
        """Abort every SMPP connection at once (no unbind), as a crashing SMSC would."""
        for session in list(self._sessions):
            session.abort()

    async def _tracked(self, handler: Any, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._stopping:
                writer.close()
            else:
                await handler
        finally:
            self._tasks.discard(task)
            handler.close()  # a coroutine never awaited must not warn

    async def _accept_smpp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = SmscSession(self, reader, writer)
        self._sessions.append(session)
        self._changed()
        try:
            await self._tracked(session.run(), writer)
        finally:
            self._sessions.remove(session)
            self._changed()

    # --- waiting -------------------------------------------------------------------

    def _changed(self) -> None:
        for condition, future in list(self._waiters):
            if future.done():
                continue
            try:
                if condition():
                    future.set_result(None)
            except Exception as exc:  # noqa: BLE001 - a broken predicate fails its waiter
                future.set_exception(exc)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Return once condition() holds; it is re-checked on every record, bind and close."""
        if condition():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (condition, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout}s") from None
        finally:
            self._waiters.remove(entry)

    async def _first(self, items: list[T], predicate: Callable[[T], bool], timeout: float) -> T:
        found: list[T] = []
        scanned = 0

        def check() -> bool:
            nonlocal scanned
            while scanned < len(items):
                item = items[scanned]
                scanned += 1
                if predicate(item):
                    found.append(item)
                    return True
            return False

        await self.wait_until(check, timeout)
        return found[0]

    async def wait_for(self, predicate: Callable[[Pdu], bool], timeout: float = 5.0) -> Pdu:
        """The first received PDU (request or response) matching predicate; TimeoutError if none."""
        return await self._first(self.received, predicate, timeout)

    async def wait_for_result(
        self, predicate: Callable[[tuple[bytes, int]], bool], timeout: float = 5.0
    ) -> tuple[bytes, int]:
        """The first (deliver_sm raw, status) in `deliver_results` matching predicate."""
        return await self._first(self.deliver_results, predicate, timeout)

    # --- SessionOwner ----------------------------------------------------------------

    def bind_status(self, system_id: str, password: str) -> int:
        if self.system_id is None:
            return st.ESME_ROK
        ok = hmac.compare_digest(system_id.encode(), self.system_id.encode())
        ok &= hmac.compare_digest(password.encode(), (self.password or "").encode())
        return st.ESME_ROK if ok else st.ESME_RBINDFAIL

    def record_received(self, pdu: Pdu) -> None:
        if self.keep_records:
            self.received.append(pdu)
            self._changed()

    def record_result(self, message_raw: bytes, status: int) -> None:
        if self.keep_records:
            self.deliver_results.append((message_raw, status))
            self._changed()

    def session_changed(self, session: SmscSession) -> None:
        if session.can_receive and self._undelivered:
            while self._undelivered and session.can_receive:
                session.send_request(DELIVER_SM, self._undelivered.popleft())
        self._changed()

    def handle_message(self, session: SmscSession, pdu: Pdu) -> None:
        command_id = pdu.command_id
        if command_id == QUERY_SM:
            body = query_sm_resp_body(query_sm_message_id(pdu.raw))
            session.send(response_for(pdu, st.ESME_ROK, body))
            return
        if command_id in (CANCEL_SM, REPLACE_SM):
            session.send(response_for(pdu, st.ESME_ROK))
            return
        message, destinations = parse_submission(pdu)
        now = asyncio.get_running_loop().time()
        if self.keep_records:
            self.arrivals.append(now)
        if self._throttled(now):
            session.send(response_for(pdu, st.ESME_RTHROTTLED))
            self._remember(Submission(pdu, message, destinations, None, st.ESME_RTHROTTLED))
            return
        if not self.respond:
            self._remember(Submission(pdu, message, destinations, None, None))
            return
        status = self.submit_status
        if status != st.ESME_ROK:
            session.send(response_for(pdu, status))
            self._remember(Submission(pdu, message, destinations, None, status))
            return
        message_id = format(next(self._ids), "x")
        if command_id == SUBMIT_MULTI:
            body = submit_multi_resp_body(message_id.encode(), [])
        else:
            body = cstring(message_id)
        session.send(response_for(pdu, st.ESME_ROK, body))
        submission = Submission(pdu, message, destinations, message_id, status)
        self._remember(submission)
        if message.registered_delivery & REGISTERED_DELIVERY_MASK == 1:
            self._schedule_receipts(session, submission)

    def _throttled(self, now: float) -> bool:
        """max_tps set: True for a submission beyond the rate (the bucket follows knob changes)."""
        if self.max_tps is None:
            self._throttle = None
            return False
        bucket = self._throttle
        if bucket is None:
            bucket = self._throttle = TokenBucket(self.max_tps, self.throttle_burst, now)
        elif (bucket.rate, bucket.burst) != (self.max_tps, self.throttle_burst):
            bucket.set_rate(self.max_tps, self.throttle_burst, now)
        return not bucket.take(now)

    def _remember(self, submission: Submission) -> None:
        if self.keep_records:
            self.submissions.append(submission)

    # --- receipts --------------------------------------------------------------------

    def _schedule_receipts(self, origin: SmscSession, submission: Submission) -> None:
        if self.receipt_delay <= 0:
            self._send_receipts(origin, submission)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._send_receipts(origin, submission)

        handle = loop.call_later(self.receipt_delay, fire)
        self._timers.add(handle)

    def _send_receipts(self, origin: SmscSession, submission: Submission) -> None:
        message = submission.message
        assert submission.message_id is not None
        excerpt = decode_text(message.data_coding, message.payload, message.esm_class)
        done = datetime.now(UTC)
        for mobile in submission.destinations:
            body = receipt_body(
                submission.message_id,
                mobile,
                message.source,
                submission.received_at,
                done,
                excerpt,
            )
            target = origin if origin.can_receive else self._receiver(origin.system_id)
            if target is None:
                self._undelivered.append(body)
                log.debug("receipt_queued", extra={"message_id": submission.message_id})
            else:
                target.send_request(DELIVER_SM, body)

    def _receiver(self, system_id: str | None = None) -> SmscSession | None:
        """Round-robin among receiver-capable sessions, preferring those of system_id."""
        receivers = [s for s in self._sessions if s.can_receive]
        if system_id is not None:
            receivers = [s for s in receivers if s.system_id == system_id] or receivers
        if not receivers:
            return None
        return receivers[next(self._round_robin) % len(receivers)]

    # --- mobile-originated messages ----------------------------------------------------

    async def inject_mo(
        self,
        source: str,
        destination: str,
        text: str,
        data_coding: int | None = None,
        source_ton: int = 1,
        source_npi: int = 1,
        dest_ton: int = 1,
        dest_npi: int = 1,
        esm_class: int = 0,
        raw_short_message: bytes | None = None,
        tlvs: bytes = b"",
        timeout: float = 5.0,
    ) -> int:
        """Send an MO deliver_sm to a bound receiver (round-robin); return its deliver_sm_resp status.

        Raises NoReceiverError when nothing receiver-capable is bound, ResponseTimeoutError
        (a TimeoutError) when no answer comes within timeout, SessionClosedError when the
        session drops first, ValueError for an address that is not 1-20 ASCII characters.
        """
        if raw_short_message is None:
            data_coding, octets = encode_text(text, data_coding)
        else:
            data_coding, octets = data_coding or 0, raw_short_message
        body = deliver_sm_body(
            Address(source_ton, source_npi, address_octets(source)),
            Address(dest_ton, dest_npi, address_octets(destination)),
            data_coding,
            octets,
            esm_class=esm_class,
            tlvs=tlvs,
        )
        session = self._receiver()
        if session is None:
            raise NoReceiverError("no receiver or transceiver session is bound")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        sequence, _ = session.send_request(DELIVER_SM, body, future)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise ResponseTimeoutError(
                f"no deliver_sm_resp for sequence {sequence} within {timeout}s"
            ) from None
