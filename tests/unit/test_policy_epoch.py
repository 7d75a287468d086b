"""Consent epochs in decide_mo: an opt-in keyword opens the new epoch, an implicit re-opt-in never."""

from __future__ import annotations

from gateway.policy.decide import MoContext, decide_mo
from gateway.policy.keywords import KeywordTable
from gateway.policy.settings import OptoutSettings

SETTINGS = OptoutSettings(implicit_reopt_in=True)
TABLE = KeywordTable(SETTINGS)


def _ctx(block: str | None, epoch: bool) -> MoContext:
    return MoContext("+14155550123", "+14155550100", block=block, epoch=epoch)


def test_start_lifts_the_epoch_block() -> None:
    d = decide_mo("START", False, _ctx("deactivated", True), TABLE, SETTINGS)
    assert (d.op, d.block_action, d.lift_kinds) == ("start", "remove", ("optout", "carrier", "deactivated"))
    d = decide_mo("YES", False, _ctx("optout", True), TABLE, SETTINGS)  # the new subscriber's own STOP, then YES
    assert (d.block_action, d.lift_kinds) == ("remove", ("optout", "deactivated"))


def test_implicit_reopt_in_never_crosses_an_epoch() -> None:
    assert decide_mo("hi there", False, _ctx("deactivated", True), TABLE, SETTINGS).block_action is None
    d = decide_mo("hi there", False, _ctx("optout", True), TABLE, SETTINGS)
    assert (d.rule, d.lift_kinds) == ("implicit", ("optout",))  # the new epoch's own opt-out only
