"""The soak's applications: SMPP transceivers that submit at a steady rate, take MO and receipts,
and bind, unbind and reconnect to either gateway at random.

Each MT has a tag (`mt <tag>` is its text) so the carrier's count can be matched to the
application's. A submit answered with a temporary status, or lost with its session, is sent
again under the same tag (what a real application does); the ledger then explains any
duplicate at the carrier by those attempts.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable

from bench.soak_ledger import Ledger
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp.pdu import cstring, encode

FINAL = frozenset({0x0A, 0x0B, 0x01, 0x45})  # refusals an application does not retry
BACKLOG = 3000  # tags waiting to be sent; beyond it the app stops offering new ones
RETRY_DELAY = 0.3


def submit_body(source: str, destination: str, text: bytes, registered_delivery: int = 1) -> bytes:
    return (cstring("") + bytes([1, 1]) + cstring(source) + bytes([1, 1]) + cstring(destination)
            + bytes([0, 0, 0]) + cstring("") + cstring("")
            + bytes([registered_delivery, 0, 0, 0, len(text)]) + text)


class Session(asyncio.Protocol):
    """One bind of an application to one gateway."""

    def __init__(self, app: App, gateway: int) -> None:
        self.app = app
        self.gateway = gateway
        self.framer = P.Framer()
        self.transport: asyncio.Transport | None = None
        self.bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, str] = {}  # sequence -> tag
        self.seq = 0
        self.unbinding = False  # either side asked to unbind: no new submits
        self.aborted = False
        self.abort_on_deliver = False
        self.connected_at = app.ledger.now()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] - uvloop's is no asyncio.Transport

    def send(self, command_id: int, body: bytes = b"", status: int = 0, seq: int | None = None) -> int:
        if seq is None:
            self.seq = self.seq % P.MAX_SEQUENCE + 1
            seq = self.seq
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(command_id, status, seq, body))
        return seq

    def submit(self, tag: str, destination: str) -> None:
        seq = self.send(P.SUBMIT_SM, submit_body(self.app.number, destination, f"mt {tag}".encode()))
        self.pending[seq] = tag
        self.app.ledger.mt_sent(tag, self.gateway)

    def abort(self) -> None:
        self.aborted = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            pdus = self.framer.feed(data)
        except Exception:  # noqa: BLE001 - a broken stream ends the session
            self.abort()
            return
        for pdu in pdus:
            if self.aborted:
                return
            self.handle(pdu)

    def handle(self, pdu: P.Pdu) -> None:
        cid = pdu.command_id
        if cid in (P.SUBMIT_SM_RESP, P.GENERIC_NACK) and pdu.sequence_number in self.pending:
            tag = self.pending.pop(pdu.sequence_number)
            self.app.answered(tag, pdu, self.gateway)
        elif cid == P.BIND_TRANSCEIVER_RESP:
            if not self.bound.done():
                self.bound.set_result(pdu.command_status)
        elif cid == P.DELIVER_SM:
            if self.abort_on_deliver:
                self.abort()
                return
            self.app.delivered(pdu)
            self.send(P.DELIVER_SM_RESP, b"\x00", 0, pdu.sequence_number)
        elif cid == P.ENQUIRE_LINK:
            self.send(P.ENQUIRE_LINK_RESP, b"", 0, pdu.sequence_number)
        elif cid == P.UNBIND:
            self.unbinding = True
            self.send(P.UNBIND_RESP, b"", 0, pdu.sequence_number)
        elif cid == P.UNBIND_RESP and self.transport is not None:
            self.transport.close()
        elif not pdu.is_response:
            self.send(P.GENERIC_NACK, b"", 3, pdu.sequence_number)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.bound.done():
            self.bound.set_result(-1)
        lost = list(self.pending.values())
        self.pending.clear()
        if lost:
            why = self.app.why_lost(self)
            book = self.app.ledger.excused if why in ("app abort", "gateway SIGKILL") else self.app.ledger.unanswered
            book[why] += len(lost)
            self.app.retry_all(lost)
        if not self.closed.done():
            self.closed.set_result(None)


class App:
    """One account: a number it owns, a steady rate, random binds to the gateways."""

    def __init__(self, name: str, number: str, mobiles: list[str], ledger: Ledger, rng: random.Random,
                 ports: list[int], killed: Callable[[int, float], bool], rate: float, window: int,
                 owners: dict[str, str]) -> None:
        self.name = name
        self.number = number
        self.mobiles = mobiles
        self.ledger = ledger
        self.rng = rng
        self.ports = ports
        self.killed = killed  # (gateway, since) -> was it SIGKILLed since?
        self.rate = rate
        self.window = window
        self.backlog: deque[tuple[str, str]] = deque()  # (tag, destination)
        self.dest: dict[str, str] = {}
        self.session: Session | None = None
        self.offering = True
        self.counter = 0
        self.not_offered = 0
        self.abort_mode: str | None = None
        self.binds = 0
        self.owners = owners  # number -> account owning it

    # --- books ----------------------------------------------------------------------

    def answered(self, tag: str, pdu: P.Pdu, gateway: int) -> None:
        status = pdu.command_status
        if pdu.command_id == P.SUBMIT_SM_RESP and status == 0:
            mid = F.response_message_id(pdu.raw).decode("latin-1")
            self.ledger.mt_answered(tag, 0, mid)
            self.ledger.recent_acks.append((self.ledger.now(), gateway, mid))
            return
        if pdu.command_id == P.SUBMIT_SM_RESP and status in FINAL:
            self.ledger.mt_answered(tag, status, None)
            return
        self.retry_all([tag])

    def retry_all(self, tags: list[str]) -> None:
        loop = asyncio.get_running_loop()
        for tag in tags:
            loop.call_later(RETRY_DELAY, self.backlog.append, (tag, self.dest[tag]))

    def delivered(self, pdu: P.Pdu) -> None:
        sm = F.parse_short_message(pdu.raw)
        if sm.is_receipt:
            mid = F.receipt_message_id(sm)
            if mid is not None:
                self.ledger.receipt_got(self.name, mid.rstrip(b"\x00").decode("latin-1"))
            return
        key = (sm.source.text, sm.destination.text, sm.short_message.decode("latin-1"))
        self.ledger.mo_got(self.name, self.owners.get(key[1]), key)

    def why_lost(self, session: Session) -> str:
        if session.aborted:
            return "app abort"
        if self.killed(session.gateway, session.connected_at):
            return "gateway SIGKILL"
        return "session closed with requests outstanding" + (" after unbind" if session.unbinding else "")

    # --- traffic ------------------------------------------------------------------------

    async def offer(self, stop: asyncio.Event) -> None:
        """New tags at a steady rate, whether bound or not (the backlog waits)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        made = 0
        while not stop.is_set():
            due = int((loop.time() - start) * self.rate)
            while made < due:
                made += 1
                if len(self.backlog) >= BACKLOG:
                    self.not_offered += 1
                    continue
                self.counter += 1
                tag = f"{self.name}.{self.counter}"
                destination = self.rng.choice(self.mobiles)
                self.dest[tag] = destination
                self.ledger.mt_new(tag, self.name, self.number, destination)
                self.backlog.append((tag, destination))
            await asyncio.sleep(0.02)

    async def run(self, stop: asyncio.Event, settle: asyncio.Event) -> None:
        """Bind, submit, unbind at random, until stopped; during settling stay bound."""
        while not stop.is_set():
            gateway = self.rng.randrange(len(self.ports))
            lifetime = 1e9 if settle.is_set() else self.rng.uniform(5, 30)
            try:
                await self._one_session(gateway, lifetime, stop, settle)
            except (OSError, TimeoutError):
                pass
            await asyncio.sleep(self.rng.uniform(0.05, 0.3) if settle.is_set() else self.rng.uniform(0, 2))

    async def _one_session(self, gateway: int, lifetime: float, stop: asyncio.Event,
                           settle: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        _, session = await asyncio.wait_for(
            loop.create_connection(lambda: Session(self, gateway), "127.0.0.1", self.ports[gateway]), 5)
        self.session = session
        try:
            seq = session.send(P.BIND_TRANSCEIVER, cstring(self.name) + cstring("pw") + cstring("soak")
                               + bytes([0x34, 0, 0]) + cstring(""))
            del seq
            if await asyncio.wait_for(session.bound, 10) != 0:
                session.abort()
                return
            self.binds += 1
            until = loop.time() + lifetime
            while not session.closed.done() and not session.unbinding and not stop.is_set():
                if loop.time() >= until and not settle.is_set():
                    break
                if self.abort_mode == "window" and session.pending:
                    self.abort_mode = None
                    self.ledger.faults["app abort mid-window"] += 1
                    session.abort()
                    break
                if self.abort_mode == "deliver":
                    self.abort_mode = None
                    self.ledger.faults["app abort before deliver_sm_resp"] += 1
                    session.abort_on_deliver = True
                while self.backlog and len(session.pending) < self.window:
                    tag, destination = self.backlog.popleft()
                    if self.ledger.mts[tag].message_ids or self.ledger.mts[tag].refused is not None:
                        continue
                    session.submit(tag, destination)
                await asyncio.sleep(0.01)
            await self._unbind(session)
        finally:
            self.session = None

    async def _unbind(self, session: Session) -> None:
        """Graceful: wait for the answers, unbind, wait for the close."""
        if session.closed.done():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while session.pending and not session.closed.done() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if not session.closed.done():
            session.unbinding = True
            session.send(P.UNBIND)
            try:
                await asyncio.wait_for(asyncio.shield(session.closed), 5)
            except TimeoutError:
                if session.transport is not None:
                    session.transport.close()

    def unresolved(self) -> int:
        return sum(1 for mt in self.ledger.mts.values()
                   if mt.app == self.name and not mt.message_ids and mt.refused is None)

