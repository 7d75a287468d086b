"""PostgreSQL: the block index's fastest load (issue 13). The server packs every block into the
index's 64-bit entry itself and streams them as binary COPY (14 bytes a row), which numpy reads
without a Python object per block. The mobile integer is blocks.mobile (migration 9: checked once
when the row was written, NULL for a number that is not 1-18 digits), so no row's text is parsed
here. The few rows that do not pack (a bad or too long number, a counterpart id too large or
missing from the id table, an odd kind) follow as ordinary rows. The id table, the count, the
entries and the odd rows are read in one repeatable-read snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.store import schema
from gateway.store.base import PackedSink
from gateway.store.postgres_pool import PgConnection

_ROW = np.dtype([("fields", ">i2"), ("length", ">i4"), ("value", ">i8")])  # one bigint column
_HEADER = b"PGCOPY\n\xff\r\n\x00"
_TRAILER = b"\xff\xff"


def _entry_sql(shift: int, cp_max: int, mobile_max: int, codes: dict[str, int]) -> tuple[str, str]:
    """(the packed entry expression, the condition a row must meet to pack)."""
    kinds = " ".join(f"WHEN '{kind}' THEN {code}" for kind, code in codes.items())
    mobile = "b.mobile"  # validated when the row was written (migration 9); NULL: the fallback
    scopes = "(b.scope IN ('number', 'account', 'program') OR (b.scope = 'global' AND b.counterpart = ''))"
    packs = (f"(c.id BETWEEN 1 AND {cp_max} AND {scopes} AND {mobile} <= {mobile_max} "
             f"AND b.kind IN ({', '.join(map(repr, codes))}))")
    return f"((c.id::bigint << {shift}) | {mobile}) << 2 | (CASE b.kind {kinds} END)", packs


class _CopyRows:
    """Binary COPY bytes in, int64 arrays out (to sink.entries), whole rows at a time."""

    def __init__(self, emit: Callable[[np.ndarray], None]) -> None:
        self.emit = emit
        self.buf = bytearray()
        self.header = False

    async def feed(self, data: bytes) -> None:
        self.buf += data
        if not self.header:
            if len(self.buf) < 19:
                return
            if not self.buf.startswith(_HEADER):
                raise ValueError("not a binary COPY stream")
            skip = 19 + int.from_bytes(self.buf[15:19], "big")
            if len(self.buf) < skip:
                return
            del self.buf[:skip]
            self.header = True
        rows = len(self.buf) // _ROW.itemsize  # the 2-byte trailer stays behind as a remainder
        if rows:
            table = np.frombuffer(self.buf, dtype=_ROW, count=rows)
            if not (np.all(table["fields"] == 1) and np.all(table["length"] == 8)):
                raise ValueError("unexpected row in the packed COPY stream")
            self.emit(table["value"].astype(np.int64))
            del table
            del self.buf[:rows * _ROW.itemsize]

    def close(self) -> None:
        if bytes(self.buf) not in (b"", _TRAILER):
            raise ValueError(f"binary COPY stream ended with {len(self.buf)} stray bytes")


class PgPackedLoad(PgConnection):
    """load_packed of PostgresStore."""

    async def load_packed(self, sink: PackedSink) -> None:
        async with (
            self._guard(), self._require_pool().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # a hash join over the small id table: stale statistics must never pick a nested loop
            await conn.execute("SET LOCAL enable_nestloop = off")
            ids = await conn.fetch(schema.COUNTERPARTS_SELECT)
            sink.adopt_ids((int(r[0]), str(r[1]), str(r[2])) for r in ids)
            sink.reserve(int(await conn.fetchval("SELECT count(*) FROM blocks")))
            shift, cp_max, mobile_max = sink.layout()
            entry, packs = _entry_sql(shift, cp_max, mobile_max, sink.codes())
            joined = "FROM blocks b JOIN counterparts c USING (scope, counterpart)"
            rows = _CopyRows(sink.entries)
            await conn.copy_from_query(f"SELECT {entry} {joined} WHERE {packs}", output=rows.feed, format="binary")
            rows.close()
            cursor: Any = conn.cursor(
                "SELECT b.scope, b.counterpart, b.kind, b.number FROM blocks b "
                f"LEFT JOIN counterparts c USING (scope, counterpart) WHERE NOT coalesce({packs}, false)")
            async for scope, counterpart, kind, number in cursor:
                sink.groups([(scope, counterpart, kind, schema.mobile_array(number))])
