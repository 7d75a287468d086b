"""The reply linter (policy.lint): one warning line per faulted reply."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy.lint import reply_warnings
from gateway.policy.settings import OptoutSettings

GOOD_HELP = "Acme alerts: help at support@acme.example or 1-800-555-0100. Reply STOP to unsubscribe."
GOOD_STOP = "Acme: you are unsubscribed and will receive no further messages. Reply START to resubscribe."


def _settings(**replies: Any) -> OptoutSettings:
    base: dict[str, Any] = {"help": GOOD_HELP, "stop": GOOD_STOP}
    return OptoutSettings.model_validate({"replies": base | replies})


def test_good_replies_pass() -> None:
    assert reply_warnings(_settings()) == []


def test_shipped_default_help_is_warned_deliberately() -> None:
    """The shipped HELP reply cannot know the business's contact: the one warning it gets (README)."""
    warnings = reply_warnings(OptoutSettings())
    assert warnings == ["replies.help.default: a HELP reply names no support contact (phone number or email address)"]


@pytest.mark.parametrize("text, shortener", [
    ("Resubscribed! Details at https://bit.ly/abc123 . Reply STOP to stop.", "bit.ly"),
    ("Resubscribed! Details at tinyurl.com/xyz - reply STOP to stop.", "tinyurl.com"),
    ("Resubscribed! See http://t.co/q for more, reply STOP to opt out.", "t.co"),
    ("Resubscribed! See OW.LY/abc for more, reply STOP to opt out.", "ow.ly"),
])
def test_url_shortener(text: str, shortener: str) -> None:
    assert reply_warnings(_settings(start=text)) == [
        f"replies.start.default: holds the public URL shortener {shortener} (carriers filter them)"]


def test_own_domain_is_no_shortener() -> None:
    assert reply_warnings(_settings(start="Resubscribed. Terms at https://acme.example/t.co.html reply STOP")) == []


@pytest.mark.parametrize("text, warned", [
    ("Help: call +1 415 555 0100. Reply STOP to unsubscribe.", False),
    ("Help: write to help@acme.example. Reply STOP to unsubscribe.", False),
    ("Reply STOP to unsubscribe, START to resubscribe. Msg&data rates may apply.", True),
])
def test_help_names_a_contact(text: str, warned: bool) -> None:
    assert bool(reply_warnings(_settings(help=text))) is warned


@pytest.mark.parametrize("text, warned", [
    ("You will not receive any more messages from Acme. Reply START to rejoin.", False),
    ("Acme: no more messages will be sent. Reply START to rejoin.", False),
    ("Acme: your request was received. Reply START to rejoin us.", True),
])
def test_stop_says_no_further_messages(text: str, warned: bool) -> None:
    warnings = reply_warnings(_settings(stop=text))
    assert bool(warnings) is warned
    assert not warned or warnings == [
        "replies.stop.default: a STOP reply does not say no further messages will be sent (CTIA 5.1.3)"]


def test_canada_needs_french_alongside_english() -> None:
    english = GOOD_STOP
    both = GOOD_STOP + " Vous ne recevrez plus de messages."
    settings = _settings(stop={"default": GOOD_STOP, "countries": {"CA": english, "FR": english}})
    assert reply_warnings(settings) == [
        "replies.stop.countries.CA: not in fr (replies to CA need en and fr)"]
    assert reply_warnings(_settings(stop={"default": GOOD_STOP, "countries": {"CA": both}})) == []


def test_several_problems_are_one_line() -> None:
    warnings = reply_warnings(_settings(help="Need a hand? Go to bit.ly/acme-help right now."))
    assert len(warnings) == 1 and "bit.ly" in warnings[0] and "support contact" in warnings[0]


def test_clarify_reply_and_program_replies_are_linted() -> None:
    settings = OptoutSettings.model_validate({
        "replies": {"help": GOOD_HELP, "stop": GOOD_STOP},
        "revoke_all": {"clarify_reply": "Acme: reply ALERTS to keep alerts, see bit.ly/acme"},
        "programs": {"keywords": [{"program": "promo", "stop": ["PROMO OFF"], "start": ["PROMO"],
                                   "stop_reply": "Acme promotions: done. Reply PROMO to rejoin.",
                                   "start_reply": "Back in! Details at tinyurl.com/acme"}]}})
    assert reply_warnings(settings) == [
        ("revoke_all.clarify_reply: holds the public URL shortener bit.ly (carriers filter them); "
         "a STOP reply does not say no further messages will be sent (CTIA 5.1.3)"),
        "programs.keywords.0.stop_reply: a STOP reply does not say no further messages will be sent (CTIA 5.1.3)",
        "programs.keywords.0.start_reply: holds the public URL shortener tinyurl.com (carriers filter them)"]
