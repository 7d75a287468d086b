"""OptoutSettings defaults and validation (reserved keywords, limits, statuses)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.policy.settings import DEFAULT_STOP, OptoutSettings


def test_defaults() -> None:
    s = OptoutSettings()
    assert s.scope == "number"
    assert s.default_region == "US"
    assert s.keywords.stop == DEFAULT_STOP
    assert s.keywords.start == ["START", "UNSTOP", "YES"]
    assert s.keywords.help == ["HELP", "INFO"]
    assert s.block_status == 0x0B and s.block_mode == "status"
    assert s.reply_window == 3600 and s.mo_dedup_window == 86400
    assert s.toll_free.carrier_stop_keywords == ["STOP"]
    assert s.toll_free.carrier_start_keywords == ["START", "UNSTOP"]
    assert s.annotate_tlv is None and not s.possible_optout_acts
    for op in ("stop", "start", "help"):
        text = s.reply_text(op, "US")
        assert text is not None and 20 <= len(text) <= 320
    assert s.forwards("stop") and s.forwards("nopromo")


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        OptoutSettings.model_validate(data)
    return str(info.value)


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"keywords": {"stop": ["QUIT"]}}, "'STOP' is reserved for op stop"),
        ({"keywords": {"start": ["YES"]}}, "'START' is reserved for op start"),
        ({"keywords": {"help": ["INFO"]}}, "'HELP' is reserved for op help"),
        ({"keywords": {"help": ["HELP", "stop"]}}, "'STOP' is reserved for op stop"),
        ({"keywords": {"start": ["START", "Quit"]}}, "'QUIT' is in both op stop and op start"),
        ({"custom_ops": [{"name": "x", "keywords": ["Help!"]}]}, "'HELP' is reserved for op help"),
        (
            {"custom_ops": [{"name": "x", "keywords": ["cancel"]}]},
            "'CANCEL' is in both op stop and op x",
        ),
        (
            {"languages": [{"language": "es", "help": ["start"]}]},
            "'START' is reserved for op start",
        ),
        ({"keywords": {"stop": ["STOP"] + [f"W{i}" for i in range(20)]}}, "at most 20"),
        ({"languages": [{"language": "es", "stop": [f"W{i}" for i in range(21)]}]}, "at most 20"),
        ({"custom_ops": [{"name": "x", "keywords": [f"W{i}" for i in range(21)]}]}, "at most 20"),
        ({"keywords": {"stop": ["STOP", " ?! "]}}, "empty once normalised"),
        ({"replies": {"stop": "Too short"}}, "20-320 characters"),
        ({"replies": {"help": "x" * 321}}, "20-320 characters"),
        ({"replies": {"help": {"default": "x" * 30, "countries": {"MX": "corto"}}}}, "20-320"),
        ({"replies": {"help": {"default": "x" * 30, "countries": {"MEX": "x" * 30}}}}, "alpha-2"),
        ({"languages": [{"language": "es", "replies": {"stop": "Baja"}}]}, "20-320"),
        ({"custom_ops": [{"name": "stop", "keywords": ["NOPROMO"]}]}, "not a built-in op"),
        (
            {"custom_ops": [{"name": "a", "keywords": ["A1"]}, {"name": "a", "keywords": ["A2"]}]},
            "unique",
        ),
        ({"forward": {"stopp": "drop"}}, "unknown op 'stopp'"),
        ({"forward": {"stop": "discard"}}, "forward"),
        ({"annotate_tlv": 0x1300}, "annotate_tlv"),
        ({"annotate_tlv": 0x4000}, "annotate_tlv"),
        ({"block_status": 0}, "block_status"),
        ({"block_status": 0x100}, "block_status"),
        ({"block_status": 0x500}, "block_status"),
        ({"scope": "planet"}, "scope"),
        ({"block_mode": "silent"}, "block_mode"),
        ({"reply_long": "udh"}, "reply_long"),
        ({"default_region": "USA"}, "alpha-2"),
        ({"smsc_default_alphabet": "klingon"}, "unknown alphabet"),
        ({"toll_free": {"extra_numbers": ["call me"]}}, "not an E.164"),
        ({"toll_free": {"carrier_start_keywords": ["STOP"]}}, "both a stop and a start"),
        ({"reply_window": -1}, "reply_window"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid(data: dict[str, Any], needle: str) -> None:
    assert needle in problem(data)


def test_twenty_keywords_allowed() -> None:
    stop = ["STOP"] + [f"W{i}" for i in range(19)]
    assert len(OptoutSettings.model_validate({"keywords": {"stop": stop}}).keywords.stop) == 20


@pytest.mark.parametrize("status", [0x01, 0x0B, 0xFF, 0x400, 0x4FF])
def test_block_status_allowed(status: int) -> None:
    assert OptoutSettings(block_status=status).block_status == status


def test_valid_customisation() -> None:
    s = OptoutSettings.model_validate(
        {
            "keywords": {"stop": ["STOP", "Arrêt"], "start": ["START"], "help": ["HELP"]},
            "custom_ops": [
                {
                    "name": "nopromo",
                    "keywords": ["NOPROMO"],
                    "reply": {
                        "default": "No more promos.",
                        "countries": {"mx": "Sin promociones."},
                    },
                },
                {"name": "silent", "keywords": ["MUTE"]},
            ],
            "languages": [
                {
                    "language": "es",
                    "countries": ["mx"],
                    "stop": ["PARAR", "STOP"],
                    "replies": {"stop": "Te has dado de baja. Responde START."},
                }
            ],
            "replies": {
                "stop": {
                    "default": "You are unsubscribed. Reply START.",
                    "countries": {"ca": "Vous êtes désabonné. Répondez START."},
                }
            },
            "forward": {"stop": "drop", "nopromo": "drop"},
            "annotate_tlv": 0x1400,
            "toll_free": {"extra_numbers": ["+1 (415) 555-0100", "14155550101"]},
            "block_status": 0x401,
        }
    )
    assert s.replies.stop.countries == {"CA": "Vous êtes désabonné. Répondez START."}
    assert s.reply_text("stop", "CA") == "Vous êtes désabonné. Répondez START."
    assert s.reply_text("stop", "US") == "You are unsubscribed. Reply START."
    assert s.reply_text("stop", None) == "You are unsubscribed. Reply START."
    assert s.reply_text("stop", "MX", "es") == "Te has dado de baja. Responde START."
    assert s.reply_text("help", "MX", "es") == s.replies.help.default
    assert s.reply_text("nopromo", "MX") == "Sin promociones."
    assert s.reply_text("nopromo", "US") == "No more promos."
    assert s.reply_text("silent", "US") is None
    assert s.reply_text("unknown", "US") is None
    assert not s.forwards("stop") and not s.forwards("nopromo") and s.forwards("help")
    assert s.toll_free.extra_numbers == ["+14155550100", "+14155550101"]


def test_config_version_stable_and_sensitive() -> None:
    a, b = OptoutSettings(), OptoutSettings()
    assert a.config_version == b.config_version
    assert len(a.config_version) == 12
    changed = OptoutSettings.model_validate({"keywords": {"stop": ["STOP"]}})
    assert changed.config_version != a.config_version
    reply = OptoutSettings.model_validate(
        {"replies": {"help": "Call 1-800-555-0100 for help. Reply STOP to end."}}
    )
    assert reply.config_version != a.config_version
    assert (
        OptoutSettings(scope="global").config_version == a.config_version
    )  # not a keyword setting


def test_nested_in_app_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import Settings

    monkeypatch.setenv("GATEWAY_OPTOUT__SCOPE", "account")
    monkeypatch.setenv("GATEWAY_OPTOUT__KEYWORDS__START", '["START", "JOIN"]')
    monkeypatch.setenv("GATEWAY_OPTOUT__ANNOTATE_TLV", "5120")
    settings = Settings.model_validate({})
    assert settings.optout.scope == "account"
    assert settings.optout.keywords.start == ["START", "JOIN"]
    assert settings.optout.annotate_tlv == 0x1400
