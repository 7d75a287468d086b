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


SEPARATORS = " -./()"  # what carriers strip from a dialled number
_STRIP = str.maketrans("", "", SEPARATORS)


def _international_prefix(digits: str, ton: int, plan: NumberPlan) -> str | None:
    """The digits after an international (IDD) prefix: 00 everywhere, 011 in NANP and under TON 1
    (no country code begins with 0, so there it cannot be anything else)."""
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("011") and (ton == TON_INTERNATIONAL or plan.cc == "1"):
        return digits[3:]
    return None


def _to_e164(ton: int, digits: str, plus: bool, national_format: bool, plan: NumberPlan) -> str:
    if plus:
        return digits
    after_idd = _international_prefix(digits, ton, plan)
    if after_idd is not None:
        return after_idd
    if national_format or ton == TON_NATIONAL:  # "(415) 555-0123" is national whatever the TON says
        return _national(digits, plan)
    if ton == TON_INTERNATIONAL:
        return digits
    # unknown (0), alphanumeric with digits (5), network-specific, subscriber, abbreviated:
    # national when the length says so, else international, as carriers read them
    if len(digits) in plan.national_lengths or (
        plan.trunk_prefix
        and digits.startswith(plan.trunk_prefix)
        and len(digits) - len(plan.trunk_prefix) in plan.national_lengths
    ):
        return _national(digits, plan)
    return digits


def parse_number(ton: int, addr: bytes | str, plan: NumberPlan) -> tuple[str | None, bool]:
    """(E.164 digits without '+' or None, whether the address looks like a number).

    A carrier's reading: separators (space - . / parentheses) stripped, '+' or an international
    prefix (00, 011) means international, "(0)" after '+cc' is dropped, parentheses mean a national
    number, TON 5 with digits is a number like TON 0. Looks like a number: more than
    MAX_SHORT_CODE digits in it, or bytes that are not ASCII. (None, True) is a number we cannot
    normalise: refuse it, never forward it unchecked. (None, False): alphanumeric or short code.
    """
    text = _address(addr)
    if text is None:
        return None, True  # not ASCII: nothing a carrier may read as anything else can be checked
    if not text.isascii():
        return None, True
    if text.startswith("+"):
        text = text.replace("(0)", "", 1)
    compact = text.translate(_STRIP)
    plus = compact.startswith("+")
    digits = compact[1:] if plus else compact
    if not digits.isdigit():
        return None, sum(c.isdigit() for c in text) > MAX_SHORT_CODE
    if len(digits) <= MAX_SHORT_CODE:
        return None, False
    number = _to_e164(ton, digits, plus, "(" in text, plan)
    if len(number) > MAX_E164 or len(number) <= MAX_SHORT_CODE or number[0] == "0":
        return None, True
    return number, True


def international_reading(ton: int, addr: bytes | str, plan: NumberPlan) -> int | None:
    """The other key of an ambiguous destination: for a TON other than international (1) and
    national (2), digits with no '+', no international prefix and no parentheses that parse_number
    read as national by their length ("6581234567" TON 0 is +16581234567) may also be an
    international number (+6581234567); that reading as an int when it differs, else None.
    MT refuses when either reading is blocked; MO keys by parse_number's reading alone."""
    if ton == TON_INTERNATIONAL or ton == TON_NATIONAL:
        return None
    text = _address(addr)
    if text is None or not text.isascii() or "(" in text:
        return None
    digits = text.translate(_STRIP)
    if not digits.isdigit() or len(digits) <= MAX_SHORT_CODE or len(digits) > MAX_E164 or digits[0] == "0":
        return None
    return None if _to_e164(ton, digits, False, False, plan) == digits else int(digits)


def e164_digits(ton: int, addr: bytes | str, plan: NumberPlan) -> str | None:
    """E.164 digits without '+', or None for alphanumeric, short-code and unreadable addresses.

    The one key MO (the mobile that texted) and MT (the destination) share: see parse_number.
    """
    return parse_number(ton, addr, plan)[0]


def originator_text(addr: bytes) -> str:
    """An originator that is no E.164 number, as the index keys it: a short code's digits
    without separators and without a leading '+' ("12-345" and "+12345" are 12345: no country
    code makes a number that short), anything else as received. Leading zeros stay: "012345"
    is another short code (carriers route short codes by their exact digits, whatever the TON)."""
    text = addr.decode("latin-1")
    compact = text.strip().translate(_STRIP)
    digits = compact[1:] if compact[:1] == "+" else compact
    return digits if digits.isascii() and digits.isdigit() else text


INVALID = -1  # mobile_key: looks like a number but cannot be normalised


def mobile_key(ton: int, addr: bytes | str, default_cc: str | NumberPlan) -> int | None:
    """The mobile's E.164 digits as an int (14155550123); None when it has no pair key
    (alphanumeric, short code); INVALID when it looks like a number we cannot normalise.

    Hot path: pass a NumberPlan (or a calling code, cached) and no phonenumbers call happens.
    """
    if ton == TON_INTERNATIONAL and type(addr) is bytes and 6 < len(addr) <= MAX_E164 and addr.isdigit() \
            and addr[0] != 0x30:
        return int(addr)  # the common case: international digits, no parsing needed
    plan = default_cc if isinstance(default_cc, NumberPlan) else plan_for_cc(default_cc)
    digits, numeric = parse_number(ton, addr, plan)
    if digits is not None:
        return int(digits)
    return INVALID if numeric else None


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
    """False for alphanumeric, non-digit and short-code addresses: no reply can reach them.
    A number written with separators (`+1 415 555 0123`) is a number: the reply mirrors it."""
    text = _address(addr)
    if ton == TON_ALPHANUMERIC or not text:
        return False
    digits = text.translate(_STRIP).removeprefix("+")
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
