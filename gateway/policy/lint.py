"""A linter for reply texts: what carriers filter and what CTIA / CWTA expect in a reply.

Pure: settings in, one warning line per reply out. `check-config` prints them with the
`config warning:` prefix (never blocking the start); `check-config --strict` makes them errors.

- a public URL shortener (carriers silently filter messages holding one);
- a HELP reply that names no support contact (a phone number or an email address);
- a STOP reply that does not say no further messages will be sent (CTIA 5.1.3);
- a reply in a country's table that is not in that country's languages (Canada: French
  alongside English, as CWTA asks).

Linted: the standard replies, language sets' and custom ops' replies, revoke_all.clarify_reply
(as a STOP reply) and each program keyword's stop_reply (as a STOP reply) and start_reply.

The language check is a word-list heuristic: a reply "is in" a language when it holds one of
that language's marker words. It is meant to catch an English-only Canadian reply, not to judge
translations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.policy.settings import OptoutSettings, Reply

SHORTENERS = (
    "bit.ly", "tinyurl.com", "t.co", "ow.ly", "goo.gl", "is.gd", "buff.ly", "rebrand.ly", "cutt.ly",
    "shorturl.at", "tiny.cc", "rb.gy", "t.ly", "bl.ink", "v.gd", "s.id", "lnkd.in", "shorte.st",
)  # fmt: skip
_SHORTENER = re.compile(
    r"(?<![\w./-])(?:https?://)?(?:www\.)?(" + "|".join(re.escape(s) for s in SHORTENERS) + r")(?:/|\b)",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{5,}\d(?!\w)")
_CONTACT_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# CTIA 5.1.3: the opt-out confirmation says no further messages will be sent
_NO_MORE = re.compile(
    r"\b(no (further|more)( \w+){0,2} (messages|msgs|texts)|(will not|won't|wont) (receive|get|be sent)"
    r"|unsubscribed|opted out|ne recevrez plus|aucun autre message|plus de messages)\b",
    re.IGNORECASE,
)
LANGUAGES: dict[str, tuple[str, ...]] = {"CA": ("en", "fr")}  # country -> languages its replies must hold
_MARKERS: dict[str, frozenset[str]] = {
    "en": frozenset({"reply", "you", "your", "the", "and", "to", "messages", "help", "unsubscribed", "will"}),
    "fr": frozenset({"vous", "votre", "répondez", "repondez", "les", "des", "aide", "désabonné", "desabonne",
                     "recevrez", "pour", "arrêt", "arret"}),
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def reply_warnings(settings: OptoutSettings) -> list[str]:
    """One line per reply that a carrier may filter or a reviewer may fault."""
    out: list[str] = []
    for where, op, text, country in _replies(settings):
        problems = _problems(op, text, country)
        if problems:
            out.append(f"{where}: {'; '.join(problems)}")
    return out


def _problems(op: str, text: str, country: str | None) -> list[str]:
    problems = []
    found = _SHORTENER.search(text)
    if found:
        problems.append(f"holds the public URL shortener {found.group(1).lower()} (carriers filter them)")
    if op == "help" and not (_EMAIL.search(text) or _PHONE.search(text)):
        problems.append("a HELP reply names no support contact (phone number or email address)")
    if op == "stop" and not _NO_MORE.search(text):
        problems.append("a STOP reply does not say no further messages will be sent (CTIA 5.1.3)")
    missing = [lang for lang in LANGUAGES.get(country or "", ()) if not in_language(text, lang)]
    if missing:
        problems.append(f"not in {', '.join(missing)} (replies to {country} need {' and '.join(LANGUAGES[country or ''])})")
    return problems


def in_language(text: str, language: str) -> bool:
    words = {w.lower() for w in _WORD.findall(text)}
    return bool(words & _MARKERS.get(language, frozenset()))


def _replies(settings: OptoutSettings) -> Iterator[tuple[str, str, str, str | None]]:
    """(where, op, text, country or None) for every configured reply."""
    for op in ("stop", "start", "help"):
        reply: Reply = getattr(settings.replies, op)
        yield f"replies.{op}.default", op, reply.default, None
        for country, text in reply.countries.items():
            yield f"replies.{op}.countries.{country}", op, text, country
    for i, entry in enumerate(settings.languages):
        for op, text in entry.replies.items():  # a language set's reply is in its language by design
            yield f"languages.{i}.replies.{op}", op, text, None
    yield from _compliance_replies(settings)
    for custom in settings.custom_ops:
        if custom.reply is None:
            continue
        yield f"custom_ops.{custom.name}.reply.default", custom.name, custom.reply.default, None
        for country, text in custom.reply.countries.items():
            yield f"custom_ops.{custom.name}.reply.countries.{country}", custom.name, text, country


def _compliance_replies(settings: OptoutSettings) -> Iterator[tuple[str, str, str, str | None]]:
    """Revoke-all's clarification (a STOP confirmation) and each program keyword's replies (a
    program opt-out confirms like a STOP, its opt-in like a START)."""
    if settings.revoke_all.clarify_reply:
        yield "revoke_all.clarify_reply", "stop", settings.revoke_all.clarify_reply, None
    for i, entry in enumerate(settings.programs.keywords):
        for op, text in (("stop", entry.stop_reply), ("start", entry.start_reply)):
            if text:
                yield f"programs.keywords.{i}.{op}_reply", op, text, None
