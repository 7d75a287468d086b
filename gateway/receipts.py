"""Receipt routing and the ownership check of cancel_sm / query_sm / replace_sm.

A receipt goes to the account whose submit_sm_resp carried its message_id (the route map, then
the store), to nobody for the gateway's own messages (OWN), else to the number's owner or the
default route. A receipt can overtake its submit_sm_resp (one TCP write, or another carrier
bind): while a request sent before the receipt arrived is still unanswered, a receipt with an
unknown id is parked, at most `routing.receipt_hold`, until its route appears or every request
sent before it has been answered. The carrier's deliver_sm is answered in every case.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import MalformedPduError, StoreError, status_for
from gateway.routemap import RouteMap
from gateway.smpp import fields as F
from gateway.smpp import message_id as M
from gateway.smpp import pdu as P
from gateway.smpp import status as st

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.proxy import CarrierLink, EsmeSession, Proxy

log = logging.getLogger(__name__)

OWN = "<gateway-autoreply>"  # receipt-route owner of the gateway's own messages; longer than any system_id
PURGE_SLICE = 2_000  # route-map entries purged per loop iteration
Sm = F.ShortMessage | F.DataSm


@dataclass(slots=True)
class Parked:
    """A receipt waiting for its route."""

    arrived: float
    key: bytes
    link: CarrierLink
    pdu: P.Pdu
    sm: Sm
    timer: asyncio.TimerHandle | None = None
    done: bool = False


class ReceiptRouter:
    def __init__(self, proxy: Proxy, settings: Settings) -> None:
        self.proxy = proxy
        self.routes = RouteMap(settings.routing.receipt_route_ttl, settings.routing.max_receipt_routes)
        self.hold = settings.routing.receipt_hold
        self.submitted_key = M.submitted_keyer(settings.carrier.message_id_format)
        self.text_key = M.text_keyer(settings.carrier.message_id_format)
        self.exact = settings.carrier.message_id_format == "exact"
        self.parked: deque[Parked] = deque()
        self._by_key: dict[bytes, list[Parked]] = {}
        self._hits: list[bytes] = []  # parked keys that got their route since the last check
        self._check_due = False
        self._purging = False

    # --- the route map ------------------------------------------------------------
    def remember(self, message_id: bytes, account: str, now: float) -> None:
        if not M.valid(message_id):  # a receipt could never name it
            return
        key = message_id if self.exact else self.submitted_key(message_id)
        self.routes.add(key, account, now)
        proxy = self.proxy
        if proxy.route_store is not None:
            proxy.route_batch.append((key.decode("latin-1"), account, time.time() + self.routes.ttl))
        if self._by_key and key in self._by_key:
            self._hits.append(key)
            self.answered()

    def purge(self, now: float) -> int:
        """One bounded slice now; the rest in later loop iterations, so no purge stalls the loop."""
        done = self.routes.purge(now, PURGE_SLICE)
        if self.routes.expired(now) and not self._purging:
            self._purging = True
            asyncio.get_running_loop().call_soon(self._purge_more, now)
        return done

    def _purge_more(self, now: float) -> None:
        self.routes.purge(now, PURGE_SLICE)
        if self.routes.expired(now):
            asyncio.get_running_loop().call_soon(self._purge_more, now)
        else:
            self._purging = False

    # --- receipts -----------------------------------------------------------------
    def route(self, link: CarrierLink, pdu: P.Pdu, sm: Sm, now: float) -> None:
        ref = F.receipt_reference(sm)
        if ref is None or not M.valid(ref[0]):  # no id, or one no carrier assigned: the fallback
            self._send(link, pdu, sm, None)
            return
        key = self.text_key(ref[0]) if ref[1] else self.submitted_key(ref[0])
        account = self.routes.get(key)
        if account is not None:
            self._send(link, pdu, sm, account)
        elif self.hold > 0 and self._oldest_pending() <= now:
            self._park(Parked(now, key, link, pdu, sm))
        else:
            self._look_up(link, pdu, sm, key)

    def _oldest_pending(self) -> float:
        """When the oldest request still awaiting the carrier's answer was sent (inf: none)."""
        oldest = math.inf
        for link in self.proxy.carriers:
            for pending in link.pending.values():  # insertion order is send order
                oldest = min(oldest, pending.started)
                break
        return oldest

    def _park(self, entry: Parked) -> None:
        self.parked.append(entry)
        self._by_key.setdefault(entry.key, []).append(entry)
        entry.timer = asyncio.get_running_loop().call_later(self.hold, self._release, entry, "timeout")

    def answered(self) -> None:
        """A request was answered (or failed), or a parked id got its route: re-check, after the
        current callback, so the application sees its submit_sm_resp before the receipt."""
        if self.parked and not self._check_due:
            self._check_due = True
            asyncio.get_running_loop().call_soon(self._check)

    def _check(self) -> None:
        self._check_due = False
        hits, self._hits = self._hits, []
        for key in hits:
            for entry in list(self._by_key.get(key, ())):
                self._release(entry, "route")
        oldest = self._oldest_pending()
        parked = self.parked
        while parked and (parked[0].done or parked[0].arrived < oldest):
            self._release(parked.popleft(), "answered")

    def _release(self, entry: Parked, outcome: str) -> None:
        """outcome: route (it appeared), answered (every older request was), timeout (receipt_hold)."""
        if entry.done:
            return
        entry.done = True
        if entry.timer is not None:
            entry.timer.cancel()
        waiting = self._by_key.get(entry.key)
        if waiting is not None:
            waiting.remove(entry)
            if not waiting:
                del self._by_key[entry.key]
        while self.parked and self.parked[0].done:
            self.parked.popleft()
        account = self.routes.get(entry.key)
        self.proxy.metrics.receipts_held.labels("route" if account is not None else outcome).inc()
        if account is not None:
            self._send(entry.link, entry.pdu, entry.sm, account)
        else:
            self._look_up(entry.link, entry.pdu, entry.sm, entry.key)

    def _look_up(self, link: CarrierLink, pdu: P.Pdu, sm: Sm, key: bytes) -> None:
        if self.proxy.route_store is None:
            self._send(link, pdu, sm, self.routes.get(key))
            return
        self.proxy.spawn(self._look_up_stored(link, pdu, sm, key))

    async def _look_up_stored(self, link: CarrierLink, pdu: P.Pdu, sm: Sm, key: bytes) -> None:
        """A receipt after a restart or for another gateway's submit: the persisted route."""
        try:
            account = await self._stored_route(key)
        except StoreError:
            link.send(P.response_for(pdu, self.proxy.unbound_status, b"\x00"))
            return
        self._send(link, pdu, sm, account if account is not None else self.routes.get(key))

    async def _stored_route(self, key: bytes) -> str | None:
        assert self.proxy.route_store is not None
        try:
            return await self.proxy.route_store.get_receipt_route(key.decode("latin-1"))
        except StoreError:
            self.proxy.metrics.store_errors.inc()
            raise

    def _send(self, link: CarrierLink, pdu: P.Pdu, sm: Sm, account: str | None) -> None:
        if account == OWN:
            link.send(P.response_for(pdu, st.ESME_ROK, b"\x00"))
            evidence = getattr(self.proxy.policy, "own_receipt", None)  # the confirmation's receipt
            if evidence is not None:
                evidence(sm)
            return
        proxy = self.proxy
        state = proxy.accounts.get(account) if account else proxy.account_for(sm.destination)
        proxy.deliver(state, pdu, pdu.raw, proxy.answer_carrier(link, pdu))

    # --- cancel_sm, query_sm, replace_sm ----------------------------------------------
    def forward_control(self, esme: EsmeSession, pdu: P.Pdu, now: float) -> None:
        """Forwarded only for a message_id the gateway routes to this account; else ESME_RINVMSGID."""
        try:
            key = self.submitted_key(F.control_message_id(pdu.raw, pdu.command_id))
        except MalformedPduError as exc:
            self.proxy.answer_locally(esme, P.response_for(pdu, exc.command_status))
            return
        account = self.routes.get(key)
        if account is not None or self.proxy.route_store is None:
            self._control_decided(esme, pdu, account, now)
            return
        esme.outstanding += 1  # counts against the window while the store answers
        self.proxy.spawn(self._control_stored(esme, pdu, key))

    async def _control_stored(self, esme: EsmeSession, pdu: P.Pdu, key: bytes) -> None:
        try:
            account = await self._stored_route(key)
        except StoreError as exc:
            esme.outstanding -= 1
            esme.send(P.response_for(pdu, status_for(exc)))
            return
        esme.outstanding -= 1
        self._control_decided(esme, pdu, account, asyncio.get_running_loop().time())

    def _control_decided(self, esme: EsmeSession, pdu: P.Pdu, account: str | None, now: float) -> None:
        if account != esme.system_id:
            self.proxy.metrics.mt_rejected.labels("not_owner").inc()
            self.proxy.answer_locally(esme, P.response_for(pdu, st.ESME_RINVMSGID))
            return
        self.proxy.to_carrier(esme, pdu, now)
