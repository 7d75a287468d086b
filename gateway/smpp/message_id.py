"""Carrier message ids as the gateway keys its receipt routes (`carrier.message_id_format`).

Carriers write one message's id differently in different places: hexadecimal in submit_sm_resp and
decimal in the receipt text (`id:` of SMPP 3.4 Appendix B), zero padded, upper or lower case.
Both sides are brought to one key before they are compared:

- `exact`: the bytes as received (the default: ids may be case-sensitive).
- `hex`: ids in submit_sm_resp, in the receipted_message_id TLV and in cancel_sm/query_sm/replace_sm
  are hexadecimal; the `id:` of a receipt text is decimal (Appendix B), or hexadecimal when it holds a-f.
- `decimal`: every id is decimal.

For `hex` and `decimal` a number's key is its value in decimal digits (case and leading zeros do not
count); an id that is not a number in that base keys as its lower-case text without leading zeros,
behind a `~` so it never equals a number's key.

An id longer than MAX_MESSAGE_ID octets (SMPP 3.4's message_id is at most 65 octets) is no id a
carrier assigned: it is never read as a number (no int() of thousands of digits) and the receipt
router treats it as unknown (`valid`).
"""

from __future__ import annotations

from collections.abc import Callable

FORMATS = ("exact", "hex", "decimal")
_HEX = b"0123456789abcdef"

Keyer = Callable[[bytes], bytes]
MAX_MESSAGE_ID = 65


def valid(message_id: bytes) -> bool:
    """Short enough to be an id a carrier assigned."""
    return len(message_id) <= MAX_MESSAGE_ID


def _number_key(message_id: bytes, base: int) -> bytes | None:
    if len(message_id) > MAX_MESSAGE_ID:
        return None
    digits = message_id.lower().lstrip(b"0")
    if not digits:
        return b"0" if message_id else None
    if base == 10 and not digits.isdigit():
        return None
    if base == 16 and digits.translate(None, _HEX):
        return None
    return b"%d" % int(digits, base)


def _text_key(message_id: bytes) -> bytes:
    return b"~" + message_id.lower().lstrip(b"0")


def _exact(message_id: bytes) -> bytes:
    return message_id


def _hex(message_id: bytes) -> bytes:
    return _number_key(message_id, 16) or _text_key(message_id)


def _decimal(message_id: bytes) -> bytes:
    return _number_key(message_id, 10) or _text_key(message_id)


def _decimal_or_hex(message_id: bytes) -> bytes:
    return _number_key(message_id, 10) or _number_key(message_id, 16) or _text_key(message_id)


_SUBMITTED: dict[str, Keyer] = {"exact": _exact, "hex": _hex, "decimal": _decimal}
_TEXT: dict[str, Keyer] = {"exact": _exact, "hex": _decimal_or_hex, "decimal": _decimal}


def submitted_keyer(fmt: str) -> Keyer:
    """Key of an id as the carrier returned it (submit_sm_resp; also receipted_message_id, cancel_sm...)."""
    return _SUBMITTED[fmt]


def text_keyer(fmt: str) -> Keyer:
    """Key of the `id:` in a receipt's text."""
    return _TEXT[fmt]
