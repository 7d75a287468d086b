"""Values the operator CLI reads and writes: E.164 checks, timestamps, block CSV rows.

`NumberCheck` is the import hot path. A canonical "+<digits>" number costs a few string
operations and dict look-ups: whether a (country code, length) pair is possible is asked
of phonenumbers once and cached, and only numbers phonenumbers might rewrite (a leading
national prefix or zero) or that fail the fast check go through phonenumbers.parse.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import phonenumbers

from gateway.errors import GatewayError
from gateway.store.base import ALL_KINDS, SCOPES, Block, BlockKey

HEADER: tuple[str, ...] = ("number", "counterpart", "scope", "kind", "source", "created_at")
MAX_SYSTEM_ID = 15
SHORT_CODE = re.compile(r"[0-9]{3,6}")  # as the gateway keys STOPs sent to a short code
_NUMERIC = re.compile(r"[+-]?\d+(\.\d*)?")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run (OWASP CSV injection)


class InputError(GatewayError):
    """Bad operator input (arguments, file, rows): one line on stderr, exit 2."""


class RowError(ValueError):
    """One bad CSV row; the message names the field and the value."""


def parse_time(text: str, what: str) -> float:
    """Unix seconds from '1700000000[.5]' or ISO 8601 (naive means UTC, 'Z' allowed).

    Eight digits are a compact ISO date (20240501), not 1970's seconds.
    """
    value = text.strip()
    if _NUMERIC.fullmatch(value) and not (len(value) == 8 and value.isdigit()):
        return float(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(f"{what} {text!r}: expected ISO 8601 or unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(at: float) -> str:
    """'2024-05-01T12:00:00.000Z' (UTC, milliseconds); out of datetime's range: the number."""
    try:
        text = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError):
        return repr(at)
    return text.replace("+00:00", "Z")


def _metadata(cc: int) -> phonenumbers.PhoneMetadata | None:
    region = phonenumbers.region_code_for_country_code(cc)
    if region == "001":
        return phonenumbers.PhoneMetadata.metadata_for_nongeo_region(cc)
    return phonenumbers.PhoneMetadata.metadata_for_region(region)


class NumberCheck:
    """raw text -> E.164 ('+14155550123'), or RowError. One instance per run (it caches)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._cc: dict[str, int | None] = {}
        self._possible: dict[tuple[int, int], bool] = {}
        self._prefix: dict[int, re.Pattern[str] | None] = {}
        self.slow = 0  # rows that needed phonenumbers.parse

    def __call__(self, raw: str, what: str = "number") -> str:
        fast = self._fast(raw)
        if fast is not None:
            return fast
        self.slow += 1
        checked = self._parse(raw)
        if checked is None:
            raise RowError(f"{what} {raw!r}: not an E.164 number")
        return checked

    def _fast(self, raw: str) -> str | None:
        if not 8 <= len(raw) <= 16 or raw[0] != "+":
            return None
        digits = raw[1:]
        if not (digits.isascii() and digits.isdigit()):
            return None
        head = digits[:3]
        cc = self._cc[head] if head in self._cc else self._country_code(head)
        if cc is None:
            return None
        nsn = digits[len(str(cc)):]
        if not nsn or nsn[0] == "0" or self._strippable(cc, nsn):
            return None
        key = (cc, len(nsn))
        possible = self._possible.get(key)
        if possible is None:
            number = phonenumbers.PhoneNumber(country_code=cc, national_number=int(nsn))
            possible = self._possible[key] = phonenumbers.is_possible_number(number)
        return raw if possible else None

    def _country_code(self, head: str) -> int | None:
        found = None
        for size in (1, 2, 3):
            if len(head) >= size and int(head[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                found = int(head[:size])
                break
        self._cc[head] = found
        return found

    def _strippable(self, cc: int, nsn: str) -> bool:
        """True when phonenumbers.parse could strip or transform a national prefix."""
        if cc not in self._prefix:
            meta = _metadata(cc)
            pattern = meta.national_prefix_for_parsing if meta is not None else None
            self._prefix[cc] = re.compile(pattern) if pattern else None
        prefix = self._prefix[cc]
        if prefix is None:
            return False
        match = prefix.match(nsn)
        return match is not None and (match.end() > 0 or match.lastindex is not None)

    def _parse(self, raw: str) -> str | None:
        text = raw.strip()
        if not text or len(text) > 40:
            return None
        try:
            parsed = phonenumbers.parse(text, self.region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_possible_number(parsed):
            return None
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def block_key(check: NumberCheck, number: str, counterpart: str, scope: str) -> BlockKey:
    """A validated key: counterpart E.164 or a short code (3-6 digits, kept as is) for
    scope number, a system_id for account, "" for global."""
    if scope not in SCOPES:
        raise RowError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
    mobile = check(number, "number")
    if scope == "number":
        if not counterpart:
            raise RowError("counterpart: required for scope number (the originating number)")
        if not SHORT_CODE.fullmatch(counterpart):
            counterpart = check(counterpart, "counterpart")
    elif scope == "account":
        if not counterpart or len(counterpart) > MAX_SYSTEM_ID:
            raise RowError(f"counterpart {counterpart!r}: expected the account's system_id for scope account")
    elif scope == "program":
        account, _, program = counterpart.partition("/")
        if not account or not program or len(account) > MAX_SYSTEM_ID:
            raise RowError(f"counterpart {counterpart!r}: expected <system_id>/<program> for scope program")
    elif counterpart:
        raise RowError(f"counterpart {counterpart!r}: must be empty for scope global")
    return BlockKey(mobile, counterpart, scope)


@dataclass(frozen=True, slots=True)
class RowDefaults:
    scope: str
    kind: str = "optout"
    source: str = "import"
    created_at: float = 0.0


class RowReader:
    """Header-driven CSV row -> Block, validating every field."""

    def __init__(self, header: Sequence[str], defaults: RowDefaults, check: NumberCheck) -> None:
        names = [h.strip().lower() for h in header]
        unknown = [n for n in names if n not in HEADER]
        if "number" not in names:
            raise InputError(f"header {','.join(header)!r}: needs a 'number' column ({','.join(HEADER)})")
        if unknown:
            raise InputError(f"header: unknown column(s) {', '.join(unknown)} (expected {','.join(HEADER)})")
        self.index = {n: i for i, n in enumerate(names)}
        self.width = len(names)
        self.defaults = defaults
        self.check = check

    def _get(self, row: Sequence[str], name: str, default: str) -> str:
        i = self.index.get(name)
        if i is None:
            return default
        return csv_unescape(row[i].strip()) or default

    def block(self, row: Sequence[str]) -> Block:
        if len(row) != self.width:
            raise RowError(f"expected {self.width} fields, found {len(row)}")
        d = self.defaults
        kind = self._get(row, "kind", d.kind)
        if kind not in ALL_KINDS:
            raise RowError(f"kind {kind!r}: expected one of {', '.join(ALL_KINDS)}")
        key = block_key(self.check, csv_unescape(row[self.index["number"]].strip()),
                        self._get(row, "counterpart", ""), self._get(row, "scope", d.scope))
        created = self._get(row, "created_at", "")
        at = parse_time(created, "created_at") if created else d.created_at
        return Block(key, kind, self._get(row, "source", d.source), at)


def csv_text(value: str) -> str:
    """A free-text CSV cell: a leading ' when it begins like a formula; the rest unchanged."""
    return f"'{value}" if value.startswith(FORMULA_START) else value


def csv_number(value: str) -> str:
    """A number cell: E.164 ('+14155550123') stays as it is; anything else is free text."""
    if not value.startswith(FORMULA_START) or E164.fullmatch(value):
        return value
    return f"'{value}"


class CsvWriter:
    """csv.writer with "\\n" line ends that also quotes a field holding a bare "\\r"
    (Python's writer quotes only the characters of its lineterminator)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._plain = csv.writer(out, lineterminator="\n")
        self._buf = io.StringIO()
        self._crlf = csv.writer(self._buf, lineterminator="\r\n")

    def writerow(self, row: Iterable[object]) -> None:
        cells = tuple(row)
        if not _has_cr(cells):
            self._plain.writerow(cells)
            return
        self._crlf.writerow(cells)  # quotes every field with \r or \n
        line = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        self._out.write(line[:-2] + "\n")

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def _has_cr(cells: tuple[object, ...]) -> bool:
    try:
        return "\r" in "".join(cells)  # type: ignore[arg-type]  # all text: one scan
    except TypeError:
        return any(isinstance(c, str) and "\r" in c for c in cells)


def csv_unescape(value: str) -> str:
    """What csv_text added, taken off again (import reads what export wrote)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def block_csv_row(block: Block) -> tuple[str, str, str, str, str, str]:
    key = block.key
    return (csv_number(key.number), csv_number(key.counterpart), csv_text(key.scope),
            csv_text(block.kind), csv_text(block.source), iso(block.created_at))
