"""evidence.summarise: a period's compliance numbers from its events (pure)."""

from __future__ import annotations

from gateway.evidence import summarise
from gateway.store.base import AuditEvent

A, B, C = "+14155550001", "+14155550002", "+14155550003"
BIZ = "+14155550100"


def _e(i: int, at: float, op: str, number: str, **kw: str) -> AuditEvent:
    return AuditEvent(id=i, at=at, op=op, number=number, counterpart=kw.pop("counterpart", BIZ), **kw)


def test_summary_of_a_period() -> None:
    events = [
        _e(1, 5.0, "stop", A, block_state="blocked"),  # before the period
        _e(2, 10.0, "stop", A, block_state="blocked"),
        _e(3, 10.5, "stop_reply", A),
        _e(4, 20.0, "stop", B, block_state="blocked"),
        _e(5, 23.0, "stop_reply", B),
        _e(6, 30.0, "stop", C, block_state="blocked"),  # toll-free: no reply
        _e(7, 31.0, "possible_optout", A),
        _e(8, 32.0, "possible_optout", B),
        _e(9, 33.0, "mt_refused", A, rule="blocked", text="count=4 first=11 last=19"),
        _e(10, 34.0, "mt_refused", B, rule="blocked", text="count=1 first=21 last=21"),
        _e(11, 35.0, "mt_refused", A, rule="deactivated", text="count=2 first=34 last=35"),
        _e(12, 90.0, "stop", B, block_state="blocked"),  # after the period: B's near miss was reviewed
    ]
    s = summarise(events, 10.0, 60.0)
    assert (s.stops, sorted(s.confirmations), s.unconfirmed) == (3, [0.5, 3.0], 1)
    assert s.refused_counts() == {"blocked": 5, "deactivated": 2}
    assert s.unreviewed == 1
    d = s.as_dict()
    assert (d["confirmation_median_seconds"], d["confirmation_max_seconds"]) == (1.75, 3.0)
    assert s.lines()[3] == "mt refused: blocked 5, deactivated 2"


def test_empty_period() -> None:
    s = summarise([], 0.0, 1.0)
    assert s.lines()[2] == "stop confirmations sent: 0, no confirmation sent; without one: 0"
    assert s.as_dict()["confirmation_median_seconds"] is None


def test_an_optout_from_another_channel_reviews_a_possible_optout() -> None:
    events = [_e(1, 10.0, "possible_optout", A), _e(2, 11.0, "possible_optout", B),
              _e(3, 12.0, "optout", A, source="voice", block_state="blocked", counterpart="")]
    assert summarise(events, 0.0, 60.0).unreviewed == 1  # B's; A's was followed by the voice opt-out


def test_a_revoke_all_stop_counts_once() -> None:
    """Under revoke-all one MO writes an event per key, consecutive and with one fingerprint."""
    events = [
        _e(1, 10.0, "stop", A, block_state="blocked", scope="number", mo_fingerprint="t:STOP"),
        _e(2, 10.0, "stop", A, block_state="blocked", scope="account", mo_fingerprint="t:STOP"),
        _e(3, 10.5, "stop_reply", A),
        _e(4, 20.0, "possible_optout", B, block_state="blocked", scope="number", mo_fingerprint="t:pls stop"),
        _e(5, 20.0, "possible_optout", B, block_state="blocked", scope="account", mo_fingerprint="t:pls stop"),
        _e(6, 30.0, "stop", A, block_state="blocked", scope="number", mo_fingerprint="t:STOP"),  # a new STOP
    ]
    s = summarise(events, 0.0, 60.0)
    assert (s.stops, s.confirmations, s.unconfirmed, s.possible_optouts_acted) == (2, [0.5], 1, 1)
