"""The operator operations, each written once: the CLI (commands.py) and the HTTP API (api.py)
call these with plain values. They validate (numbers, keys, kinds: InputError), write through
the store with one audit event that names the operator and the reason, and return values;
they never print. Running gateways pick the changes up from the event log (gateway/sync.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.admin_rows import InputError, NumberCheck, RowError, block_key
from gateway.store.base import (
    ALL_KINDS,
    SCOPES,
    AuditEvent,
    Block,
    BlockChange,
    BlockFilter,
    BlockKey,
    Store,
)

MAX_PAGE = 1000
# sources the gateway writes itself: an opt-out from another channel never passes for one of them
RESERVED_CHANNELS = frozenset({"keyword", "carrier", "operator", "import", "deactivation"})
FUTURE_SKEW = 300.0  # an opt-out's time may be this far ahead of our clock (the other system's clock)


@dataclass(frozen=True, slots=True)
class Site:
    """What the operations need from the configuration."""

    region: str = "US"  # numbers without a country code
    scope: str = "number"  # optout.scope: the scope of a key given without one
    # system_id -> every counterpart its blocks are kept under (itself, its numbers, its programs)
    accounts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Any) -> Site:
        accounts = {
            a.system_id: (a.system_id, *a.numbers, *(f"{a.system_id}/{p.name}" for p in a.programs))
            for a in settings.accounts
        }
        return cls(settings.optout.default_region, settings.optout.scope, accounts)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks and why: both go into the audit event."""

    operator: str = ""
    reason: str = ""


NOBODY = Actor()

@dataclass(frozen=True, slots=True)
class BlockQuery:
    number: str | None = None
    scope: str | None = None
    kind: str | None = None
    counterpart: str | None = None
    account: str | None = None  # its own key, its numbers' and its programs'
    limit: int = 100
    offset: int = 0
    after: BlockKey | None = None  # the last key of the previous page (cursor paging)


@dataclass(frozen=True, slots=True)
class BlockPage:
    blocks: list[Block]
    last: BlockKey | None  # the key to continue after; None: this was the last page


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an add, a remove or an opt-out did to one key."""

    key: BlockKey
    changed: bool
    event_id: int
    block: Block | None  # the key's block after it (None: not blocked)


def number(raw: str, site: Site) -> str:
    """The mobile in E.164, or InputError naming the value."""
    try:
        return NumberCheck(site.region)(raw.strip(), "number")
    except RowError as exc:
        raise InputError(str(exc)) from None


def key(raw_number: str, counterpart: str, scope: str | None, site: Site) -> BlockKey:
    """A validated key; scope None: optout.scope from the configuration."""
    try:
        return block_key(NumberCheck(site.region), raw_number.strip(), counterpart.strip(),
                         scope or site.scope)
    except RowError as exc:
        raise InputError(str(exc)) from None


def _kind(kind: str) -> str:
    if kind not in ALL_KINDS:
        raise InputError(f"kind {kind!r}: expected one of {', '.join(ALL_KINDS)}")
    return kind


async def list_blocks(store: Store, site: Site, query: BlockQuery) -> BlockPage:
    if query.limit < 1:
        raise InputError(f"limit {query.limit}: must be at least 1")
    if query.offset < 0:
        raise InputError(f"offset {query.offset}: must not be negative")
    if query.scope is not None and query.scope not in SCOPES:
        raise InputError(f"scope {query.scope!r}: expected one of {', '.join(SCOPES)}")
    counterparts: tuple[str, ...] | None = None
    if query.account is not None:
        counterparts = site.accounts.get(query.account, (query.account,))
    if query.counterpart is not None:
        cp = query.counterpart
        counterparts = (cp,) if counterparts is None or cp in counterparts else ()
    where = BlockFilter(query.scope, _kind(query.kind) if query.kind else None, counterparts, query.after)
    mobile = number(query.number, site) if query.number is not None else None
    blocks = await store.list_blocks(limit=query.limit, offset=query.offset, number=mobile, where=where)
    return BlockPage(blocks, blocks[-1].key if len(blocks) == query.limit else None)


async def blocks_of(store: Store, site: Site, raw_number: str) -> tuple[str, list[Block]]:
    """Every block of one mobile (all scopes and counterparts)."""
    mobile = number(raw_number, site)
    return mobile, await store.list_blocks(limit=MAX_PAGE * 10, number=mobile)


async def add_block(store: Store, site: Site, block_key: BlockKey, kind: str, actor: Actor,
                    now: float | None = None) -> Outcome:
    """Block one key (kind admin: never lifted by START); an existing lower kind is raised."""
    at = time.time() if now is None else now
    event = AuditEvent(at=at, op="admin_add", source="operator", operator=actor.operator, reason=actor.reason)
    event_id, changed = await store.record(event, BlockChange("add", Block(block_key, _kind(kind), "operator", at)))
    return Outcome(block_key, changed, event_id, await store.get_block(block_key))


async def remove_block(store: Store, site: Site, block_key: BlockKey, kind: str | None, actor: Actor,
                       now: float | None = None) -> Outcome:
    """Lift one key's block (only of that kind when one is given)."""
    at = time.time() if now is None else now
    lift = (_kind(kind),) if kind else ALL_KINDS
    event = AuditEvent(at=at, op="admin_remove", source="operator", operator=actor.operator,
                       reason=actor.reason)
    change = BlockChange("remove", Block(block_key, kind or "admin", "operator", at), lift)
    event_id, changed = await store.record(event, change)
    return Outcome(block_key, changed, event_id, await store.get_block(block_key))


async def record_optout(store: Store, site: Site, raw_number: str, channel: str, at: float | None,
                        actor: Actor, counterpart: str = "", scope: str | None = None,
                        now: float | None = None) -> Outcome:
    """A revocation of consent taken on another channel (voice, email, web...): an optout block,
    lifted only by the mobile's own opt-in. Without a counterpart it is global (every sender).
    The event's time is when the consumer revoked; op optout, source the channel."""
    if channel in RESERVED_CHANNELS:
        raise InputError(f"channel {channel!r}: the gateway's own source; name the channel it came from")
    clock = time.time() if now is None else now
    when = clock if at is None else at
    if when > clock + FUTURE_SKEW:
        raise InputError(f"at {when}: in the future")
    block_key = key(raw_number, counterpart, scope or ("global" if not counterpart.strip() else None), site)
    event = AuditEvent(at=when, op="optout", source=channel, operator=actor.operator, reason=actor.reason)
    event_id, changed = await store.record(event, BlockChange("add", Block(block_key, "optout", channel, when)))
    return Outcome(block_key, changed, event_id, await store.get_block(block_key))


async def number_events(store: Store, site: Site, raw_number: str, since: float = 0.0,
                        until: float = float("inf"), limit: int = 100_000) -> tuple[str, list[AuditEvent]]:
    """One mobile's events with since <= at < until, in id order (evidence for that number)."""
    mobile = number(raw_number, site)
    if until <= since:
        raise InputError(f"until {until} is not after since {since}")
    return mobile, [e for e in await store.events_of(mobile) if since <= e.at < until][:limit]


def describe(k: BlockKey) -> str:
    where = f" for {k.counterpart}" if k.counterpart else ""
    return f"{k.number} (scope {k.scope}{where})"
