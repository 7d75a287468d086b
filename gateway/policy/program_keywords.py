"""Program keywords: opt out of (or back into) one program of the business texted. Pure.

A program keyword is matched like a standard keyword (normalised, the whole message) and wins
over the standard lists; no stop-type word (the stop op's list, every language's) and none of
STOP, START and HELP can be a program keyword (settings and compliance_settings refuse them).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.policy.compliance_settings import ProgramKeywords
from gateway.policy.keywords import normalise


@dataclass(frozen=True, slots=True)
class ProgramMatch:
    program: str  # the program's name (the account is the texted number's owner)
    op: str  # "stop" | "start"
    keyword: str  # normalised
    reply: str | None


class ProgramKeywordTable:
    def __init__(self, entries: list[ProgramKeywords]) -> None:
        self._table: dict[str, list[ProgramMatch]] = {}
        for e in entries:
            for op, words, reply in (("stop", e.stop, e.stop_reply), ("start", e.start, e.start_reply)):
                for word in words:
                    norm = normalise(word)
                    self._table.setdefault(norm, []).append(ProgramMatch(e.program, op, norm, reply))

    def __bool__(self) -> bool:
        return bool(self._table)

    def classify(self, text: str | None, programs: frozenset[str]) -> ProgramMatch | None:
        """The program keyword text is, among the programs the texted account declares."""
        if text is None or not self._table:
            return None
        for match in self._table.get(normalise(text.replace("\x00", "")), ()):
            if match.program in programs:
                return match
        return None
