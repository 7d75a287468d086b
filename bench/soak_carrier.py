"""The soak's carrier: the bundled simulator, counting what it takes, redelivering what it sends.

A real SMSC retries a deliver_sm until it gets ESME_ROK. This one does: MOs (plain text, and
STOP/START/HELP for a pool of mobiles, one keyword at a time per pair) and a receipt for every
MT that asked for one go through one queue, each retried after a failure, a timeout or a lost
session, until a gateway answers ESME_ROK. Every outcome is written to the `Ledger`.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.soak_ledger import KEYWORDS, Ledger, Mo
from gateway.simulator import Simulator
from gateway.simulator.codec import decode_text, deliver_sm_body, encode_text, receipt_body
from gateway.simulator.records import Submission, address_octets
from gateway.simulator.session import SessionClosedError, SmscSession
from gateway.smpp.fields import Address
from gateway.smpp.pdu import DELIVER_SM

DELIVER_TIMEOUT = 12.0  # above the gateways' esme.response_timeout: a slow app is no failure
RETRY_DELAY = 0.5  # after the first failure; doubling per attempt, as SMSC retry schedules do
MAX_RETRY_DELAY = 20.0
IN_FLIGHT = 300


class SoakCarrier(Simulator):
    def __init__(self, ledger: Ledger, rng: random.Random, mobiles: list[str], numbers: dict[str, str]) -> None:
        super().__init__(http_port=None, keep_records=False)
        self.ledger = ledger
        self.rng = rng
        self.mobiles = mobiles
        self.numbers = numbers  # long code -> owning app
        self.queue: deque[tuple[str, Any, bytes]] = deque()  # (kind, Mo | message_id, body)
        self.in_flight = 0
        self.busy_pairs: set[tuple[str, str]] = set()
        self.mo_pending = 0
        self.receipts_pending = 0
        self._wake = asyncio.Event()
        self._mo_ids = 0
        self.probes_reached: set[str] = set()
        self.tries: dict[int, int] = {}  # id(item) -> failed attempts (the item lives until ESME_ROK)
        self.gateway_of: Callable[[SmscSession], int] = lambda session: -1

    # --- what the gateways send -------------------------------------------------------

    def _remember(self, submission: Submission) -> None:
        message = submission.message
        text = decode_text(message.data_coding, message.payload, message.esm_class)
        if text.startswith("pr "):  # a probe after settling: "pr <mobile>><number> <gateway>"
            self.probes_reached.add(text[3:])
            return
        tag = text[3:].split(" ", 1)[0] if text.startswith("mt ") else None
        source = message.source.addr.decode("ascii", "replace")
        destination = message.destination.addr.decode("ascii", "replace")
        self.ledger.carrier_took(tag, submission.message_id, source, destination, False)

    def _send_receipts(self, origin: SmscSession, submission: Submission) -> None:
        message = submission.message
        assert submission.message_id is not None
        excerpt = decode_text(message.data_coding, message.payload, message.esm_class)
        for mobile in submission.destinations:
            body = receipt_body(submission.message_id, mobile, message.source, submission.received_at,
                                datetime.now(UTC), excerpt)
            self.ledger.receipts_sent[submission.message_id] += 1
            self.receipts_pending += 1
            self._push(("receipt", submission.message_id, body))

    # --- MO -------------------------------------------------------------------------------

    def new_mo(self, keyword_share: float) -> None:
        mobile = self.rng.choice(self.mobiles)
        number = self.rng.choice(sorted(self.numbers))
        pair = (mobile, number)
        if self.rng.random() < keyword_share and pair not in self.busy_pairs:
            text = self.rng.choices(KEYWORDS, (4, 4, 1))[0]
            self.busy_pairs.add(pair)
        else:
            self._mo_ids += 1
            text = f"mo {self._mo_ids}"
        mo = Mo((mobile, number, text))
        self.ledger.mos.append(mo)
        _, octets = encode_text(text, 0)
        body = deliver_sm_body(Address(1, 1, address_octets(mobile)), Address(1, 1, address_octets(number)),
                               0, octets)
        self.mo_pending += 1
        self._push(("mo", mo, body))

    # --- the redelivering queue ---------------------------------------------------------------

    def _push(self, item: tuple[str, Any, bytes]) -> None:
        self.queue.append(item)
        self._wake.set()

    async def run_deliveries(self) -> None:
        """Forever: send what is queued (up to IN_FLIGHT at once) to a bound receiver."""
        while True:
            while self.queue and self.in_flight < IN_FLIGHT:
                session = self._receiver()
                if session is None:
                    break
                item = self.queue.popleft()
                self.in_flight += 1
                asyncio.get_running_loop().create_task(self._deliver(session, item))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 0.2)
            except TimeoutError:
                pass

    async def _deliver(self, session: SmscSession, item: tuple[str, Any, bytes]) -> None:
        kind, key, body = item
        if kind == "mo":
            self.ledger.mo_sent(key)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        status = -1
        try:
            session.send_request(DELIVER_SM, body, future)
            status = await asyncio.wait_for(future, DELIVER_TIMEOUT)
        except (SessionClosedError, TimeoutError, OSError):
            pass
        finally:
            self.in_flight -= 1
        if status == 0:
            if kind == "mo":
                key.gateway = self.gateway_of(session)
                self.ledger.mo_done(key)
                self.mo_pending -= 1
                if key.key[2] in KEYWORDS:  # a plain MO of the pair frees nothing: its keyword may be in flight
                    self.busy_pairs.discard(key.key[:2])
            else:
                self.ledger.receipts_rok[key] += 1
                self.receipts_pending -= 1
            self.tries.pop(id(item), None)
            self._wake.set()
            return
        tries = self.tries[id(item)] = self.tries.get(id(item), 0) + 1
        await asyncio.sleep(min(MAX_RETRY_DELAY, RETRY_DELAY * 2 ** (tries - 1)))
        self._push(item)

    def pending(self) -> dict[str, int]:
        return {"MO": self.mo_pending, "receipts": self.receipts_pending}
