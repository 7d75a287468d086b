"""MO side of programs: a program keyword's decision, and the FCC revoke-all targets.

- A program stop keyword (op "program_stop": its own reply window, never rate-limited by a STOP's)
  adds an "optout" block at scope "program" (counterpart
  "<account>/<program>"); a program start keyword lifts only that block (never a STOP's, a
  carrier's or an operator's). The audit event carries the program in its account column
  ("acme/marketing", as scope account carries the system_id) and its rule ("program:marketing:...").
- Revoke-all (47 CFR 64.1200(a)(10), optout.revoke_all, on from its effective date): a STOP-type
  keyword blocks the configured scope's key and, when the texted number has an owning account,
  the account's key too: every program and every number of the business.
- The one clarification (optout.revoke_all.clarify_reply set): the confirmation of a STOP that
  revoked the whole account (revoke-all in force, under scope number or account) offers the
  choice; the offer is durable (store table clarifications, written with the STOP's events), so
  a restarted gateway or another one on the same PostgreSQL honours it. A program opt-in
  keyword within clarify_window (at most 5 minutes) of that STOP, while its account block still
  stands, lifts the account's block (and the texted number's own block when that number is in a
  program) and opts out of every other program of the account instead (op "clarify", which
  consumes the offer); the account's numbers outside every program (when it has no default
  program) get number-scope opt-outs, so they stay revoked. It never lifts a block of another
  account or a global one. Until the mobile answers, everything stays revoked; a later answer is
  an ordinary program keyword.
- Under optout.scope "global" no choice is offered (the ordinary STOP reply; a later program
  keyword is an ordinary one): the STOP's one global block stops every sender of every account
  and numbers no account owns, and a block has no exceptions. Keeping one program of one business
  would mean replacing it with a block per other account and per unowned number, and senders
  added later would not be covered: the operator chose that a STOP stops everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.policy.decide import LIFT_KEYWORD, MoContext, MoDecision
from gateway.store.base import Block, BlockChange, BlockKey, Clarification

if TYPE_CHECKING:
    from gateway.optout_mo import MoInput


def clarify_open(offered_at: float, now: float, window: float) -> bool:
    """A pending clarification (PairState.clarify_at, 0.0 none) still open at now."""
    return offered_at > 0 and now - offered_at <= window


def clarification_write(decision: MoDecision, keys: dict[str, BlockKey], now: float) -> Clarification | None:
    """What record_mo writes with the decision: the offer of a STOP's confirmation, the consumption
    of a clarification; None for anything else."""
    account = keys.get("account")
    if account is None:
        return None
    if decision.op == "clarify":
        return account.number, account.counterpart, 0.0
    if decision.offers_clarification:
        return account.number, account.counterpart, now
    return None


def clarify_decision(mo: MoInput, programs: frozenset[str], unassigned: frozenset[str],
                     kind_of: Callable[[BlockKey], str | None]) -> tuple[MoDecision, MoContext, list[BlockKey]] | None:
    """The answer to a revoke-all STOP's confirmation: keep the chosen program, stop the others.
    unassigned: the account's numbers outside every program (none when it has a default program)."""
    match, account = mo.program, mo.keys.get("account")
    if match is None or match.op != "start" or account is None or kind_of(account) not in LIFT_KEYWORD:
        return None
    number = mo.keys.get("number")
    lift = [account] + ([number] if number is not None and mo.business not in unassigned
                        and kind_of(number) in LIFT_KEYWORD else [])
    others = [BlockKey(mo.mobile, f"{account.counterpart}/{name}", "program")
              for name in sorted(programs - {match.program})]
    # the texted number outside every program keeps its own block (scope number), else gets one
    kept = {mo.business} if number is not None and kind_of(number) is not None else set()
    outside = [BlockKey(mo.mobile, n, "number") for n in sorted(unassigned - kept)]
    ctx = MoContext(mo.mobile, mo.business, toll_free=mo.toll_free, block="optout", can_reply=mo.can_reply)
    rule = f"clarify:{match.program}:{match.keyword}"
    return MoDecision("clarify", rule, "keyword", "remove", lift_kinds=LIFT_KEYWORD, reply=match.reply), ctx, [
        *lift, *others, *outside]


def clarify_changes(targets: list[BlockKey], source: str, now: float, business: str,
                    unassigned: frozenset[str]) -> list[BlockChange | None]:
    """A clarification's changes: lift the account's key (and the texted number's own when it is in
    a program), add the other programs' opt-outs and the account's numbers outside every program."""
    return [BlockChange("remove", Block(k, "optout", source, now), LIFT_KEYWORD)
            if k.scope == "account" or (k.scope == "number" and k.counterpart == business
                                        and business not in unassigned)
            else BlockChange("add", Block(k, "optout", source, now)) for k in targets]


def program_decision(mo: MoInput, kind_of: Callable[[BlockKey], str | None]) -> tuple[
        MoDecision, MoContext, list[BlockKey]]:
    match = mo.program
    key = mo.keys["program"]
    kind = kind_of(key)
    ctx = MoContext(mo.mobile, mo.business, toll_free=mo.toll_free, block=kind, can_reply=mo.can_reply)
    assert match is not None
    rule = f"program:{match.program}:{match.keyword}"
    if match.op == "stop":
        return MoDecision("program_stop", rule, "keyword", "add", "optout", reply=match.reply), ctx, [key]
    if kind in LIFT_KEYWORD:
        return MoDecision("program_start", rule, "keyword", "remove", lift_kinds=LIFT_KEYWORD,
                          reply=match.reply), ctx, [key]
    return MoDecision("program_start", rule, "keyword", reason="no_block"), ctx, []


def revoke_all_targets(key: BlockKey, keys: dict[str, BlockKey], decision: MoDecision, on: bool) -> list[BlockKey]:
    """Where a keyword opt-out writes: key, and under revoke-all the account's key besides."""
    account = keys.get("account")
    if not on or decision.op not in ("stop", "possible_optout") or account is None or account == key:
        return [key]
    return [key, account]
