"""Tenant isolation on MT sources, refusal tallies, the all-refused submit_multi status."""

from __future__ import annotations

import pytest

from gateway.enforcement import RefusalTally, all_refused_status
from gateway.policy.senders import SenderRules
from gateway.smpp import fields as F
from gateway.smpp import status as st

RULES = SenderRules([
    ("acme", ["+14155550100", "12345"], ["ACME"]),
    ("beta", ["+14155550200"], []),
    ("promo", [], ["Deals"]),  # no numbers: a listed name is owned, everything unowned is open
    ("other", [], []),
])


@pytest.mark.parametrize("system_id, origin, allowed", [
    ("acme", "+14155550100", True), ("acme", "12345", True), ("acme", "ACME", True), ("acme", "aCmE", True),
    ("acme", "+14155550200", False), ("acme", "+14155550177", False), ("acme", "Deals", False),
    ("acme", "", False),  # an account with numbers names its source
    ("beta", "+14155550200", True), ("beta", "ACME", False), ("beta", "12345", False),
    ("promo", "Deals", True), ("promo", "DEALS", True), ("promo", "+14155550177", True),
    ("promo", "+14155550100", False),
    ("other", "+14155550177", True), ("other", "Whatever", True), ("other", "", True),
    ("other", "+14155550100", False), ("other", "acme", False), ("other", "deals", False),
    ("unknown", "+14155550100", False), ("unknown", "+14155550177", True),
])
def test_allows(system_id: str, origin: str, allowed: bool) -> None:
    assert RULES.allows(system_id, origin) is allowed


def test_lists() -> None:
    assert RULES.lists("acme", "acme") and RULES.lists("promo", "Deals")
    assert not RULES.lists("other", "ACME")


def test_a_shared_name_is_usable_by_each_lister() -> None:
    rules = SenderRules([("a", [], ["Shop"]), ("b", [], ["SHOP"]), ("c", [], [])])
    assert rules.allows("a", "Shop") and rules.allows("b", "shop") and not rules.allows("c", "Shop")


def test_tally_opens_an_interval_once_and_drains_per_account() -> None:
    tally = RefusalTally()
    assert tally.add("acme", "blocked") is True
    assert tally.add("acme", "blocked", 254) is False
    assert tally.add("beta", "invalid_destination") is False
    assert tally.drain() == {"acme": {"blocked": 255}, "beta": {"invalid_destination": 1}}
    assert tally.drain() == {} and tally.add("acme", "blocked") is True


def test_all_refused_status() -> None:
    a = F.Address(1, 1, b"14155550123")
    assert all_refused_status([(a, st.ESME_RINVDSTADR), (a, st.ESME_RINVDSTADR)]) == st.ESME_RINVDSTADR
    assert all_refused_status([(a, 0x400), (a, st.ESME_RINVDSTADR)]) == st.ESME_RSUBMITFAIL


@pytest.mark.parametrize("sender", ["14155550100", "+1 415 555 0100", "", "TwelveLetter"])
def test_account_senders_are_names(sender: str) -> None:
    from gateway.config import load_settings
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="senders"):
        load_settings(None, accounts=[{"system_id": "a", "password": "p", "senders": [sender]}])
    assert load_settings(None, accounts=[{"system_id": "a", "password": "p", "senders": ["ACME"]}])
