"""Scope "program": the block index keys it apart from number/account/global; events replay onto it."""

from __future__ import annotations

from gateway.store.base import AuditEvent, BlockKey, event_key
from gateway.store.index import BlockIndex
from gateway.store.schema import operator_event

KEY = BlockKey("+14155550123", "acme/promo", "program")


def test_program_block_is_only_that_program() -> None:
    index = BlockIndex()
    assert not index.has_programs
    assert index.add(KEY)
    assert index.program_blocked(14155550123, "acme/promo")
    assert not index.program_blocked(14155550123, "acme/alerts")
    assert not index.is_blocked(14155550123, "+14155550100", "acme")  # no number/account/global block
    assert index.kind_of(KEY) == "optout" and len(index) == 1
    assert index.remove(KEY, ["optout"])
    assert not index.program_blocked(14155550123, "acme/promo")


def test_program_event_replays() -> None:
    event = AuditEvent(at=1.0, op="stop", number=KEY.number, counterpart="+14155550100", account="acme/promo",
                       scope="program", block_state="blocked")
    assert event_key(event) == KEY
    index = BlockIndex()
    assert index.apply_event(event)
    assert index.program_blocked(14155550123, "acme/promo")
    assert event_key(operator_event("admin_add", 1.0, KEY)) == KEY


def test_program_groups_load() -> None:
    index = BlockIndex()
    assert index.load_rows([(KEY.number, KEY.counterpart, "program", "admin")]) == 1
    assert index.kind_of(KEY) == "admin"
