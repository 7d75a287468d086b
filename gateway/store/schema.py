"""Schema migrations for both SQL backends, and row <-> value helpers they share.

Each backend applies its list in order and records the version reached in
``schema_version``; a database already at a version above the list's length
was written by a newer gateway and is refused (see ``check_version``).
Events are append-only: an update trigger refuses changes, only the retention
purge deletes them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.errors import StoreError
from gateway.store.base import KIND_RANK, AuditEvent, Block, BlockChange, BlockKey, OutboxItem

EVENT_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(AuditEvent) if f.name != "id"
)
_LATER_EVENT_COLUMNS = ("mo_fingerprint", "alphabet", "operator", "reason")  # migrations 3, 5, 6
BLOCK_COLUMNS: tuple[str, ...] = ("number", "counterpart", "scope", "kind", "source", "created_at")
PAGE_SIZE = 20_000
MAX_DIGITS = 18  # a mobile as an unsigned 64-bit integer, with room to spare

_EVENT_TEXT_COLUMNS = ",\n    ".join(
    f"{c} TEXT NOT NULL DEFAULT ''" for c in EVENT_COLUMNS
    if c not in ("at", "data_coding", *_LATER_EVENT_COLUMNS)
)
_MIGRATION_3 = (  # redelivery check and pair versions: the latest events of one mobile
    "ALTER TABLE events ADD COLUMN mo_fingerprint TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX events_number ON events (number, id)",
)
_MIGRATION_4 = (  # cluster heartbeats: one row per running gateway (times on the store's clock)
    """CREATE TABLE instances (
    id TEXT PRIMARY KEY, started_at REAL NOT NULL, last_seen REAL NOT NULL)""",
)
_MIGRATION_5 = (  # which reading of data_coding 0 a keyword matched under (optout.smsc_default_alphabets)
    "ALTER TABLE events ADD COLUMN alphabet TEXT NOT NULL DEFAULT ''",
)
_MIGRATION_6 = (  # who made an operator change and why (CLI --operator/--reason, the admin API)
    "ALTER TABLE events ADD COLUMN operator TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
)
_MIGRATION_7 = (  # revoke-all's pending clarifications: (mobile, account) -> when its STOP offered one
    """CREATE TABLE clarifications (
    number TEXT NOT NULL, account TEXT NOT NULL, offered_at REAL NOT NULL,
    PRIMARY KEY (number, account))""",
    "CREATE INDEX clarifications_offered ON clarifications (offered_at)",
)


def clarify_sql(mark: Callable[[int], str]) -> tuple[str, str, str, str]:
    """(read, offer, consume, purge) statements of the clarifications table."""
    return (
        f"SELECT offered_at FROM clarifications WHERE number = {mark(1)} AND account = {mark(2)}",
        (f"INSERT INTO clarifications (number, account, offered_at) VALUES ({mark(1)}, {mark(2)}, {mark(3)}) "
         "ON CONFLICT (number, account) DO UPDATE SET offered_at = excluded.offered_at"),
        f"DELETE FROM clarifications WHERE number = {mark(1)} AND account = {mark(2)}",
        f"DELETE FROM clarifications WHERE offered_at < {mark(1)}",
    )


def account_of(keys: Sequence[BlockKey]) -> str | None:
    """The account of the asked account-scope key (whose clarification pair_state reads)."""
    return next((k.counterpart for k in keys if k.scope == "account"), None)
_MIGRATION_8 = (  # counterpart ids for the block index (issue 13): every gateway loads the same ids
    """CREATE TABLE counterparts (
    id INTEGER PRIMARY KEY, scope TEXT NOT NULL, counterpart TEXT NOT NULL, UNIQUE (scope, counterpart))""",
    "INSERT INTO counterparts (scope, counterpart) SELECT DISTINCT scope, counterpart FROM blocks ORDER BY 1, 2",
)


# Migration 9: blocks.mobile, the block index's mobile integer, validated once when a row is written
# (the packed PostgreSQL load read 10M numbers through a regular expression every time). NULL when
# the number is not 1-18 ASCII digits after an optional '+' (such rows load through the fallback).
# PostgreSQL stores it (adding it rewrites the table once: the backfill); SQLite computes it on read.
_MOBILE_PG = "CASE WHEN number ~ '^\\+?[0-9]{1,18}$' THEN ltrim(number, '+')::bigint END"
_DIGITS_SQLITE = "ltrim(number, '+')"
_MOBILE_SQLITE = (f"CASE WHEN length({_DIGITS_SQLITE}) BETWEEN 1 AND {MAX_DIGITS} "
                  f"AND length(number) - length({_DIGITS_SQLITE}) <= 1 AND {_DIGITS_SQLITE} NOT GLOB '*[^0-9]*' "
                  f"THEN CAST({_DIGITS_SQLITE} AS INTEGER) END")


def counterpart_insert_sql(scope: str, counterpart: str) -> str:
    """Give (scope, counterpart) an id unless it has one: NOT EXISTS first, so PostgreSQL's identity
    is not consumed by every block added under a known counterpart."""
    return ("INSERT INTO counterparts (scope, counterpart) SELECT " + scope + ", " + counterpart
            + " WHERE NOT EXISTS (SELECT 1 FROM counterparts WHERE scope = " + scope
            + " AND counterpart = " + counterpart + ") ON CONFLICT DO NOTHING")


COUNTERPARTS_SELECT = "SELECT id, scope, counterpart FROM counterparts ORDER BY id"


def pair_last_sql(mark: Callable[[int], str]) -> str:
    """The pair's latest state event (see base.PairState); mark(i) is the i-th placeholder."""
    return (
        "SELECT id, mo_fingerprint, at, counterpart FROM events WHERE number = " + mark(1)
        + " AND (mo_fingerprint <> '' OR block_state <> '')"
        + " AND (counterpart = " + mark(2) + " OR scope IN ('account', 'global'))"
        + " ORDER BY id DESC LIMIT 1"
    )

SQLITE_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE blocks (
    number TEXT NOT NULL, counterpart TEXT NOT NULL, scope TEXT NOT NULL,
    kind TEXT NOT NULL, source TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (number, counterpart, scope)) WITHOUT ROWID""",
        f"""CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    data_coding INTEGER NOT NULL DEFAULT 0,
    {_EVENT_TEXT_COLUMNS})""",
        "CREATE INDEX events_at ON events (at)",
        """CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only'); END""",
        """CREATE TABLE receipt_routes (
    message_id TEXT PRIMARY KEY, account TEXT NOT NULL, expires_at REAL NOT NULL
) WITHOUT ROWID""",
        "CREATE INDEX receipt_routes_expires ON receipt_routes (expires_at)",
    ),
    (  # 2: durable outbox
        """CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL, raw BLOB NOT NULL,
    enqueued_at REAL NOT NULL, expires_at REAL NOT NULL, next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_by TEXT NOT NULL DEFAULT '', locked_until REAL NOT NULL DEFAULT 0)""",
        "CREATE INDEX outbox_account ON outbox (account, id)",
        "CREATE INDEX outbox_expires ON outbox (expires_at)",
    ),
    _MIGRATION_3,
    _MIGRATION_4,
    _MIGRATION_5,
    _MIGRATION_6,
    _MIGRATION_7,
    _MIGRATION_8,
    (f"ALTER TABLE blocks ADD COLUMN mobile INTEGER GENERATED ALWAYS AS ({_MOBILE_SQLITE}) VIRTUAL",),
)

POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE blocks (
    number text NOT NULL, counterpart text NOT NULL, scope text NOT NULL,
    kind text NOT NULL, source text NOT NULL, created_at double precision NOT NULL,
    PRIMARY KEY (number, counterpart, scope))""",
        f"""CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at double precision NOT NULL,
    data_coding integer NOT NULL DEFAULT 0,
    {_EVENT_TEXT_COLUMNS.replace("TEXT", "text")})""",
        "CREATE INDEX events_at ON events (at)",
        """CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'events are append-only'; END $$""",
        """CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only()""",
        """CREATE TABLE receipt_routes (
    message_id text PRIMARY KEY, account text NOT NULL,
    expires_at double precision NOT NULL)""",
        "CREATE INDEX receipt_routes_expires ON receipt_routes (expires_at)",
    ),
    (  # 2: durable outbox
        """CREATE TABLE outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account text NOT NULL, raw bytea NOT NULL,
    enqueued_at double precision NOT NULL, expires_at double precision NOT NULL,
    next_attempt_at double precision NOT NULL, attempts integer NOT NULL DEFAULT 0,
    locked_by text NOT NULL DEFAULT '', locked_until double precision NOT NULL DEFAULT 0)""",
        "CREATE INDEX outbox_account ON outbox (account, id)",
        "CREATE INDEX outbox_expires ON outbox (expires_at)",
    ),
    tuple(statement.replace("TEXT", "text") for statement in _MIGRATION_3),
    tuple(s.replace("TEXT", "text").replace("REAL", "double precision") for s in _MIGRATION_4),
    tuple(statement.replace("TEXT", "text") for statement in _MIGRATION_5),
    tuple(statement.replace("TEXT", "text") for statement in _MIGRATION_6),
    tuple(s.replace("TEXT", "text").replace("REAL", "double precision") for s in _MIGRATION_7),
    tuple(s.replace("TEXT", "text").replace("INTEGER PRIMARY KEY", "integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
          for s in _MIGRATION_8),
    (f"ALTER TABLE blocks ADD COLUMN mobile bigint GENERATED ALWAYS AS ({_MOBILE_PG}) STORED",),
)

OUTBOX_COLUMNS = "id, account, raw, enqueued_at, expires_at, attempts"


def kind_rank_sql(expr: str) -> str:
    """SQL for base.kind_rank(expr): admin 3 > carrier 2 > optout 1 > other 0."""
    whens = " ".join(f"WHEN '{kind}' THEN {rank}" for kind, rank in KIND_RANK.items())
    return f"(CASE {expr} {whens} ELSE 0 END)"


# An add over an existing key raises its kind (and source) when the new kind ranks
# higher; created_at is kept. Same text on SQLite and PostgreSQL.
BLOCK_UPSERT = (
    "ON CONFLICT (number, counterpart, scope) DO UPDATE SET kind = excluded.kind, "
    f"source = excluded.source WHERE {kind_rank_sql('excluded.kind')} > {kind_rank_sql('blocks.kind')}"
)


def check_version(found: int, known: int) -> None:
    """Refuse a schema written by a newer gateway."""
    if found > known:
        raise StoreError(
            f"database schema version {found} is newer than this gateway knows ({known}); "
            "upgrade the gateway or point it at another database"
        )


def outbox_item(row: Sequence[Any]) -> OutboxItem:
    """row = OUTBOX_COLUMNS"""
    item_id, account, raw, enqueued_at, expires_at, attempts = row
    return OutboxItem(
        int(item_id), str(account), bytes(raw), float(enqueued_at), float(expires_at), int(attempts)
    )


_TOO_LONG = re.compile(r"\d{19}")


def mobile_array(joined: str) -> npt.NDArray[np.int64]:
    """parse_mobiles as a numpy array, parsed in C when every number is valid (the common case):
    no Python object per number, so a page of millions stays a few bytes a block."""
    s = joined.replace(",+", ",").removeprefix("+")
    if (s and s.isascii() and s.replace(",", "").isdigit() and ",," not in s and s[0] != "," and s[-1] != ","
            and _TOO_LONG.search(s) is None):
        return np.fromstring(s, dtype=np.int64, sep=",")
    return np.array(parse_mobiles(joined), dtype=np.int64)


def parse_mobiles(joined: str) -> list[int]:
    """'+14155550100,+14155550101' -> their digits as ints (the index's mobile
    integers); numbers that are not 1-18 digits after an optional '+' are left out.

    The server joins, Python splits: C-speed for the all-valid common case.
    """
    parts = joined.replace(",+", ",").removeprefix("+").split(",")
    joined_digits = "".join(parts)
    if (
        joined_digits.isascii() and joined_digits.isdigit()
        and min(map(len, parts)) >= 1 and max(map(len, parts)) <= MAX_DIGITS
    ):
        return list(map(int, parts))
    mobiles = []
    for number in joined.split(","):
        digits = number.removeprefix("+")
        if 0 < len(digits) <= MAX_DIGITS and digits.isascii() and digits.isdigit():
            mobiles.append(int(digits))
    return mobiles


def storable(value: Any) -> Any:
    """A value as every backend can keep it: NUL (refused by PostgreSQL text) as the six
    characters \\u0000. Event text is evidence, so nothing else is touched."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\\u0000")
    return value


def event_row(event: AuditEvent) -> tuple[Any, ...]:
    return tuple(storable(getattr(event, c)) for c in EVENT_COLUMNS)


def event_from_row(row: Sequence[Any]) -> AuditEvent:
    """row = (id, *EVENT_COLUMNS)"""
    return AuditEvent(id=int(row[0]), **dict(zip(EVENT_COLUMNS, row[1:], strict=True)))


def block_row(block: Block) -> tuple[str, str, str, str, str, float]:
    key = block.key
    return (key.number, key.counterpart, key.scope, block.kind, block.source, block.created_at)


def block_from_row(row: Sequence[Any]) -> Block:
    """row = BLOCK_COLUMNS"""
    number, counterpart, scope, kind, source, created_at = row
    return Block(BlockKey(number, counterpart, scope), kind, source, float(created_at))


def key_row(key: BlockKey) -> tuple[str, str, str]:
    return (key.number, key.counterpart, key.scope)


def complete_event(
    event: AuditEvent, change: BlockChange | None, blocked_after: bool, kind: str
) -> AuditEvent:
    """Fill what the change implies and the caller left empty.

    block_state becomes the resulting state ("blocked" / "unblocked"), so a
    reader tailing the log can replay it onto its index: blocked -> add,
    unblocked -> remove (see BlockIndex.apply_event). number, scope, kind and
    the counterpart (or account, for scope "account") come from the block.
    """
    if change is None:
        return event
    key = change.block.key
    return dataclasses.replace(
        event,
        number=event.number or key.number,
        counterpart=event.counterpart or (key.counterpart if key.scope == "number" else ""),
        account=event.account or (key.counterpart if key.scope in ("account", "program") else ""),
        scope=event.scope or key.scope,
        kind=event.kind or kind,
        block_state=event.block_state or ("blocked" if blocked_after else "unblocked"),
    )


def operator_event(op: str, at: float, key: BlockKey | None = None, text: str = "") -> AuditEvent:
    """The audit event of an operator action done through a store convenience method."""
    if key is None:
        return AuditEvent(at=at, op=op, source="operator", text=text)
    counterpart = key.counterpart if key.scope == "number" else ""
    account = key.counterpart if key.scope in ("account", "program") else ""
    return AuditEvent(
        at=at, op=op, number=key.number, counterpart=counterpart, account=account,
        source="operator", scope=key.scope, text=text,
    )


def lift_tuple(kinds: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(kinds))
