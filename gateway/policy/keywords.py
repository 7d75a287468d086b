"""Keyword matching on whole MO texts, near-miss detection and the NETWORK MSG check.

`normalise` is the one normal form every comparison uses; `KeywordTable` is built once
from `OptoutSettings` and answers per MO with a dict lookup.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.policy.settings import OptoutSettings

# Stripped at both ends: punctuation, symbols (emoji), separators, controls/format chars.
_EDGE_CATEGORIES = frozenset("PSZC")
_APOSTROPHES = str.maketrans("", "", "'\u2019\u02bc\u2018`\u00b4")
_WORD = re.compile(r"\w+")
_NEGATIONS = frozenset({"DONT", "NOT", "NEVER", "CANT", "WONT", "DIDNT", "DOESNT", "NO"})
STANDARD_OPS = ("stop", "start", "help")
# Longer texts (after trimming whitespace) are never keywords: checked before NFKC, which can
# expand a character 18-fold (U+FDFA), so an MO costs at most this much normalising work.
MAX_KEYWORD_TEXT = 640


def _is_edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in _EDGE_CATEGORIES


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = unicodedata.normalize("NFD", text)
    return "".join(
        ch for ch in text if not unicodedata.combining(ch) and unicodedata.category(ch) != "Cf"
    )


def normalise(text: str) -> str:
    """NFKC, case-folded, accents and format chars dropped, edges trimmed, spaces collapsed, upper.

    ' Stop. ', 'STOP!', 'ＳＴＯＰ' and '¡stop!' all become 'STOP'. Idempotent; never raises.
    """
    for _ in range(3):  # upper() can re-introduce decomposable chars; reach the fixed point
        folded = _fold(text)
        start, end = 0, len(folded)
        while start < end and _is_edge(folded[start]):
            start += 1
        while end > start and _is_edge(folded[end - 1]):
            end -= 1
        result = " ".join(folded[start:end].split()).upper()
        if result == text:
            break
        text = result
    return text


def is_network_msg(text: str) -> bool:
    """A carrier notice ('NETWORK MSG: You replied with the word "stop"...'): never acted on."""
    return text.lstrip()[:11].casefold() == "network msg"


def words(normalised: str) -> list[str]:
    """Word tokens of a normalised text; apostrophes dropped so DON'T is one word DONT."""
    return _WORD.findall(normalised.translate(_APOSTROPHES))


@dataclass(frozen=True, slots=True)
class Match:
    """A configured keyword matched a whole message."""

    op: str  # stop | start | help | custom op name
    keyword: str  # the normalised keyword that matched
    language: str | None = None  # the keyword set it came from; None for the base lists
    countries: frozenset[str] = frozenset()  # the set's countries; empty means every country

    @property
    def rule(self) -> str:
        """Audit form: 'stop:STOP', or 'stop:PARAR@es' for a language set."""
        suffix = f"@{self.language}" if self.language else ""
        return f"{self.op}:{self.keyword}{suffix}"


class KeywordTable:
    """Normalised keyword -> candidate matches, precomputed from the settings."""

    def __init__(self, settings: OptoutSettings) -> None:
        self.config_version = settings.config_version
        self.max_words = settings.possible_optout_max_words
        self.max_chars = settings.possible_optout_max_chars
        self._exact: dict[str, list[Match]] = {}
        for match in _matches(settings):
            self._exact.setdefault(match.keyword, []).append(match)
        for candidates in self._exact.values():  # country-specific sets first, base lists last
            candidates.sort(key=lambda m: (not m.countries, m.language is None))
        self._stop_phrases = _stop_phrases(settings, self._exact)
        tf = settings.toll_free
        self.carrier_stop = frozenset(normalise(k) for k in tf.carrier_stop_keywords)
        self.carrier_start = frozenset(normalise(k) for k in tf.carrier_start_keywords)
        self._last: tuple[str | None, str | None] = (None, None)

    def _normalised(self, text: str) -> str | None:
        """normalise(text), once per MO (the last text is remembered); None when too long."""
        if self._last[0] == text:
            return self._last[1]
        norm = None if len(text.strip()) > MAX_KEYWORD_TEXT else normalise(text)
        self._last = (text, norm)
        return norm

    def classify(self, text: str, region: str | None = None) -> Match | None:
        """Whole message only: ' Stop! ' matches, 'please don't stop' does not."""
        norm = self._normalised(text)
        candidates = self._exact.get(norm) if norm is not None else None
        if not candidates:
            return None
        for match in candidates:
            if not match.countries or region in match.countries:
                return match
        return None

    def carrier_op(self, text: str) -> str | None:
        """'stop' or 'start' when the text is one of the toll-free network's own keywords."""
        norm = self._normalised(text)
        if norm is None:
            return None
        if norm in self.carrier_stop:
            return "stop"
        if norm in self.carrier_start:
            return "start"
        return None

    def possible_optout(self, text: str) -> str | None:
        """The stop keyword inside a short non-keyword message ('STOP PLEASE'), else None."""
        norm = self._normalised(text)
        if norm is None or len(norm) > self.max_chars or norm in self._exact:
            return None
        tokens = words(norm)
        if not 1 < len(tokens) <= self.max_words:
            return None
        for phrase in self._stop_phrases:
            size = len(phrase)
            for i in range(len(tokens) - size + 1):
                if tuple(tokens[i : i + size]) == phrase and not _NEGATIONS & set(
                    tokens[max(0, i - 2) : i]
                ):
                    return " ".join(phrase)
        return None


def _matches(settings: OptoutSettings) -> list[Match]:
    found: list[Match] = []
    for op in STANDARD_OPS:
        for kw in getattr(settings.keywords, op):
            found.append(Match(op, normalise(kw)))
    for custom in settings.custom_ops:
        for kw in custom.keywords:
            found.append(Match(custom.name, normalise(kw)))
    for entry in settings.languages:
        countries = frozenset(entry.countries)
        for op in STANDARD_OPS:
            for kw in getattr(entry, op):
                found.append(Match(op, normalise(kw), entry.language, countries))
    return found


def _stop_phrases(settings: OptoutSettings, exact: dict[str, list[Match]]) -> list[tuple[str, ...]]:
    if settings.possible_optout_keywords is not None:
        keywords = {normalise(k) for k in settings.possible_optout_keywords}
    else:
        keywords = {kw for kw, ms in exact.items() if any(m.op == "stop" for m in ms)}
    phrases = {tuple(words(kw)) for kw in keywords}
    return sorted((p for p in phrases if p), key=lambda p: (-len(p), p))
