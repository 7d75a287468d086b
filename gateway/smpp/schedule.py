"""SMPP 3.4 section 7.1.1 times in submit_sm: schedule_delivery_time and validity_period. Pure.

Absolute 'YYMMDDhhmmsstnnp' (tenths, quarter hours from UTC, '+'/'-') and relative
'YYMMDDhhmmss000R' values as unix seconds; where a submit_sm's schedule_delivery_time lies, and
the body with it replaced, every other byte as it was (quiet hours' defer, gateway/compliance.py).
"""

from __future__ import annotations

import calendar
import datetime as dt


def smpp_absolute(at: float) -> bytes:
    """SMPP 3.4 section 7.1.1 absolute time 'YYMMDDhhmmsstnnp' in UTC (t 0, nn 00, p '+')."""
    stamp = dt.datetime.fromtimestamp(at, dt.UTC)
    return stamp.strftime("%y%m%d%H%M%S").encode() + b"000+"


def parse_absolute(value: bytes) -> float | None:
    """An absolute SMPP time as unix seconds, None for relative ('R') or anything unreadable."""
    if len(value) != 16 or value[15:16] not in (b"+", b"-") or not value[:15].isdigit():
        return None
    try:
        base = dt.datetime.strptime(value[:12].decode(), "%y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    offset = int(value[13:15]) * 900 * (1 if value[15:16] == b"+" else -1)
    return base.timestamp() + int(value[12:13]) / 10 - offset


def parse_relative(value: bytes, now: float) -> float | None:
    """A relative SMPP time 'YYMMDDhhmmss000R' (SMPP 3.4 section 7.1.1.2) as unix seconds after now."""
    if len(value) != 16 or value[15:16] != b"R" or not value[:15].isdigit():
        return None
    y, mo, d, h, mi, sec = (int(value[i:i + 2]) for i in range(0, 12, 2))
    base = dt.datetime.fromtimestamp(now, dt.UTC)
    months = base.month - 1 + mo + 12 * y
    year, month = base.year + months // 12, months % 12 + 1
    day = min(base.day, calendar.monthrange(year, month)[1])
    moved = base.replace(year=year, month=month, day=day) if year <= dt.MAXYEAR else None
    if moved is None:
        return None
    return moved.timestamp() + d * 86400 + h * 3600 + mi * 60 + sec


def parse_schedule(value: bytes, now: float) -> float | None:
    """schedule_delivery_time (absolute or relative) as unix seconds, None when unreadable."""
    return parse_relative(value, now) if value[15:16] == b"R" else parse_absolute(value)


def expires_by(raw: bytes, start: int, hold: float, now: float) -> bool:
    """The validity_period at start (absolute, or relative to now) ends at or before hold: deferred,
    the SMSC would let it expire undelivered, so defer refuses it as reject would."""
    end = raw.find(0, start, start + 17)
    if end <= start:
        return False
    expiry = parse_schedule(raw[start:end], now)
    return expiry is not None and expiry <= hold


def schedule_start(raw: bytes, src_len: int, dst_len: int) -> int:
    """Where a submit_sm's schedule_delivery_time starts, from the address lengths mt_scan read
    (one find instead of schedule_span's three); -1 when unknown or out of the body."""
    if src_len < 0:
        span = schedule_span(raw)
        return -1 if span is None else span[0]
    pos = raw.find(0, 16, 22)  # service_type's NUL
    start = pos + src_len + dst_len + 10  # TON, NPI, source_addr, NUL, TON, NPI, dest, NUL, 3 flags
    return start if pos > 0 and start < len(raw) else -1


def schedule_span(raw: bytes) -> tuple[int, int] | None:
    """(start, end) of a submit_sm's schedule_delivery_time (end at its NUL), None when unreadable."""
    find = raw.find
    pos = find(0, 16, 22)  # service_type's NUL
    if pos > 0:
        pos = find(0, pos + 3, pos + 68)  # source_addr's, after its TON and NPI
    if pos > 0:
        pos = find(0, pos + 3, pos + 68)  # destination_addr's
    start = pos + 4  # after esm_class, protocol_id, priority_flag
    end = find(0, start, start + 17) if pos > 0 else -1
    return None if end < 0 else (start, end)


def with_schedule(raw: bytes, span: tuple[int, int], stamp: bytes) -> bytes:
    """raw with the schedule_delivery_time at span replaced by stamp, every other byte as it was."""
    start, end = span
    length = len(raw) - (end - start) + len(stamp)
    return length.to_bytes(4, "big") + raw[4:start] + stamp + raw[end:]
