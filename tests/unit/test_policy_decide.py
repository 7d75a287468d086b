"""decide_mo over every op, the toll-free rules, and the reply limiter / MO deduper."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.decide import (
    MoContext,
    MoDecision,
    ReplyLimiter,
    annotation_tlv,
    decide_mo,
    is_redelivery,
    mo_fingerprint,
)
from gateway.policy.keywords import KeywordTable
from gateway.policy.settings import DEFAULT_REPLIES, OptoutSettings

MOBILE, LONG_CODE, TOLL_FREE = "+14155550123", "+14155550100", "+18005550100"
STOP_R, START_R, HELP_R = DEFAULT_REPLIES["stop"], DEFAULT_REPLIES["start"], DEFAULT_REPLIES["help"]


def run(
    text: str | None,
    *,
    toll_free: bool = False,
    block: str | None = None,
    segment: bool = False,
    can_reply: bool = True,
    mobile: str | None = MOBILE,
    **config: Any,
) -> MoDecision:
    settings = OptoutSettings.model_validate(config)
    ctx = MoContext(mobile, TOLL_FREE if toll_free else LONG_CODE, toll_free, block, can_reply)
    return decide_mo(text, segment, ctx, KeywordTable(settings), settings)


def summary(d: MoDecision) -> tuple[object, ...]:
    return d.op, d.block_action, d.block_kind, d.lift_kinds, d.reply


ADD, REMOVE = "add", "remove"
OPT = ("optout",)
OPT_CARRIER = ("optout", "carrier")


@pytest.mark.parametrize(
    "text, block, expected",
    [
        ("STOP", None, ("stop", ADD, "optout", (), STOP_R)),
        (" stop. ", None, ("stop", ADD, "optout", (), STOP_R)),
        ("Stop all", None, ("stop", ADD, "optout", (), STOP_R)),
        ("ＳＴＯＰ", None, ("stop", ADD, "optout", (), STOP_R)),
        ("arrêté", None, ("stop", ADD, "optout", (), STOP_R)),
        ("STOP", "optout", ("stop", ADD, "optout", (), STOP_R)),  # repeat: store says unchanged
        ("START", "optout", ("start", REMOVE, None, OPT_CARRIER, START_R)),
        ("unstop", "optout", ("start", REMOVE, None, OPT_CARRIER, START_R)),
        ("yes", "optout", ("start", REMOVE, None, OPT, START_R)),
        ("START", None, ("start", None, None, (), None)),  # no block: no action, no reply
        ("START", "admin", ("start", None, None, (), None)),  # START never lifts admin
        ("YES", "admin", ("start", None, None, (), None)),
        ("YES", "carrier", ("start", None, None, (), None)),
        ("START", "carrier", ("start", REMOVE, None, OPT_CARRIER, START_R)),
        ("help", None, ("help", None, None, (), HELP_R)),
        ("INFO", "optout", ("help", None, None, (), HELP_R)),
        ("please don't stop", None, (None, None, None, (), None)),
        ("hello", "optout", (None, None, None, (), None)),
        ("STOP PLEASE", None, ("possible_optout", None, None, (), None)),
        ("unsubscribe me", None, ("possible_optout", None, None, (), None)),
        ('NETWORK MSG: You replied with the word "stop"', None, (None, None, None, (), None)),
    ],
)
def test_long_code(text: str, block: str | None, expected: tuple[object, ...]) -> None:
    decision = run(text, block=block)
    assert summary(decision) == expected
    assert decision.forward
    assert decision.record is (expected[0] is not None)


@pytest.mark.parametrize(
    "text, block, expected, source",
    [
        ("STOP", None, ("stop", ADD, "carrier", (), None), "carrier"),
        ("stop!", "optout", ("stop", ADD, "carrier", (), None), "carrier"),
        ("UNSTOP", "carrier", ("start", REMOVE, None, OPT_CARRIER, None), "carrier"),
        ("start", "optout", ("start", REMOVE, None, OPT_CARRIER, None), "carrier"),
        ("START", None, ("start", None, None, (), None), "carrier"),
        ("START", "admin", ("start", None, None, (), None), "carrier"),
        ("YES", "carrier", ("start", None, None, (), None), "keyword"),  # network ignores YES
        ("YES", "optout", ("start", REMOVE, None, OPT, START_R), "keyword"),
        ("QUIT", None, ("stop", ADD, "optout", (), STOP_R), "keyword"),  # like a long code
        ("CANCEL", "carrier", ("stop", ADD, "optout", (), None), "keyword"),  # reply dropped
        ("HELP", None, ("help", None, None, (), HELP_R), "keyword"),
        ("HELP", "optout", ("help", None, None, (), HELP_R), "keyword"),
        ("HELP", "carrier", ("help", None, None, (), None), "keyword"),  # network drops it
        ("NETWORK MSG: You have replied unstop", "carrier", (None, None, None, (), None), ""),
    ],
)
def test_toll_free(text: str, block: str | None, expected: tuple[object, ...], source: str) -> None:
    decision = run(text, toll_free=True, block=block, forward={"stop": "drop"}, annotate_tlv=0x1400)
    assert summary(decision) == expected
    assert decision.source == source
    assert decision.forward and not decision.annotate  # forwarded untouched


def test_carrier_rule_names_the_keyword() -> None:
    assert run("Unstop", toll_free=True, block="carrier").rule == "carrier:UNSTOP"
    assert run("stop all").rule == "stop:STOP ALL"


@pytest.mark.parametrize(
    "text, segment, reason",
    [
        (None, False, "undecodable"),
        ("STOP", True, "segment"),
        ("NETWORK MSG stop", False, "network_msg"),
    ],
)
def test_never_acted_on(text: str | None, segment: bool, reason: str) -> None:
    decision = run(text, segment=segment)
    assert decision == MoDecision(reason=reason)


def test_alphanumeric_or_short_code_mobile_has_no_pair_key() -> None:
    assert run("STOP", mobile=None) == MoDecision(reason="no_pair_key")


def test_no_reply_when_mobile_cannot_receive() -> None:
    decision = run("STOP", can_reply=False)
    assert decision.block_action == ADD and decision.reply is None


def test_start_without_block_reply_setting() -> None:
    decision = run("START", start_without_block_reply=True)
    assert summary(decision) == ("start", None, None, (), START_R)
    assert run("START", block="admin", start_without_block_reply=True).reply is None


def test_possible_optout_acts() -> None:
    decision = run("stop texting me", possible_optout_acts=True)
    assert summary(decision) == ("possible_optout", ADD, "optout", (), STOP_R)
    assert decision.rule == "possible_optout:STOP"


@pytest.mark.parametrize(
    "text, block, segment, expected",
    [
        ("hello", "optout", False, ("start", REMOVE, None, OPT, None)),
        ("part one", "optout", True, ("start", REMOVE, None, OPT, None)),
        ("hello", "carrier", False, (None, None, None, (), None)),
        ("hello", "admin", False, (None, None, None, (), None)),
        ("hello", None, False, (None, None, None, (), None)),
        ("NETWORK MSG", "optout", False, (None, None, None, (), None)),
    ],
)
def test_implicit_reopt_in(
    text: str, block: str | None, segment: bool, expected: tuple[object, ...]
) -> None:
    decision = run(text, block=block, segment=segment, implicit_reopt_in=True)
    assert summary(decision) == expected
    assert run(text, block=block, segment=segment).op is None  # off by default


def test_replies_per_country_and_language() -> None:
    config: dict[str, Any] = {
        "replies": {
            "stop": {
                "default": "You are unsubscribed. Reply START.",
                "countries": {"CA": "Vous êtes désabonné. Répondez START."},
            }
        },
        "languages": [
            {
                "language": "es",
                "stop": ["PARAR"],
                "replies": {"stop": "Te has dado de baja. Responde START."},
            }
        ],
        "custom_ops": [{"name": "nopromo", "keywords": ["NOPROMO"], "reply": "No more promos."}],
    }
    assert run("STOP", **config).reply == "You are unsubscribed. Reply START."
    assert (
        run("STOP", mobile="+14165550123", **config).reply == "Vous êtes désabonné. Répondez START."
    )
    spanish = run("parar", **config)
    assert (
        spanish.reply == "Te has dado de baja. Responde START." and spanish.rule == "stop:PARAR@es"
    )
    custom = run("NOPROMO", block="optout", **config)
    assert summary(custom) == ("nopromo", None, None, (), "No more promos.")


@pytest.mark.parametrize(
    "text, forward, annotate",
    [
        ("STOP", False, True),
        ("HELP", True, True),
        ("START", True, True),
        ("hello", True, False),
        ("stop please", True, True),
        ("NOPROMO", False, True),
    ],
)
def test_forward_and_annotate(text: str, forward: bool, annotate: bool) -> None:
    decision = run(
        text,
        block="optout",
        annotate_tlv=0x1400,
        forward={"stop": "drop", "nopromo": "drop"},
        custom_ops=[{"name": "nopromo", "keywords": ["NOPROMO"]}],
    )
    assert (decision.forward, decision.annotate) == (forward, annotate)
    assert not run(text).annotate  # annotation off by default


def test_annotation_tlv() -> None:
    assert annotation_tlv(0x1400, "stop") == b"\x14\x00\x00\x04STOP"


@given(
    st.text(max_size=80),
    st.sampled_from([None, "optout", "carrier", "admin"]),
    st.booleans(),
    st.booleans(),
)
def test_decide_total(text: str, block: str | None, toll_free: bool, segment: bool) -> None:
    decision = run(text, block=block, toll_free=toll_free, segment=segment)
    assert decision.forward or decision.op is not None
    if decision.block_action == "remove":
        assert "admin" not in decision.lift_kinds
    if toll_free and block == "carrier":
        assert decision.reply is None


def test_reply_limiter() -> None:
    limiter = ReplyLimiter(window=3600, max_entries=2)
    pair = (MOBILE, LONG_CODE, "stop")
    assert limiter.allow(pair, now=0.0)
    assert not limiter.allow(pair, now=10.0)
    assert limiter.allow((MOBILE, LONG_CODE, "help"), now=10.0)  # per op
    assert not limiter.allow(pair, now=3599.0)
    assert limiter.allow(pair, now=3600.0)
    for i in range(10):
        limiter.allow(("m", str(i), "stop"), now=4000.0)
    assert len(limiter) == 2  # bounded
    assert limiter.allow(("m", "0", "stop"), now=9000.0)
    assert len(limiter) == 1  # expired entries dropped


def test_redelivery_rule() -> None:
    stop = mo_fingerprint("STOP", b"STOP")
    last = (stop, LONG_CODE, 100.0)
    assert is_redelivery("stop", stop, LONG_CODE, last, now=101.0, window=86400)
    assert not is_redelivery("stop", stop, TOLL_FREE, last, now=101.0, window=86400)  # another number
    assert not is_redelivery("stop", mo_fingerprint("START", b""), LONG_CODE, last, 101.0, 86400)
    assert not is_redelivery("stop", stop, LONG_CODE, last, now=86500.0, window=86400)  # window over
    help_fp = mo_fingerprint("HELP", b"HELP")
    assert not is_redelivery("help", help_fp, LONG_CODE, (help_fp, LONG_CODE, 100.0), 101.0, 86400)


def test_nul_is_no_part_of_a_keyword() -> None:
    settings = OptoutSettings()
    ctx = MoContext(MOBILE, LONG_CODE)
    assert decide_mo("STOP\x00", False, ctx, KeywordTable(settings), settings).op == "stop"
    assert decide_mo("ST\x00OP", False, ctx, KeywordTable(settings), settings).op == "stop"


def test_mo_fingerprint() -> None:
    assert mo_fingerprint("STOP", b"x") == mo_fingerprint("STOP", b"y")
    assert mo_fingerprint(None, b"x") != mo_fingerprint(None, b"y")
    assert mo_fingerprint("STOP", b"x", "id1") != mo_fingerprint("STOP", b"x", "id2")
    assert mo_fingerprint("\ud800", b"") != mo_fingerprint("", b"")  # lone surrogate is fine
