"""Where a TOML file writes a setting, so a validation error can name its line. Pure: text in.

`locate(text, loc)` takes pydantic's error location (("accounts", 1, "password")) and gives the
1-based line of the deepest part of it the file writes: the `password =` line of the second
`[[accounts]]` table, else that table's header, else None. Inline tables and arrays resolve to
the line of their key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _parts(dotted: str) -> list[str]:
    out = []
    for match in re.finditer(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", dotted):
        out.append(next(g for g in match.groups() if g is not None))
    return out


def _depth(value: str) -> int:
    """Open brackets left by a value (strings skipped): the following lines continue it."""
    depth, quote = 0, ""
    for ch in re.sub(r"\\.", "", value):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return depth


def index_lines(text: str) -> dict[Path, int]:
    """Every table and key the file writes, as a concrete path (array tables by index), to its line."""
    lines: dict[Path, int] = {}
    counts: dict[Path, int] = {}  # array-of-tables path -> elements so far
    current: Path = ()
    depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if depth > 0:
            depth += _depth(line)
            continue
        header = _HEADER.match(line)
        if header is not None:
            current = _resolve(_parts(header.group(2)), counts, array=header.group(1) == "[[")
            _note(lines, current, number)
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        _note(lines, current + tuple(_parts(key.group(1))), number)
        depth = max(0, _depth(line[key.end():]))
    return lines


def _note(lines: dict[Path, int], path: Path, number: int) -> None:
    """path and every table above it ([optout.keywords] is where optout starts, if nothing before)."""
    for end in range(1, len(path) + 1):
        lines.setdefault(path[:end], number)


def _resolve(parts: list[str], counts: dict[Path, int], array: bool) -> Path:
    """A header's concrete path: earlier array tables along it stand for their latest element."""
    path: Path = ()
    for i, part in enumerate(parts):
        path += (part,)
        if i == len(parts) - 1 and array:
            n = counts.get(path, 0)
            counts[path] = n + 1
            path += (n,)
        elif path in counts:
            path += (counts[path] - 1,)
    return path


def refine(loc: Sequence[str | int], message: str) -> tuple[str | int, ...]:
    """A keyword table error is raised for all of [optout]; the list of the op it names last
    (`keyword 'STOP' is reserved for op stop, not help`: help) is where the file went wrong."""
    ops = re.findall(r"\b(?:op|not) (\w+)", message)
    if tuple(loc) == ("optout",) and ops:
        return ("optout", "keywords", ops[-1])
    return tuple(loc)


def locate(text: str, loc: Sequence[str | int]) -> int | None:
    lines = index_lines(text)
    for end in range(len(loc), 0, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None


def account_line(text: str, message: str) -> int | None:
    """An error about all the accounts (`system_id 'x' is listed twice`, a number two accounts
    own): the line naming the last account it quotes, its last occurrence. One about a value of
    one account (`'x' number 'bad' is neither ...`): the line of that value in that account's table."""
    names = re.findall(r"'([^']{1,64})'", message)
    if not names:
        return None
    lines = text.splitlines()
    owners = _system_id_lines(lines, names[-1])
    if owners:
        return owners[-1]
    value = re.compile(r"""["']""" + re.escape(names[-1]) + r"""["']""")
    found = [n for n, line in enumerate(lines, start=1) if value.search(line.split("#", 1)[0])]
    account = _system_id_lines(lines, names[0]) if len(names) > 1 else []
    if account:
        headers = [n for n, line in enumerate(lines, start=1) if _HEADER.match(line)]
        first = max((h for h in headers if h <= account[-1]), default=1)
        last = min((h for h in headers if h > account[-1]), default=len(lines) + 1)
        found = [n for n in found if first <= n < last] or found
    return found[0] if found else None


def _system_id_lines(lines: list[str], name: str) -> list[int]:
    pattern = re.compile(r"""^\s*system_id\s*=\s*["']""" + re.escape(name) + r"""["']""")
    return [n for n, line in enumerate(lines, start=1) if pattern.match(line)]
