"""`gateway blocks import`: validate every CSV row, then load in batches, with progress.

Two passes over the file (stdin is spooled to a temporary file first): the first only
validates, so a file with bad rows loads nothing unless --partial; the second builds the
blocks again and hands them to store.import_blocks in batches of BATCH_ROWS (one
transaction and one "admin_import" event each, which makes running gateways reload).
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

from gateway.admin_rows import InputError, NumberCheck, RowDefaults, RowError, RowReader
from gateway.store.base import Block, Store

BATCH_ROWS = 200_000
PROGRESS_EVERY = 100_000
MAX_LISTED = 50


@dataclass
class ImportReport:
    read: int = 0
    valid: int = 0
    invalid: int = 0
    inserted: int = 0
    loaded: bool = False
    errors: list[str] = field(default_factory=list)
    slow_checks: int = 0
    validate_seconds: float = 0.0
    load_seconds: float = 0.0

    def summary(self) -> str:
        present = self.valid - self.inserted if self.loaded else 0
        return (
            f"rows read {self.read:,}, valid {self.valid:,}, invalid {self.invalid:,}, "
            f"inserted {self.inserted:,}, already present {present:,}, "
            f"{self.validate_seconds + self.load_seconds:.1f} s"
        )


class Progress:
    """'\\r'-updated line on a TTY, a plain line every PROGRESS_EVERY rows otherwise."""

    def __init__(self, err: TextIO, phase: str) -> None:
        self.err = err
        self.phase = phase
        self.tty = err.isatty()
        self.start = time.perf_counter()
        self.shown = False

    def update(self, rows: int) -> None:
        rate = rows / max(time.perf_counter() - self.start, 1e-9)
        line = f"{self.phase}: {rows:,} rows ({rate:,.0f}/s)"
        self.err.write(f"\r{line:<60}" if self.tty else f"{line}\n")
        self.err.flush()
        self.shown = True

    def done(self) -> None:
        if self.tty and self.shown:
            self.err.write("\n")


def _rows(source: IO[str]) -> tuple[list[str], Any]:
    reader = csv.reader(source)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("import: the file is empty (expected a header row)") from None
    except csv.Error as exc:
        raise InputError(f"line 1: {exc}") from None
    return header, reader


def validate(source: IO[str], defaults: RowDefaults, check: NumberCheck, err: TextIO) -> ImportReport:
    """First pass: count and collect errors; builds nothing it keeps."""
    report = ImportReport()
    started = time.perf_counter()
    header, reader = _rows(source)
    parse = RowReader(header, defaults, check).block
    progress = Progress(err, "validating")
    try:
        for row in reader:
            if not row:
                continue
            report.read += 1
            if not report.read % PROGRESS_EVERY:
                progress.update(report.read)
            try:
                parse(row)
            except RowError as exc:
                report.invalid += 1
                if len(report.errors) < MAX_LISTED:
                    report.errors.append(f"line {reader.line_num}: {exc}")
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: {exc}") from None
    progress.done()
    report.valid = report.read - report.invalid
    report.slow_checks = check.slow
    report.validate_seconds = time.perf_counter() - started
    return report


def _batches(source: IO[str], defaults: RowDefaults, check: NumberCheck) -> Iterator[list[Block]]:
    header, reader = _rows(source)
    parse = RowReader(header, defaults, check).block
    batch: list[Block] = []
    for row in reader:
        if not row:
            continue
        try:
            batch.append(parse(row))
        except RowError:
            continue
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


async def load(store: Store, source: IO[str], defaults: RowDefaults, check: NumberCheck,
               report: ImportReport, err: TextIO) -> None:
    """Second pass: the valid rows into the store, batch by batch."""
    started = time.perf_counter()
    progress = Progress(err, "loading")
    done = 0
    report.loaded = True
    for batch in _batches(source, defaults, check):
        batch.sort(key=_key_order)  # B-tree locality: inserts in key order are much cheaper
        report.inserted += await store.import_blocks(batch)
        done += len(batch)
        if done >= PROGRESS_EVERY:
            progress.update(done)
    progress.done()
    report.load_seconds = time.perf_counter() - started


def _key_order(block: Block) -> tuple[str, str, str]:
    key = block.key
    return (key.number, key.counterpart, key.scope)


def open_input(path: str) -> IO[str]:
    """The CSV as text; '-' spools stdin to a temporary file so it can be read twice."""
    if path != "-":
        try:
            return open(path, encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise InputError(f"import: {path}: {exc.strerror or exc}") from None
    spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115
    stdin = open(sys.stdin.fileno(), encoding="utf-8-sig", newline="", closefd=False)  # noqa: SIM115
    shutil.copyfileobj(stdin, spool, 1 << 20)
    spool.seek(0)
    return spool


async def import_blocks(store: Store, source: IO[str], defaults: RowDefaults, region: str,
                        *, partial: bool = False, dry_run: bool = False,
                        err: TextIO = sys.stderr) -> ImportReport:
    """Validate everything; load the valid rows when all are valid or partial is set."""
    check = NumberCheck(region)
    report = validate(source, defaults, check, err)
    for line in report.errors:
        print(line, file=err)
    if report.invalid > len(report.errors):
        print(f"... and {report.invalid - len(report.errors):,} more invalid rows", file=err)
    if dry_run or (report.invalid and not partial):
        return report
    source.seek(0)
    await load(store, source, defaults, check, report, err)
    return report
