"""The soak's carrier and books (bench/soak_carrier.py, bench/soak_ledger.py), without sockets.

Seed 7's 600 s soak reported 2 STOPs "lost": the carrier freed a pair when a plain MO of it was
ESME_ROK'd, so it sent a second STOP while the pair's first was still unanswered; the gateway
rightly took the second for a copy in flight (one forward, two ESME_ROK), and the books, keyed by
(mobile, number, text), counted one STOP never delivered.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from bench.soak_carrier import KEYWORDS, SoakCarrier
from bench.soak_ledger import Ledger, Mo, check

MOBILE, NUMBER = "+14155552000", "+14155550100"


class FakeSession:
    """Takes deliver_sm and leaves each answer to the test."""

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[int]] = []

    def send_request(self, command_id: int, body: bytes, waiter: asyncio.Future[int]) -> None:
        self.waiters.append(waiter)


async def test_a_plain_mo_answered_leaves_its_pairs_keyword_in_flight() -> None:
    carrier = SoakCarrier(Ledger(), random.Random(7), [MOBILE], {NUMBER: "app0"})
    carrier.new_mo(1.0)  # a keyword: the pair is busy until it is ESME_ROK'd
    carrier.new_mo(1.0)  # so this one is plain
    keyword, plain = carrier.queue.popleft(), carrier.queue.popleft()
    assert keyword[1].key[2] in KEYWORDS and plain[1].key[2].startswith("mo ")
    session = FakeSession()
    tasks = [asyncio.create_task(carrier._deliver(session, item)) for item in (keyword, plain)]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    session.waiters[1].set_result(0)  # the plain one first (the other gateway, not queued behind the STOP)
    await tasks[1]
    carrier.new_mo(1.0)
    assert carrier.queue.pop()[1].key[2].startswith("mo "), "a second keyword while the first is unanswered"
    session.waiters[0].set_result(0)
    await tasks[0]
    carrier.new_mo(1.0)
    assert carrier.queue.pop()[1].key[2] in KEYWORDS


def settled(ledger: Ledger) -> Any:
    return check(ledger, set(), 0, {"MO": 0, "receipts": 0})


def stop(ledger: Ledger, sent: float, rok: float) -> Mo:
    mo = Mo((MOBILE, NUMBER, "STOP"))
    mo.sent_at.append(sent)
    mo.rok_at = rok
    ledger.mos.append(mo)
    ledger.mo_attempts[mo.key] += 1
    ledger.mo_rok[mo.key] += 1
    return mo


def test_a_stop_sent_while_an_identical_one_was_unanswered_is_folded_not_lost() -> None:
    ledger = Ledger()
    stop(ledger, 1.0, 3.0)
    stop(ledger, 2.0, 3.0)  # sent before the first's ESME_ROK: the gateway's copy in flight
    ledger.mo_acked[(MOBILE, NUMBER, "STOP")] = 1
    verdict = settled(ledger)
    assert verdict.counts["mo lost"] == 0 and verdict.lost == 0
    assert verdict.counts["mo folded into that identical copy in flight (one forward)"] == 1
    assert not [b for b in verdict.broken if "MO" in b]


def test_a_stop_sent_after_the_previous_ones_answer_and_never_acked_is_lost() -> None:
    ledger = Ledger()
    stop(ledger, 1.0, 2.0)
    stop(ledger, 2.5, 3.0)  # a new request: the gateway must forward it
    ledger.mo_acked[(MOBILE, NUMBER, "STOP")] = 1
    verdict = settled(ledger)
    assert verdict.counts["mo lost"] == 1
    assert verdict.counts["mo folded into that identical copy in flight (one forward)"] == 0
    assert any("MO never acked" in b for b in verdict.broken)
