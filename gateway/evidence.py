"""Evidence for a compliance officer: one mobile's history, and a summary of a period.

- `gateway events export --number +1...` (admin.events_export): every event of one mobile, from
  Store.events_of: opt-outs and opt-ins with their texts, the confirmations (stop_reply ...) with
  their message ids, the confirmations' receipts (reply_receipt), deactivation epochs, the MT
  refused for a block (mt_refused summaries, gateway/refusals.py); then refusal_lines() on
  standard error adds the refusals up per reason.
- `gateway report --since --until`: summarise() over the period's events: STOPs honoured, the
  median and maximum time from a STOP to its confirmation being sent (the carrier's
  submit_sm_resp), MT refused by reason, possible opt-outs nobody acted on since.

Pure functions over AuditEvent lists; the commands in admin.py do the I/O.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.admin_rows import iso
from gateway.refusals import parse_refusal
from gateway.store.base import AuditEvent

STOP_OPS = frozenset({"stop"})
REVIEW_OPS = frozenset({"stop", "start", "admin_add", "admin_remove", "optout"})  # a possible opt-out was looked at


@dataclass
class Refused:
    count: int = 0
    first: float = 0.0
    last: float = 0.0

    def add(self, count: int, first: float, last: float) -> None:
        self.first = first if not self.count else min(self.first, first)
        self.last = max(self.last, last)
        self.count += count


def refusals(events: Iterable[AuditEvent]) -> dict[str, Refused]:
    """MT refused per reason (blocked, deactivated...), from mt_refused summaries."""
    out: dict[str, Refused] = {}
    for event in events:
        if event.op == "mt_refused":
            out.setdefault(event.rule, Refused()).add(*parse_refusal(event.text))
    return out


def refusal_lines(events: list[AuditEvent]) -> list[str]:
    return [f"mt refused ({reason}): {r.count:,} from {iso(r.first)} to {iso(r.last)}"
            for reason, r in sorted(refusals(events).items())]


@dataclass
class Summary:
    since: float
    until: float
    stops: int = 0  # STOP keywords (and the network's) recorded: each one blocks
    possible_optouts_acted: int = 0
    confirmations: list[float] = field(default_factory=list)  # seconds from STOP to its reply sent
    unconfirmed: int = 0  # no reply in the period: toll-free, alphanumeric, rate limited, failed
    refused: dict[str, Refused] = field(default_factory=dict)
    unreviewed: int = 0  # possible opt-outs not acted on and not followed by a keyword or an operator
    epochs: int = 0
    retired: int = 0

    def as_dict(self) -> dict[str, object]:
        times = self.confirmations
        return {
            "since": self.since, "until": self.until, "stops_honoured": self.stops,
            "possible_optouts_acted": self.possible_optouts_acted,
            "confirmations_sent": len(times), "stops_unconfirmed": self.unconfirmed,
            "confirmation_median_seconds": statistics.median(times) if times else None,
            "confirmation_max_seconds": max(times) if times else None,
            "mt_refused": {k: v.count for k, v in sorted(self.refused.items())},
            "possible_optouts_unreviewed": self.unreviewed,
            "deactivation_epochs": self.epochs, "optouts_retired_by_deactivation": self.retired,
        }

    def lines(self) -> list[str]:
        times = self.confirmations
        timing = (f"median {statistics.median(times):.3f} s, max {max(times):.3f} s" if times
                  else "no confirmation sent")
        refused = ", ".join(f"{k} {v:,}" for k, v in self.refused_counts().items()) or "none"
        return [
            f"compliance report {iso(self.since)} to {iso(self.until)}",
            f"stops honoured: {self.stops:,} (and {self.possible_optouts_acted:,} possible opt-outs acted on)",
            f"stop confirmations sent: {len(self.confirmations):,}, {timing}; without one: {self.unconfirmed:,}",
            f"mt refused: {refused}",
            f"possible opt-outs unreviewed: {self.unreviewed:,}",
            f"deactivations: {self.epochs:,} epochs ended, {self.retired:,} opt-outs retired",
        ]

    def refused_counts(self) -> dict[str, int]:
        return {k: v.count for k, v in sorted(self.refused.items())}


def summarise(events: list[AuditEvent], since: float, until: float) -> Summary:
    """The period's summary; events in id order (their own period and anything after it)."""
    s = Summary(since, until)
    inside = [e for e in events if since <= e.at < until]
    s.refused = refusals(inside)
    s.epochs = sum(e.op == "deactivation" for e in inside)
    s.retired = sum(e.op == "deactivation_retired" for e in inside)
    s.possible_optouts_acted = sum(e.op == "possible_optout" and e.block_state == "blocked"
                                   and not (i and _same_mo(inside[i - 1], e)) for i, e in enumerate(inside))
    _confirmations(s, inside)
    s.unreviewed = _unreviewed(inside, events)
    return s


def _confirmations(s: Summary, events: list[AuditEvent]) -> None:
    """Each STOP with the first stop_reply to the same pair after it. One STOP under revoke-all
    writes an event per key (its scope's and the account's), one right after the other in one
    transaction: the ones after the first count once."""
    waiting: dict[tuple[str, str], list[float]] = {}
    previous: AuditEvent | None = None
    for event in events:
        pair = (event.number, event.counterpart)
        same_mo = previous is not None and _same_mo(previous, event)
        previous = event
        if event.op in STOP_OPS and not same_mo:
            s.stops += 1
            waiting.setdefault(pair, []).append(event.at)
        elif event.op == "stop_reply" and waiting.get(pair):
            s.confirmations.append(max(0.0, event.at - waiting[pair].pop(0)))
    s.unconfirmed = sum(len(v) for v in waiting.values())


def _same_mo(before: AuditEvent, event: AuditEvent) -> bool:
    """Two events of one keyword MO: consecutive ids, same op, pair and MO fingerprint."""
    return (event.id == before.id + 1 and event.op == before.op and event.number == before.number
            and event.counterpart == before.counterpart and event.mo_fingerprint == before.mo_fingerprint
            and bool(event.mo_fingerprint))


def _unreviewed(inside: list[AuditEvent], everything: list[AuditEvent]) -> int:
    """Possible opt-outs not acted on with no keyword or operator change of the number after them."""
    last_review: dict[str, int] = {}
    for event in everything:
        if event.op in REVIEW_OPS:
            last_review[event.number] = event.id
    return sum(1 for e in inside if e.op == "possible_optout" and e.block_state != "blocked"
               and last_review.get(e.number, 0) < e.id)


def summary_json(summary: Summary) -> str:
    return json.dumps(summary.as_dict(), sort_keys=True)
