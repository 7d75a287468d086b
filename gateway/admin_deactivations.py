"""`gateway deactivations import FILE`: a carrier's deactivated (and reassigned) numbers end their consent epoch.

The file is CSV, one number per row: `number,deactivated_at` (a header row naming them is
optional; ISO 8601 date or time, or unix seconds). Every row is validated first; errors name
their line, and with any invalid row nothing is applied unless --partial (then the failed rows
change nothing). For each number, in one transaction (Store.record_mo against the number's
version, so a racing MO makes it read again):

- its opt-out blocks created before the deactivation (kinds optout and carrier) are retired with
  an audit event each (op deactivation_retired): the new subscriber is another person; an
  operator's admin block stays;
- a "deactivated" block (global scope) and an op deactivation event record the epoch. MT to the
  number is refused (reason deactivated, optout.deactivated_action) until an opt-in keyword
  (START, YES...) lifts it; an implicit re-opt-in never does.

A number whose epoch for that date is already recorded is skipped (imports are repeatable);
one that sent an opt-in keyword after the date gets its retirements but no new block.
Running gateways pick the changes up from the event log like any block change.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass, field
from typing import IO, TextIO

from gateway.admin_rows import InputError, NumberCheck, RowError, iso, parse_time
from gateway.store.base import EPOCH_KIND, AuditEvent, Block, BlockChange, BlockKey, MoItem, Store

RETIRED_KINDS = ("optout", "carrier")
OPT_IN_SOURCES = frozenset({"keyword", "carrier"})
MAX_LISTED = 50
MAX_ATTEMPTS = 5
SOURCE = "deactivation"


@dataclass
class DeactivationReport:
    read: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)
    epochs: int = 0
    retired: int = 0
    skipped: int = 0

    def summary(self) -> str:
        return (f"rows read {self.read:,}, invalid {self.invalid:,}, epochs ended {self.epochs:,}, "
                f"opt-outs retired {self.retired:,}, already imported {self.skipped:,}")


def parse_file(source: IO[str], region: str, now: float) -> tuple[dict[str, float], DeactivationReport]:
    """number -> deactivation time (the latest of its rows), and the report with line-numbered errors."""
    report = DeactivationReport()
    check = NumberCheck(region)
    found: dict[str, float] = {}
    reader = csv.reader(source)
    try:
        for row in reader:
            if not row or (reader.line_num == 1 and row[0].strip().lower() in ("number", "phone", "msisdn")):
                continue
            report.read += 1
            try:
                number, at = _row(row, check, now)
            except RowError as exc:
                report.invalid += 1
                if len(report.errors) < MAX_LISTED:
                    report.errors.append(f"line {reader.line_num}: {exc}")
                continue
            found[number] = max(at, found.get(number, at))
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: {exc}") from None
    return found, report


def _row(row: list[str], check: NumberCheck, now: float) -> tuple[str, float]:
    if len(row) != 2:
        raise RowError(f"expected 2 fields (number, deactivation date), got {len(row)}")
    number = check(row[0].strip())
    if not row[1].strip():
        raise RowError("deactivation date is empty")
    at = parse_time(row[1], "deactivation date")
    if at > now:
        raise RowError(f"deactivation date {iso(at)} is in the future")
    return number, at


async def end_epoch(store: Store, number: str, at: float, now: float) -> tuple[bool, int]:
    """(epoch recorded, opt-outs retired) for one number, all or nothing."""
    key = BlockKey(number, "", "global")
    for _ in range(MAX_ATTEMPTS):
        state = await store.pair_state(number, "", [key])
        events = await store.events_of(number)
        stamp = f"deactivated_at={iso(at)}"
        if any(e.op == SOURCE and e.text == stamp for e in events):
            return False, 0
        opted_in = any(e.op == "start" and e.source in OPT_IN_SOURCES and e.at > at for e in events)
        blocks = [b for b in await store.list_blocks(limit=10_000, number=number)
                  if b.kind in RETIRED_KINDS and b.created_at < at]
        items: list[MoItem] = [_retire(b, stamp, now) for b in blocks]
        epoch = AuditEvent(at=now, op=SOURCE, number=number, source=SOURCE, text=stamp, rule=iso(at),
                           scope="global", kind=EPOCH_KIND)
        change = None if opted_in else BlockChange("add", Block(key, EPOCH_KIND, SOURCE, at))
        items.append((epoch, change))
        if await store.record_mo(items, state) is not None:
            return True, len(blocks)
    raise InputError(f"{number}: its blocks kept changing during the import; run it again")


def _retire(block: Block, stamp: str, now: float) -> MoItem:
    key = block.key
    counterpart = key.counterpart if key.scope == "number" else ""
    account = key.counterpart if key.scope == "account" else ""
    event = AuditEvent(at=now, op="deactivation_retired", number=key.number, counterpart=counterpart,
                       account=account, source=SOURCE, text=stamp, scope=key.scope, kind=block.kind)
    return event, BlockChange("remove", Block(key, block.kind, SOURCE, now), (block.kind,))


async def import_deactivations(store: Store, source: IO[str], region: str, *, partial: bool = False,
                               dry_run: bool = False, err: TextIO = sys.stderr) -> tuple[int, DeactivationReport]:
    """Validate every row, then end each valid number's epoch; exit code 2 when rows were invalid
    and nothing was applied."""
    now = time.time()
    numbers, report = parse_file(source, region, now)
    for line in report.errors:
        print(line, file=err)
    if report.invalid > len(report.errors):
        print(f"... and {report.invalid - len(report.errors):,} more invalid rows", file=err)
    if report.invalid and not partial:
        print(report.summary(), file=err)
        print(f"{report.invalid:,} invalid rows: nothing applied (--partial applies the valid rows)", file=err)
        return 2, report
    if dry_run:
        print(report.summary(), file=err)
        print("dry run: nothing applied", file=err)
        return 0, report
    for number, at in sorted(numbers.items()):
        recorded, retired = await end_epoch(store, number, at, now)
        report.epochs += recorded
        report.skipped += not recorded
        report.retired += retired
    print(report.summary(), file=err)
    return 0, report
