"""Ambiguous alphabets: data_coding 0 read under every candidate alphabet, the keyword wins.

Many US SMSCs send data_coding 0 as ASCII or Latin-1, not GSM 03.38 (optout.smsc_default_alphabets).
The readings differ only in punctuation and symbols (GSM 0x00 is '@', 0x02 '$', 0x09 'ç'; ASCII
0x09 is a tab, 0x7B '{' is GSM 'ä'), and a missed opt-out costs far more than an extra one: the
reading that makes the MO a STOP wins, then a program stop keyword (an opt-out of one program),
then any other keyword (a program start keyword too), then a possible opt-out, then the first
candidate. Pure.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy.keywords import KeywordTable
from gateway.policy.text import DC_DEFAULT, DecodedText, decode_text

Reading = tuple[str, DecodedText]  # (alphabet, decoded)


def decode_readings(data_coding: int, esm_class: int, payload: bytes, alphabets: tuple[str, ...],
                    has_sar: bool = False) -> list[Reading]:
    """One reading per candidate alphabet for data_coding 0, else the one reading data_coding names."""
    candidates = alphabets if data_coding == DC_DEFAULT else alphabets[:1]
    return [(a, decode_text(data_coding, esm_class, payload, a, has_sar)) for a in candidates]


ProgramOp = Callable[[str], str | None]  # text -> "stop" | "start" of a program keyword, None


def best_reading(readings: list[Reading], table: KeywordTable, region: str | None,
                 toll_free: bool = False, program_op: ProgramOp | None = None) -> Reading:
    """The reading that counts (see the module docstring); the first on ties. program_op: the
    texted account's program keywords (None: it has none)."""
    scores = [_score(decoded.text, table, region, toll_free, program_op) for _, decoded in readings]
    return readings[scores.index(max(scores))]


def _score(text: str | None, table: KeywordTable, region: str | None, toll_free: bool,
           program_op: ProgramOp | None) -> int:
    if text is None:
        return -1
    text = text.replace("\x00", "")
    carrier = table.carrier_op(text) if toll_free else None
    match = table.classify(text, region)
    op = carrier or (match.op if match is not None else None)
    if op == "stop":
        return 4
    program = program_op(text) if program_op is not None else None
    if program == "stop":
        return 3
    if op is not None or program is not None:
        return 2
    return 1 if table.possible_optout(text) is not None else 0
