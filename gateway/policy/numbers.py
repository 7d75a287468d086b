"""E.164 keys for mobiles, toll-free checks and block keys by scope.

`mobile_key` is the per-submit_sm hot path: string operations and one int(), with the
numbering plan of the default country precomputed once. Everything else may call
phonenumbers (cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_ALPHANUMERIC = 5
MAX_SHORT_CODE = 6  # digits; anything this short is a short code, never a pair key
MAX_E164 = 15


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """What the hot path needs about the default country."""

    cc: str  # country calling code, "1"
    national_lengths: frozenset[int]  # national significant number lengths of mobiles
    trunk_prefix: str  # "0" in most countries, "1" in NANP, "" where none


@lru_cache(maxsize=64)
def plan_for_region(region: str) -> NumberPlan:
    """Numbering plan of an ISO alpha-2 region from phonenumbers' metadata."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if meta is None:
        raise ValueError(f"unknown region {region!r}")
    desc = meta.mobile if meta.mobile and meta.mobile.possible_length else meta.general_desc
    lengths = desc.possible_length if desc is not None else ()
    return NumberPlan(str(meta.country_code), frozenset(lengths), meta.national_prefix or "")


@lru_cache(maxsize=64)
def plan_for_cc(cc: str) -> NumberPlan:
    """Numbering plan of a country calling code's main region (1 -> US)."""
    region = phonenumbers.region_code_for_country_code(int(cc))
    if region == "ZZ":
        return NumberPlan(cc, frozenset(), "")
    return plan_for_region(region)


def _address(addr: bytes | str) -> str | None:
    if isinstance(addr, bytes):
        try:
            addr = addr.decode("ascii")
        except UnicodeDecodeError:
            return None
    return addr.strip().rstrip("\x00")


def _national(digits: str, plan: NumberPlan) -> str:
    trunk = plan.trunk_prefix
    if trunk and digits.startswith(trunk) and len(digits) - len(trunk) in plan.national_lengths:
        digits = digits[len(trunk) :]
    return plan.cc + digits


def e164_digits(ton: int, addr: bytes | str, plan: NumberPlan) -> str | None:
    """E.164 digits without '+', or None for alphanumeric, non-digit and short-code addresses."""
    text = _address(addr)
    if ton == TON_ALPHANUMERIC or not text:
        return None
    international = ton == TON_INTERNATIONAL or text[0] == "+"
    text = text.lstrip("+")
    if not (text.isascii() and text.isdigit()) or len(text) <= MAX_SHORT_CODE:
        return None
    if international:
        digits = text
    elif ton == TON_NATIONAL:
        digits = _national(text, plan)
    elif text.startswith("00"):
        digits = text[2:]
    elif len(text) in plan.national_lengths or (
        plan.trunk_prefix
        and text.startswith(plan.trunk_prefix)
        and len(text) - len(plan.trunk_prefix) in plan.national_lengths
    ):
        digits = _national(text, plan)
    else:
        digits = text
    if len(digits) > MAX_E164 or len(digits) <= MAX_SHORT_CODE or digits[0] == "0":
        return None
    return digits


def mobile_key(ton: int, addr: bytes | str, default_cc: str | NumberPlan) -> int | None:
    """The mobile's E.164 digits as an int (14155550123), or None when it has no pair key.

    Hot path: pass a NumberPlan (or a calling code, cached) and no phonenumbers call happens.
    """
    if ton == TON_INTERNATIONAL and type(addr) is bytes and 6 < len(addr) <= MAX_E164 and addr.isdigit() \
            and addr[0] != 0x30:
        return int(addr)  # the common case: international digits, no parsing needed
    plan = default_cc if isinstance(default_cc, NumberPlan) else plan_for_cc(default_cc)
    digits = e164_digits(ton, addr, plan)
    return None if digits is None else int(digits)


def e164(ton: int, addr: bytes | str, region: str) -> str | None:
    """'+14155550123', checked with phonenumbers (possible number); None when not a number."""
    digits = e164_digits(ton, addr, plan_for_region(region))
    if digits is None:
        return None
    return _checked("+" + digits)


@lru_cache(maxsize=65536)
def _checked(number: str) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65536)
def region_of(number: str) -> str | None:
    """ISO 3166 alpha-2 region of an E.164 number (the calling code's main region when the
    number is not valid anywhere), None when unknown."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region is None and parsed.country_code:  # not valid anywhere: the code's main region
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return None if region in (None, "ZZ", "001") else region


@lru_cache(maxsize=65536)
def _toll_free_type(number: str) -> bool:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(parsed) == PhoneNumberType.TOLL_FREE


def is_toll_free(number: str, extra: set[str] | frozenset[str] = frozenset()) -> bool:
    """Toll-free by phonenumbers' number type, or listed in `extra` (E.164 with '+')."""
    return number in extra or _toll_free_type(number)


def can_receive_reply(ton: int, addr: bytes | str) -> bool:
    """False for alphanumeric, non-digit and short-code addresses: no reply can reach them."""
    text = _address(addr)
    if ton == TON_ALPHANUMERIC or not text:
        return False
    digits = text.lstrip("+")
    return digits.isascii() and digits.isdigit() and len(digits) > MAX_SHORT_CODE


def counterpart_for(scope: str, originating: str, account: str) -> str:
    """Block counterpart: originating E.164 (number), account system_id (account), "" (global)."""
    if scope == "number":
        return originating
    if scope == "account":
        return account
    return ""


def block_keys(scope: str, mobile: str, originating: str, account: str) -> tuple[str, str, str]:
    """(number, counterpart, scope) in BlockKey's field order for the mobile in that scope."""
    return mobile, counterpart_for(scope, originating, account), scope
