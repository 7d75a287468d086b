"""Keyword normalisation, whole-message classification, near misses, NETWORK MSG."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.keywords import KeywordTable, Match, is_network_msg, normalise
from gateway.policy.settings import DEFAULT_HELP, DEFAULT_START, DEFAULT_STOP, OptoutSettings

TABLE = KeywordTable(OptoutSettings())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("stop", "STOP"),
        (" Stop. ", "STOP"),
        ("STOP!", "STOP"),
        ("Stop   all", "STOP ALL"),
        ("stop\tall\n", "STOP ALL"),
        ("ＳＴＯＰ", "STOP"),  # fullwidth, NFKC
        ("¡stop!", "STOP"),
        ("¿Stop?", "STOP"),
        ("«stop»", "STOP"),
        ("stop！", "STOP"),
        ("\u201cstop\u201d", "STOP"),
        ("arrêt", "ARRET"),
        ("ARRÊTÉ", "ARRETE"),
        ("Arrête", "ARRETE"),
        ("s\u0301top", "STOP"),  # combining accent dropped
        ("st\u200bop", "STOP"),  # zero-width space inside
        ("\ufeffSTOP", "STOP"),  # BOM
        ("stop 🛑", "STOP"),
        ("straße", "STRASSE"),
        ("", ""),
        ("  ...  ", ""),
        ("please don't stop", "PLEASE DON'T STOP"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@given(st.text())
def test_normalise_idempotent_and_total(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert once == once.strip()
    assert "  " not in once


@pytest.mark.parametrize("keyword", DEFAULT_STOP)
def test_every_default_stop_keyword(keyword: str) -> None:
    for variant in (keyword, keyword.lower(), f"  {keyword.title()}! ", f"{keyword}."):
        match = TABLE.classify(variant)
        assert match is not None and match.op == "stop", variant


@pytest.mark.parametrize("keyword", DEFAULT_START)
def test_every_default_start_keyword(keyword: str) -> None:
    match = TABLE.classify(f" {keyword.lower()} ")
    assert match is not None and match.op == "start"


@pytest.mark.parametrize("keyword", DEFAULT_HELP)
def test_every_default_help_keyword(keyword: str) -> None:
    match = TABLE.classify(keyword.capitalize() + "?")
    assert match is not None and match.op == "help"


@pytest.mark.parametrize(
    "text, op",
    [
        ("stop", "stop"),
        (" Stop. ", "stop"),
        ("STOP!", "stop"),
        ("Stop all", "stop"),
        ("ＳＴＯＰ", "stop"),
        ("opt-out", None),
        ("opt out", "stop"),
        ("Arrêté", "stop"),
        ("please don't stop", None),
        ("stop it now please thanks ok ok ok", None),
        ("stopped", None),
        ("unstop", "start"),
        ("Yes!", "start"),
        ("info", "help"),
        ("hello", None),
        ("", None),
        ("NETWORK MSG: stop", None),
    ],
)
def test_classify(text: str, op: str | None) -> None:
    match = TABLE.classify(text)
    assert (match.op if match else None) == op


def test_match_rule() -> None:
    assert Match("stop", "STOP").rule == "stop:STOP"
    assert Match("stop", "PARAR", "es").rule == "stop:PARAR@es"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("STOP PLEASE", "STOP"),
        ("stop texting me", "STOP"),
        ("unsubscribe me", "UNSUBSCRIBE"),
        ("Please, STOP!!", "STOP"),
        ("stop all messages", "STOP ALL"),
        ("opt out of this", "OPT OUT"),
        ("please don't stop", None),
        ("do not stop", None),
        ("never stop", None),
        ("STOP", None),  # a keyword, not a near miss
        ("stopped", None),
        ("hello there", None),
        ("I would like you to stop sending me these messages", None),  # too many words
        ("stop " + "x" * 70, None),  # too long
    ],
)
def test_possible_optout(text: str, expected: str | None) -> None:
    assert TABLE.possible_optout(text) == expected


def test_possible_optout_keyword_list_setting() -> None:
    table = KeywordTable(OptoutSettings(possible_optout_keywords=["STOP"]))
    assert table.possible_optout("cancel my order") is None
    assert table.possible_optout("stop it") == "STOP"
    assert TABLE.possible_optout("cancel my order") == "CANCEL"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('NETWORK MSG: You replied with the word "stop"', True),
        ("  network msg: unstop", True),
        ("Network Msg", True),
        ("NETWORK", False),
        ("Re: NETWORK MSG", False),
        ("", False),
    ],
)
def test_is_network_msg(text: str, expected: bool) -> None:
    assert is_network_msg(text) is expected


def test_custom_op_and_language_sets() -> None:
    settings = OptoutSettings.model_validate(
        {
            "custom_ops": [
                {"name": "nopromo", "keywords": ["NOPROMO"], "reply": "No more promos."}
            ],
            "languages": [
                {
                    "language": "es",
                    "countries": ["MX"],
                    "stop": ["PARAR", "DETENER"],
                    "replies": {"stop": "Te has dado de baja. Responde START para volver."},
                },
                {"language": "fr", "stop": ["ARRETER"], "start": ["DEBUT"]},
            ],
        }
    )
    table = KeywordTable(settings)
    assert table.classify("no promo") is None
    custom = table.classify("NoPromo")
    assert custom is not None and custom.op == "nopromo"
    assert table.classify("parar", "US") is None  # only for Mexican mobiles
    spanish = table.classify("¡Parar!", "MX")
    assert spanish == Match("stop", "PARAR", "es", frozenset({"MX"}))
    french = table.classify("Début", "CA")
    assert french is not None and french.op == "start" and french.language == "fr"
    assert table.classify("arrêter") is not None
    assert table.possible_optout("parar por favor") == "PARAR"


def test_carrier_op() -> None:
    assert TABLE.carrier_op(" stop ") == "stop"
    assert TABLE.carrier_op("Unstop") == "start"
    assert TABLE.carrier_op("START") == "start"
    assert TABLE.carrier_op("yes") is None
    assert TABLE.carrier_op("quit") is None


def test_long_mo_is_never_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    """21k x U+FDFA (NFKC x18): refused by length before any normalising, and once per MO."""
    import gateway.policy.keywords as kw
    from gateway.policy.decide import MoContext, decide_mo

    settings = OptoutSettings(possible_optout_acts=True)
    table = KeywordTable(settings)
    seen: list[int] = []
    real = kw._fold
    monkeypatch.setattr(kw, "_fold", lambda text: (seen.append(len(text)), real(text))[1])
    ctx = MoContext("+14155550123", "+14155550100")
    assert decide_mo("\ufdfa" * 21_000, False, ctx, table, settings).op is None
    assert seen == []
    assert decide_mo(" " * 5000 + "stop ", False, ctx, table, settings).op == "stop"  # trimmed first
    seen.clear()
    decide_mo("please stop now", False, ctx, table, settings)  # classify and near-miss share one pass
    assert len(seen) <= 3 and max(seen) <= kw.MAX_KEYWORD_TEXT
