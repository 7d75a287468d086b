"""admin_deactivations.end_epoch on both backends: retire old opt-outs, record the epoch, once."""

from __future__ import annotations

from gateway.admin_deactivations import end_epoch
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey, Store

MOBILE = "+14155550123"


async def _block(store: Store, key: BlockKey, kind: str, at: float) -> None:
    await store.record(AuditEvent(at=at, op="stop"), BlockChange("add", Block(key, kind, "keyword", at)))


async def test_end_epoch_retires_only_older_opt_outs(store: Store) -> None:
    old = BlockKey(MOBILE, "+14155550100", "number")
    account = BlockKey(MOBILE, "acme", "account")
    admin = BlockKey(MOBILE, "", "global")
    newer = BlockKey(MOBILE, "+14155550101", "number")
    await _block(store, old, "optout", 100.0)
    await _block(store, account, "carrier", 150.0)
    await _block(store, newer, "optout", 300.0)  # the new subscriber's own STOP, after the date
    assert await end_epoch(store, MOBILE, 200.0, 400.0) == (True, 2)
    assert await store.get_block(old) is None and await store.get_block(account) is None
    assert (await store.get_block(newer)) is not None
    epoch = await store.get_block(admin)
    assert epoch is not None and (epoch.kind, epoch.created_at) == ("deactivated", 200.0)
    retired = [e for e in await store.events_of(MOBILE) if e.op == "deactivation_retired"]
    assert sorted((e.scope, e.kind, e.block_state) for e in retired) == [
        ("account", "carrier", "unblocked"), ("number", "optout", "unblocked")]
    assert await end_epoch(store, MOBILE, 200.0, 500.0) == (False, 0)  # the same file again


async def test_end_epoch_keeps_admin_blocks(store: Store) -> None:
    admin = BlockKey(MOBILE, "", "global")
    await _block(store, admin, "admin", 100.0)
    assert await end_epoch(store, MOBILE, 200.0, 400.0) == (True, 0)
    block = await store.get_block(admin)
    assert block is not None and block.kind == "admin"  # deactivated ranks lowest: unchanged
