"""Operator commands: `gateway blocks ...`, `gateway events ...`, `gateway migrate`.

The console side of the operator surface: the operations themselves live in operations.py
(shared with the HTTP API); these format their results as text and CSV.

Each command is a coroutine over an opened Store, writing to the given streams, so
tests can drive it on any backend; `run()` opens the store from the settings for the
console script. Changes go through store.record() with an audit event, so running
gateways pick them up from the event log. Bad input raises InputError (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any, TextIO

from gateway.admin import operations as ops
from gateway.admin_files import ExportFile, export_target
from gateway.admin_import import ImportReport, import_blocks, open_input
from gateway.admin_rows import (
    HEADER,
    CsvWriter,
    InputError,
    RowDefaults,
    RowError,
    block_csv_row,
    csv_number,
    csv_text,
    iso,
    parse_time,
)
from gateway.store import open_store
from gateway.store.base import AuditEvent, Store

__all__ = ["InputError", "run"]

EVENT_FIELDS: tuple[str, ...] = ("id", *(
    f.name for f in dataclasses.fields(AuditEvent) if f.name != "id"))
NUMBER_FIELDS = frozenset({"number", "counterpart"})  # E.164 when known: kept as they are
Command = Callable[[Store], Awaitable[int]]


# -- blocks ------------------------------------------------------------------


async def blocks_list(store: Store, *, number: str | None = None, limit: int = 100,
                      offset: int = 0, fmt: str = "table", region: str = "US",
                      out: TextIO = sys.stdout) -> int:
    query = ops.BlockQuery(number=number, limit=limit, offset=offset)
    page = await ops.list_blocks(store, ops.Site(region), query)
    rows = [block_csv_row(b) for b in page.blocks]
    if fmt == "csv":
        writer = CsvWriter(out)
        writer.writerow(HEADER)
        writer.writerows(rows)
        return 0
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(HEADER)]
    for row in (HEADER, *rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)
    return 0


def _number(raw: str, region: str) -> str:
    return ops.number(raw, ops.Site(region))


async def blocks_add(store: Store, number: str, *, counterpart: str = "", scope: str = "number",
                     kind: str = "admin", region: str = "US", out: TextIO = sys.stdout,
                     actor: ops.Actor = ops.NOBODY) -> int:
    site = ops.Site(region)
    key = ops.key(number, counterpart, scope, site)
    done = await ops.add_block(store, site, key, kind, actor)
    what = ops.describe(key)
    if done.changed:
        print(f"blocked {what}, kind {kind}", file=out)
    else:
        found = done.block.kind if done.block else "unknown"
        print(f"already blocked {what}, kind {found}: unchanged", file=out)
    return 0


async def blocks_remove(store: Store, number: str, *, counterpart: str = "", scope: str = "number",
                        kind: str | None = None, region: str = "US", out: TextIO = sys.stdout,
                        actor: ops.Actor = ops.NOBODY) -> int:
    site = ops.Site(region)
    key = ops.key(number, counterpart, scope, site)
    done = await ops.remove_block(store, site, key, kind, actor)
    what = ops.describe(key)
    if done.changed:
        print(f"lifted {what}", file=out)
    elif done.block is None:
        print(f"not blocked: {what}", file=out)
    else:
        print(f"not lifted: {what} is kind {done.block.kind}, not {kind}", file=out)
    return 0


async def blocks_export(store: Store, out: TextIO, err: TextIO = sys.stderr) -> int:
    started = time.perf_counter()
    writer = CsvWriter(out)
    writer.writerow(HEADER)
    count = 0
    async for block in store.iter_blocks():
        writer.writerow(block_csv_row(block))
        count += 1
    out.flush()
    print(f"exported {count:,} blocks in {time.perf_counter() - started:.1f} s", file=err)
    return 0


async def blocks_import(store: Store, source: IO[str], defaults: RowDefaults, region: str, *,
                        partial: bool = False, dry_run: bool = False,
                        err: TextIO = sys.stderr) -> tuple[int, ImportReport]:
    report = await import_blocks(store, source, defaults, region,
                                 partial=partial, dry_run=dry_run, err=err)
    print(report.summary(), file=err)
    if report.invalid and not partial:
        print(f"{report.invalid:,} invalid rows: nothing loaded (--partial loads the valid rows)",
              file=err)
        return 2, report
    if dry_run:
        print("dry run: nothing loaded", file=err)
    return 0, report


# -- events ------------------------------------------------------------------


async def events_export(store: Store, since: float, until: float, fmt: str, out: TextIO,
                        err: TextIO = sys.stderr, number: str | None = None) -> int:
    """The log, or with number one mobile's whole history (gateway/evidence.py)."""
    if number is not None:
        return await _number_export(store, number, since, until, fmt, out, err)
    return await _write_events(store.events_between(since, until), since, until, fmt, out, err)


async def _number_export(store: Store, number: str, since: float, until: float, fmt: str, out: TextIO,
                         err: TextIO) -> int:
    from gateway.evidence import refusal_lines

    _, events = await ops.number_events(store, ops.Site(), number, since, until)

    async def listed() -> AsyncIterator[AuditEvent]:
        for event in events:
            yield event

    code = await _write_events(listed(), since, until, fmt, out, err, f" for {number}")
    for line in refusal_lines(events):
        print(line, file=err)
    return code


async def _write_events(source: AsyncIterator[AuditEvent], since: float, until: float, fmt: str,
                        out: TextIO, err: TextIO, what: str = "") -> int:
    count = 0
    writer = CsvWriter(out)
    if fmt == "csv":
        writer.writerow((*EVENT_FIELDS, "at_iso"))
    async for event in source:
        values = dataclasses.asdict(event)
        if fmt == "csv":
            writer.writerow((*(_event_cell(f, values[f]) for f in EVENT_FIELDS), iso(event.at)))
        else:
            record = {f: values[f] for f in EVENT_FIELDS} | {"at_iso": iso(event.at)}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    out.flush()
    print(f"exported {count:,} events{what} from {iso(since)} to {iso(until)}", file=err)
    return 0


def _event_cell(name: str, value: object) -> object:
    """CSV cell of an event field: numbers and times as they are, text safe for spreadsheets."""
    if not isinstance(value, str):
        return value
    return csv_number(value) if name in NUMBER_FIELDS else csv_text(value)


async def events_purge(store: Store, before: float, out: TextIO = sys.stdout, *,
                       forced: bool = False) -> int:
    """Delete events before the cutoff, then record the purge itself as an event (op purge)."""
    deleted = await store.purge_events(before)
    note = " forced" if forced else ""
    await store.record(AuditEvent(at=time.time(), op="purge", source="operator",
                                  text=f"before={iso(before)} count={deleted}{note}"))
    print(f"purged {deleted:,} events before {iso(before)}", file=out)
    return 0


# -- migrate -----------------------------------------------------------------


async def migrate(url: str, out: TextIO = sys.stdout) -> int:
    from gateway.store import migrate as migrate_store

    before, after = await migrate_store(url)
    print(f"schema version {before} -> {after}", file=out)
    return 0


# -- console script ------------------------------------------------------------


def _time(text: str | None, what: str, default: float) -> float:
    if text is None:
        return default
    try:
        return parse_time(text, what)
    except RowError as exc:
        raise InputError(str(exc)) from None


def _purge_before(args: argparse.Namespace, settings: Any) -> float:
    """The cutoff; InputError when it is inside the retention period, unless --force."""
    now = time.time()
    if args.before is not None:
        before = _time(args.before, "--before", 0.0)
        asked = f"--before {iso(before)}"
    else:
        days = args.older_than_days
        if days is None:
            days = int(settings.events_retention_days)
        if days < 1:
            raise InputError(f"--older-than-days {days}: must be at least 1")
        before = now - float(days) * 86400.0
        asked = f"--older-than-days {days}"
    retention = int(settings.events_retention_days)
    floor = now - retention * 86400.0
    if before > floor and not args.force:
        raise InputError(f"{asked} would delete events younger than events_retention_days "
                         f"({retention} days, cutoff {iso(floor)}); --force purges them anyway")
    return before


def _blocks_command(args: argparse.Namespace, settings: Any) -> Command:
    region = settings.optout.default_region
    scope = getattr(args, "scope", None) or settings.optout.scope
    sub = args.blocks_command
    if sub == "list":
        return lambda s: blocks_list(s, number=args.number, limit=args.limit, offset=args.offset,
                                     fmt=args.format, region=region)
    if sub == "add":
        return lambda s: blocks_add(s, args.number, counterpart=args.counterpart or "",
                                    scope=scope, kind=args.kind or "admin", region=region,
                                    actor=_actor(args))
    if sub == "remove":
        return lambda s: blocks_remove(s, args.number, counterpart=args.counterpart or "",
                                       scope=scope, kind=args.kind, region=region, actor=_actor(args))
    if sub == "export":
        return lambda s: _to_file(args.file, args.force, s, lambda out: blocks_export(s, out))
    source = open_input(args.file)
    defaults = RowDefaults(scope=scope, kind=args.kind or "optout", source=args.source,
                           created_at=time.time())

    async def run_import(s: Store) -> int:
        with source:
            code, _ = await blocks_import(s, source, defaults, region,
                                          partial=args.partial, dry_run=args.dry_run)
        return code

    return run_import


def _actor(args: argparse.Namespace) -> ops.Actor:
    """--operator (default: the login name) and --reason, for the audit event."""
    operator = args.operator
    if operator is None:
        import getpass

        try:
            operator = getpass.getuser()
        except (OSError, KeyError):
            operator = ""
    return ops.Actor(operator, args.reason or "")


async def _to_file(path: str | None, force: bool, store: Store,
                   write: Callable[[TextIO], Awaitable[int]]) -> int:
    """write() to stdout ('-'), or to path through a 0600 temporary file renamed on success."""
    if path in (None, "-"):
        return await write(sys.stdout)
    target = export_target(path, force=force, database_path=_database_path(store))
    with ExportFile(target) as out:
        return await write(out)


def _database_path(store: Store) -> str | None:
    from gateway.store.sqlite import SqliteStore

    return store.path if isinstance(store, SqliteStore) else None


def _events_command(args: argparse.Namespace, settings: Any) -> Command:
    if args.events_command == "purge":
        before = _purge_before(args, settings)
        return lambda s: events_purge(s, before, forced=args.force)
    since, until = _period(args)
    number = _number(args.number, settings.optout.default_region) if args.number else None
    return lambda s: _to_file(args.output, args.force, s,
                              lambda out: events_export(s, since, until, args.format, out, number=number))


def _period(args: argparse.Namespace) -> tuple[float, float]:
    since = _time(args.since, "--since", 0.0)
    until = _time(args.until, "--until", time.time() + 1)
    if until <= since:
        raise InputError(f"--until {iso(until)} is not after --since {iso(since)}")
    return since, until


async def report(store: Store, since: float, until: float, fmt: str, out: TextIO = sys.stdout) -> int:
    """`gateway report`: the compliance summary of a period (gateway/evidence.py)."""
    from gateway.evidence import summarise, summary_json

    events = [e async for e in store.events_between(since, float("inf"))]
    summary = summarise(events, since, until)
    print(summary_json(summary) if fmt == "json" else "\n".join(summary.lines()), file=out)
    return 0


def _deactivations_command(args: argparse.Namespace, settings: Any) -> Command:
    from gateway.admin_deactivations import import_deactivations

    source = open_input(args.file)

    async def run_import(s: Store) -> int:
        with source:
            code, _ = await import_deactivations(s, source, settings.optout.default_region,
                                                 partial=args.partial, dry_run=args.dry_run)
        return code

    return run_import


async def _with_store(url: str, command: Command) -> int:
    store = open_store(url)
    await store.open()
    try:
        return await command(store)
    finally:
        await store.close()


async def run(args: argparse.Namespace, settings: Any) -> int:
    """Dispatch one operator command (args from gateway.cli.parser())."""
    if args.command == "migrate":
        return await migrate(settings.database_url)
    if args.command == "blocks":
        command = _blocks_command(args, settings)
    elif args.command == "deactivations":
        command = _deactivations_command(args, settings)
    elif args.command == "report":
        since, until = _period(args)
        command = lambda s: report(s, since, until, args.format)
    else:
        command = _events_command(args, settings)
    return await _with_store(settings.database_url, command)
