"""Use cases: forward MT to the carrier, route MO and receipts to applications.

The proxy owns accounts, carrier choice, the message_id -> account map for receipts,
and the policy hook every MT request and every MO passes through. It never touches
sockets; sessions call it and it calls them back.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from gateway.config import Account, Settings
from gateway.errors import MalformedPduError, StoreError, status_for
from gateway.limits.networks import contains
from gateway.metrics import LATENCY_BUCKETS, AccountStats, Metrics
from gateway.own_queue import OwnQueue, OwnRequest
from gateway.policy.numbers import e164, originator_text
from gateway.receipts import OWN, ReceiptRouter
from gateway.shaping import OwnWaiting, Shaper, Waiting
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.smpp.segments import ONE_SEGMENT_BELOW, mt_segments

if TYPE_CHECKING:
    from gateway.limits.bucket import TokenBucket
    from gateway.outbox import Outbox
    from gateway.store.base import Store
    from gateway.store.index import BlockIndex

log = logging.getLogger(__name__)

__all__ = ["OWN", "Pending", "Proxy"]
CONTROL = frozenset({P.CANCEL_SM, P.QUERY_SM, P.REPLACE_SM})  # forwarded for the sender's own messages only
TEMPORARY = frozenset({st.ESME_RX_T_APPN, st.ESME_RMSGQFUL, st.ESME_RTHROTTLED})
OnStatus = Callable[[int, "P.Pdu | None"], None]
# the hot path's constants as module globals (no attribute lookup per message)
SUBMIT_SM, DATA_SM, SUBMIT_MULTI, SUBMIT_MULTI_RESP = P.SUBMIT_SM, P.DATA_SM, P.SUBMIT_MULTI, P.SUBMIT_MULTI_RESP


class EsmeSession(Protocol):
    """What the proxy needs of an application session (esme_server.EsmeConnection)."""

    system_id: str
    outstanding: int
    window: int  # the account's window (a reload sets it for bound sessions)
    closed: bool
    bucket: TokenBucket | None  # the account's max_tps, shared by its binds (set by Proxy.esme_bound)
    account_stats: AccountStats  # its account's PDU counters and latency histogram

    def send(self, data: bytes) -> None: ...

    def send_with_sequence(self, data: bytes, sequence_number: int, command_id: int) -> None: ...

    def deliver(self, pdu: P.Pdu, raw: bytes, on_status: OnStatus) -> None: ...

    def can_receive(self) -> bool: ...


class CarrierLink(Protocol):
    """What the proxy needs of a carrier session (carrier.CarrierConnection)."""

    window: int
    pending: dict[int, Pending]

    def forward(self, raw_pdu: P.Pdu, pending: Pending, raw: bytes | None = None) -> None: ...

    def send(self, data: bytes) -> None: ...


class Pending(NamedTuple):
    """A request the gateway sent to the carrier and awaits the answer of. A tuple: gateway/hotpath.py
    builds one per message with tuple.__new__ (no Python __init__) and reads it back with one unpacking."""

    origin: EsmeSession | None  # None: the gateway's own request
    origin_seq: int
    command_id: int
    started: float
    on_response: Callable[[P.Pdu | None], None] | None = None  # own requests only
    extra: object = None  # policy data (e.g. submit_multi unsuccess list)
    wants_receipt: bool = False  # keep message_id -> account for the receipt



MtFastView = tuple[dict[tuple[str, int, bytes], tuple[str | None, str | None]], "BlockIndex"]


class Policy(Protocol):
    """The seam the opt-out engine plugs into."""

    def check_mt(self, esme: EsmeSession, pdu: P.Pdu, scan: F.MtScan | None) -> MtVerdict | None:
        """None: forward untouched. Otherwise answer or rewrite (see MtVerdict).

        scan: submit_sm / data_sm addresses already read by F.mt_scan; None for other commands.
        """
        ...

    def on_mo(self, proxy: Proxy, carrier: CarrierLink, pdu: P.Pdu, sm: F.ShortMessage | F.DataSm) -> bool:
        """True when the policy took the MO over (it then answers the carrier itself)."""
        ...

    def mt_fast(self) -> MtFastView | None:
        """What gateway/hotpath.py needs to pass a submit_sm without calling check_mt: the verdicts
        on sources check_mt cached, and the block index. None: every MT goes through check_mt."""
        ...


@dataclass(slots=True)
class MtVerdict:
    status: int = 0  # non-zero: answer the application with this status, nothing forwarded
    body: bytes = b""  # response body when answering locally
    raw: bytes | None = None  # forward these bytes instead (submit_multi with blocked dests removed)
    extra: object = None  # with raw: kept in Pending; answered locally: a callable run after the answer


class NullPolicy:
    def check_mt(self, esme: EsmeSession, pdu: P.Pdu, scan: F.MtScan | None) -> MtVerdict | None:
        return None

    def on_mo(self, proxy: Proxy, carrier: CarrierLink, pdu: P.Pdu, sm: F.ShortMessage | F.DataSm) -> bool:
        return False

    def mt_fast(self) -> MtFastView | None:
        return None


@dataclass
class AccountState:
    config: Account
    sessions: list[EsmeSession] = field(default_factory=list)
    rr: int = 0

    def receiver(self) -> EsmeSession | None:
        sessions = [s for s in self.sessions if s.can_receive() and not s.closed]
        if not sessions:
            return None
        self.rr = (self.rr + 1) % len(sessions)
        return sessions[self.rr]


class Proxy:
    def __init__(self, settings: Settings, metrics: Metrics, policy: Policy | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stats = metrics.stats
        self.inflight = self.stats.inflight
        self.policy: Policy = policy or NullPolicy()  # the opt-out engine replaces it at start
        self.accounts = {a.system_id: AccountState(a) for a in settings.accounts}
        self.number_owner = {n: a.system_id for a in settings.accounts for n in a.numbers}
        self.default_accounts = [s for s in self.accounts.values() if not s.config.numbers]
        self._default_rr = 0
        self.region = settings.optout.default_region
        self.carriers: list[CarrierLink] = []
        self._carrier_rr = 0
        self.max_routes = settings.routing.max_receipt_routes
        self.unbound_status = settings.routing.unbound_status
        self.timeout_status = settings.carrier.timeout_status
        self.accepting = True
        self.accepting_mo = True
        self.outbox: Outbox | None = None  # set at start when routing.unbound = "outbox"
        self.route_store: Store | None = None  # receipt routes persisted in batches
        self.route_batch: list[tuple[str, str, float]] = []
        self.carrier_ready = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.receipts = ReceiptRouter(self, settings)
        self.routes = self.receipts.routes  # message_id key -> account (routemap.RouteMap)
        self._own_waiting: OwnQueue[CarrierLink] = OwnQueue(settings.carrier.response_timeout)
        self._own_timer: asyncio.TimerHandle | None = None
        self.shaper = Shaper(self, metrics)  # account and carrier rates (gateway/shaping.py)
        self.pacer = self.shaper.pacer  # None: no carrier max_tps

    def reconfigure(self, settings: Settings, now: float) -> tuple[list[AccountState], list[AccountState]]:
        """A reload's accounts and limits (cold path, between two PDUs). An account still listed keeps
        its AccountState, so its bound sessions stay, with the new config: its limits and window apply
        to their next requests. Returns (removed, changed) accounts; the caller unbinds what must go."""
        self.settings = settings
        self.shaper.reconfigure(settings.accounts, settings.carrier, now)
        states: dict[str, AccountState] = {}
        changed = []
        for config in settings.accounts:
            state = self.accounts.get(config.system_id) or AccountState(config)
            if state.config != config:
                changed.append(state)
            state.config = config
            states[config.system_id] = state
            bucket = self.shaper.bucket_for(config.system_id)
            for session in state.sessions:
                session.bucket, session.window = bucket, config.window
        removed = [state for system_id, state in self.accounts.items() if system_id not in states]
        self.accounts = states
        self.number_owner = {n: a.system_id for a in settings.accounts for n in a.numbers}
        self.default_accounts = [s for s in states.values() if not s.config.numbers]
        self._default_rr = 0
        return removed, changed

    def apply_share(self, fraction: float, now: float | None = None) -> None:
        """Cluster shares: this gateway takes `fraction` of every account and carrier limit."""
        self.shaper.set_share(fraction, asyncio.get_running_loop().time() if now is None else now)

    # --- binds ------------------------------------------------------------------
    def authenticate(self, bind: F.BindRequest, ip: str, password_ok: bool,
                     tls: bool = False) -> tuple[int, AccountState | None, str]:
        """(status, account when bound, reason for gateway_bind_failures_total). The password was
        verified beforehand (bind_guard, off the event loop); ip is the peer's address, tls whether
        the session came in on the TLS listener."""
        if not self.accepting:
            return st.ESME_RBINDFAIL, None, "shutting_down"
        state = self.accounts.get(bind.system_id)
        if state is None:
            return st.ESME_RINVSYSID, None, "unknown_system_id"
        refused = address_refusal(state.config, ip, tls)  # whatever the password: no guessing from there
        if refused is not None:
            return st.ESME_RBINDFAIL, None, refused
        if not password_ok:
            return st.ESME_RINVPASWD, None, "wrong_password"
        if len(state.sessions) >= state.config.max_binds:
            return st.ESME_RBINDFAIL, None, "max_binds"
        return st.ESME_ROK, state, ""

    def esme_bound(self, state: AccountState, session: EsmeSession) -> None:
        session.bucket = self.shaper.bucket_for(state.config.system_id)
        state.sessions.append(session)
        self.stats.esme_sessions[state.config.system_id] = len(state.sessions)
        if self.outbox is not None and session.can_receive():
            self.outbox.wake(state.config.system_id)

    def esme_gone(self, state: AccountState, session: EsmeSession) -> None:
        if session in state.sessions:
            state.sessions.remove(session)
        self.stats.esme_sessions[state.config.system_id] = len(state.sessions)

    # --- carrier sessions -------------------------------------------------------
    def carrier_bound(self, link: CarrierLink) -> None:
        self.carriers.append(link)
        self.stats.carrier_bound = len(self.carriers)
        self.carrier_ready.set()
        if self._own_waiting:
            self._drain_own()

    def carrier_gone(self, link: CarrierLink) -> None:
        if link in self.carriers:
            self.carriers.remove(link)
        self.stats.carrier_bound = len(self.carriers)
        if not self.carriers:
            self.carrier_ready.clear()
        for pending in list(link.pending.values()):
            self.mt_failed(pending, self.timeout_status)
        link.pending.clear()

    def pick_carrier(self) -> CarrierLink | int:
        """A carrier with window room, or the status to refuse with."""
        carriers = self.carriers
        n = len(carriers)
        if n == 1:
            link = carriers[0]
            return link if len(link.pending) < link.window else st.ESME_RTHROTTLED
        if not n:
            return st.ESME_RMSGQFUL
        for _ in range(n):
            self._carrier_rr = (self._carrier_rr + 1) % n
            link = carriers[self._carrier_rr]
            if len(link.pending) < link.window:
                return link
        return st.ESME_RTHROTTLED

    # --- MT: application -> carrier ------------------------------------------------
    def forward_mt(self, esme: EsmeSession, pdu: P.Pdu, now: float) -> None:
        cid = pdu.command_id
        if cid in CONTROL:  # cancel_sm, query_sm, replace_sm: only for the sender's own messages
            self.receipts.forward_control(esme, pdu, now)
            return
        bucket = esme.bucket
        if bucket is not None and not bucket.take(now, 1 if len(pdu.raw) < ONE_SEGMENT_BELOW and cid != SUBMIT_MULTI
                                                  else mt_segments(pdu.raw)):  # refusals draw too
            self.shaper.throttled.inc()
            self.answer_locally(esme, P.response_for(pdu, st.ESME_RTHROTTLED))
            return
        scan: F.MtScan | None = None
        if cid == SUBMIT_SM or cid == DATA_SM:
            try:
                scan = F.mt_scan(pdu.raw)
            except MalformedPduError as exc:  # we could not check the recipient: never forward it
                self.answer_locally(esme, P.response_for(pdu, exc.command_status))
                return
            receipt = bool(scan[4] & 0x1F)
        else:
            receipt = cid == SUBMIT_MULTI
        verdict = self.policy.check_mt(esme, pdu, scan)
        if verdict is None:
            self.to_carrier(esme, pdu, now, None, receipt)
        elif not self._answered(esme, pdu, verdict):
            self.to_carrier(esme, pdu, now, verdict.extra, receipt, verdict.raw)

    def _answered(self, esme: EsmeSession, pdu: P.Pdu, verdict: MtVerdict) -> bool:
        """A verdict that answers the request here (refused, or accepted without the carrier)."""
        if not (verdict.status or verdict.raw is None):
            return False
        after = verdict.extra if callable(verdict.extra) else None
        self.answer_locally(esme, P.response_for(pdu, verdict.status, verdict.body), after)
        return True

    def to_carrier(self, esme: EsmeSession, pdu: P.Pdu, now: float, extra: object = None,
                   receipt: bool = False, raw: bytes | None = None) -> None:
        """Forward a checked request (raw: rewritten bytes instead of pdu's) at the carrier rate."""
        pacer = self.pacer
        if pacer is not None and (pacer.queue or pacer.own or not pacer.bucket.take(now)):
            pacer.wait(Waiting(esme, pdu, now, extra, receipt, raw))
            return
        self.send_mt(esme, pdu, now, extra, receipt, raw)

    def send_released(self, item: Waiting, now: float) -> None:
        """A request the carrier pacer held: checked again first, since a STOP may have landed
        while it waited (submit_sm and data_sm; a submit_multi keeps the check it had)."""
        pdu = item.pdu
        if item.raw is None and (pdu.command_id == P.SUBMIT_SM or pdu.command_id == P.DATA_SM):
            verdict = self.policy.check_mt(item.esme, pdu, F.mt_scan(pdu.raw))
            if verdict is not None and self._answered(item.esme, pdu, verdict):
                return
        self.send_mt(item.esme, pdu, now, item.extra, item.receipt, item.raw)

    def send_mt(self, esme: EsmeSession, pdu: P.Pdu, now: float, extra: object = None,
                receipt: bool = False, raw: bytes | None = None) -> None:
        """Forward to a carrier with room now, else answer with the status pick_carrier gives."""
        link = self.pick_carrier()
        if isinstance(link, int):
            self.answer_locally(esme, P.response_for(pdu, link))
            return
        esme.outstanding += 1
        self.stats.inflight["carrier"] += 1
        link.forward(pdu, Pending(esme, pdu.sequence_number, pdu.command_id, now, None, extra, receipt), raw)

    def answer_locally(self, esme: EsmeSession, resp: bytes, after: Callable[[], None] | None = None) -> None:
        """A request the gateway answers itself (refused) holds a window slot like a forwarded one
        until its answer goes out, at the end of this loop iteration: a burst of refusals beyond
        the window gets ESME_RTHROTTLED like any other. `after` runs once the answer is queued."""
        esme.outstanding += 1
        asyncio.get_running_loop().call_soon(_answered_locally, esme, resp, after)

    def mt_answered(self, pending: Pending, resp: P.Pdu, now: float) -> None:
        self.inflight["carrier"] -= 1
        if self._own_waiting.waiting:  # the freed slot goes to the gateway's own replies first
            self._drain_own(now)
        if self.receipts.parked:  # a receipt may be waiting for this answer
            self.receipts.answered()
        esme, origin_seq, _, started, on_response, extra, wants_receipt = pending
        if on_response is not None:
            on_response(resp)
            return
        if esme is None:
            return
        esme.outstanding -= 1
        raw = resp.raw
        if wants_receipt and resp.command_status == 0:
            message_id = F.response_message_id(raw)
            if message_id:
                self.receipts.remember(message_id, esme.system_id, now)
        seconds = now - started  # the account's latency histogram (gateway_account_request_latency_seconds)
        stats = esme.account_stats
        stats.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        stats.latency_sum += seconds
        if extra is not None and resp.command_id == SUBMIT_MULTI_RESP:
            esme.send(self._merge_multi_resp(resp, pending))
        else:
            esme.send_with_sequence(raw, origin_seq, resp.command_id)

    def _merge_multi_resp(self, resp: P.Pdu, pending: Pending) -> bytes:
        blocked: list[tuple[F.Address, int]] = pending.extra  # type: ignore[assignment]
        try:
            message_id, unsuccess = F.parse_submit_multi_resp(resp.raw)
        except MalformedPduError:
            return resp.with_sequence(pending.origin_seq)
        body = F.submit_multi_resp_body(message_id, unsuccess + blocked)
        return P.encode(P.SUBMIT_MULTI_RESP, resp.command_status, pending.origin_seq, body)

    def mt_failed(self, pending: Pending, status: int) -> None:
        """The carrier never answered (timeout or link lost): answer with a temporary status."""
        self.stats.inflight["carrier"] -= 1
        if self._own_waiting:
            self._drain_own()
        if self.receipts.parked:
            self.receipts.answered()
        if pending.on_response is not None:
            pending.on_response(None)
            return
        esme = pending.origin
        if esme is None:
            return
        esme.outstanding -= 1
        esme.send(P.encode(pending.command_id | P.RESPONSE_BIT, status, pending.origin_seq))

    def send_own(self, raw_pdu: P.Pdu, now: float, on_response: Callable[[P.Pdu | None], None]) -> bool:
        """Send a PDU the gateway built itself (an auto-reply). Beyond the carrier rate it waits ahead
        of every application request (shaping); with every carrier window full it waits in order for
        room (own_queue). False when no carrier is bound or the wait queue is full."""
        pacer = self.pacer
        if pacer is not None:
            if not self.carriers:
                return False
            if pacer.own or not pacer.bucket.take(now):
                pacer.wait_own(OwnWaiting(raw_pdu, now, on_response))
                return True
        return self.send_own_now(raw_pdu, now, on_response)

    def send_own_now(self, raw_pdu: P.Pdu, now: float, on_response: Callable[[P.Pdu | None], None]) -> bool:
        link = self.pick_carrier()
        waiting = self._own_waiting
        if isinstance(link, int) or waiting:
            if not self.carriers or not waiting.put(raw_pdu, now, on_response):
                return False
            if self._own_timer is None:
                self._own_timer = asyncio.get_running_loop().call_later(waiting.timeout, self._own_expiry)
            self._drain_own(now)
            return True
        self.stats.inflight["carrier"] += 1
        link.forward(raw_pdu, Pending(None, 0, raw_pdu.command_id, now, on_response))
        return True

    def _drain_own(self, now: float | None = None) -> None:
        """Waiting own replies to carriers with room, oldest first; expired ones answered None."""
        def send(link: CarrierLink, req: OwnRequest) -> None:
            self.stats.inflight["carrier"] += 1
            link.forward(req.pdu, Pending(None, 0, req.pdu.command_id, at, req.on_response))

        at = asyncio.get_running_loop().time() if now is None else now
        self._own_waiting.drain(self.pick_carrier, send, at)

    def _own_expiry(self) -> None:
        """Replies that waited their deadline with no room ever freeing (no carrier left) give up."""
        self._own_timer = None
        self._drain_own()
        if self._own_waiting:
            self._own_timer = asyncio.get_running_loop().call_later(self._own_waiting.timeout, self._own_expiry)

    # --- MO and receipts: carrier -> application ---------------------------------
    def on_carrier_request(self, link: CarrierLink, pdu: P.Pdu, now: float) -> None:
        if not self.accepting_mo:  # stopping: applications are gone, the carrier retries later
            link.send(P.response_for(pdu, self.unbound_status, b"\x00"))
            return
        try:
            sm = F.parse_any_sm(pdu)
        except MalformedPduError as exc:
            log.warning("malformed_mo", extra={"error": str(exc), "sequence_number": pdu.sequence_number})
            link.send(P.response_for(pdu, status_for(exc), b"\x00"))
            return
        if sm.is_receipt:
            self.receipts.route(link, pdu, sm, now)
            return
        if self.policy.on_mo(self, link, pdu, sm):
            return
        self.deliver(self.account_for(sm.destination), pdu, pdu.raw, self.answer_carrier(link, pdu))

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run coro as a task the shutdown drain waits for."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def flush_routes(self) -> None:
        """Persist the message_id -> account routes gathered since the last flush (one batch)."""
        if not self.route_batch or self.route_store is None:
            return
        batch, self.route_batch = self.route_batch, []
        try:
            await self.route_store.put_receipt_routes(batch)
        except asyncio.CancelledError:
            self.route_batch[:0] = batch  # stopping: the final flush writes them
            raise
        except StoreError as exc:
            self.metrics.store_errors.inc()
            self.route_batch[:0] = batch[-self.max_routes :]
            log.warning("receipt_routes_not_saved", extra={"count": len(batch), "error": str(exc)})

    def account_for(self, destination: F.Address) -> AccountState | None:
        """The account owning the number the mobile texted, else the default route."""
        key = e164(destination.ton, destination.addr, self.region) or originator_text(destination.addr)
        owner = self.number_owner.get(key) if key else None
        if owner is not None:
            return self.accounts[owner]
        defaults = self.default_accounts
        if not defaults:
            return None
        for _ in range(len(defaults)):
            self._default_rr = (self._default_rr + 1) % len(defaults)
            state = defaults[self._default_rr]
            if state.receiver() is not None:
                return state
        return defaults[0]

    def deliver(self, state: AccountState | None, pdu: P.Pdu, raw: bytes, on_status: OnStatus) -> None:
        """Hand raw to one of the account's receivers; the outbox keeps it when none can take it."""
        session = state.receiver() if state else None
        outbox = self.outbox
        if session is None or (outbox is not None and state is not None and state.config.system_id in outbox.backlog):
            if state is not None and outbox is not None:  # none bound, or keep the order behind a backlog
                outbox.keep(state.config.system_id, raw, on_status)
                return
            self.metrics.mo_unrouted.labels("no_receiver" if state else "no_account").inc()
            on_status(self.unbound_status, None)
            return
        if outbox is not None:
            account = session.system_id

            def answered(status: int, resp: P.Pdu | None) -> None:
                if status in TEMPORARY:  # the application asked for a retry: we keep it
                    outbox.keep(account, raw, on_status)
                else:
                    on_status(status, resp)

            session.deliver(pdu, raw, answered)
            return
        session.deliver(pdu, raw, on_status)

    def answer_carrier(self, link: CarrierLink, pdu: P.Pdu) -> OnStatus:
        """A callback that answers the carrier's deliver_sm/data_sm with the application's answer."""

        expected = pdu.command_id | P.RESPONSE_BIT

        def done(status: int, resp: P.Pdu | None) -> None:
            if resp is not None and resp.command_id == expected:
                link.send(resp.with_sequence(pdu.sequence_number))  # the application's bytes
            else:  # no answer, or a generic_nack: the carrier gets a proper response
                link.send(P.response_for(pdu, status, b"\x00"))

        return done

    def remember_route(self, message_id: bytes, account: str, now: float) -> None:
        self.receipts.remember(message_id, account, now)

    def purge_routes(self, now: float) -> int:
        """Expired receipt routes: a bounded slice now, the rest over the next loop iterations."""
        return self.receipts.purge(now)


def address_refusal(config: Account, ip: str, tls: bool) -> str | None:
    """Why the account's address rules refuse a session from ip (over TLS or not), None when they don't."""
    networks = config.networks()
    if networks is not None and not contains(networks, ip):
        return "ip_not_allowed"
    if config.require_tls and not tls:
        return "tls_required"
    return None


def _answered_locally(esme: EsmeSession, resp: bytes, after: Callable[[], None] | None) -> None:
    esme.outstanding -= 1
    esme.send(resp)
    if after is not None:
        after()
