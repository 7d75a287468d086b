"""MO side of programs: a program keyword's decision, and the FCC revoke-all targets.

- A program stop keyword adds an "optout" block at scope "program" (counterpart
  "<account>/<program>"); a program start keyword lifts only that block (never a STOP's, a
  carrier's or an operator's). The audit event carries the program in its account column
  ("acme/marketing", as scope account carries the system_id) and its rule ("program:marketing:...").
- Revoke-all (47 CFR 64.1200(a)(10), optout.revoke_all, on from its effective date): a STOP-type
  keyword blocks the configured scope's key and, when the texted number has an owning account,
  the account's key too: every program and every number of the business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.policy.decide import LIFT_KEYWORD, MoContext, MoDecision
from gateway.store.base import BlockKey

if TYPE_CHECKING:
    from gateway.optout_mo import MoInput


def program_decision(mo: MoInput, kind_of: Callable[[BlockKey], str | None]) -> tuple[
        MoDecision, MoContext, list[BlockKey]]:
    match = mo.program
    key = mo.keys["program"]
    kind = kind_of(key)
    ctx = MoContext(mo.mobile, mo.business, toll_free=mo.toll_free, block=kind, can_reply=mo.can_reply)
    assert match is not None
    rule = f"program:{match.program}:{match.keyword}"
    if match.op == "stop":
        return MoDecision("stop", rule, "keyword", "add", "optout", reply=match.reply), ctx, [key]
    if kind in LIFT_KEYWORD:
        return MoDecision("start", rule, "keyword", "remove", lift_kinds=LIFT_KEYWORD, reply=match.reply), ctx, [key]
    return MoDecision("start", rule, "keyword", reason="no_block"), ctx, []


def revoke_all_targets(key: BlockKey, keys: dict[str, BlockKey], decision: MoDecision, on: bool) -> list[BlockKey]:
    """Where a keyword opt-out writes: key, and under revoke-all the account's key besides."""
    account = keys.get("account")
    if not on or decision.op not in ("stop", "possible_optout") or account is None or account == key:
        return [key]
    return [key, account]
