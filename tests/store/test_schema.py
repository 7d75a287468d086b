"""Pure helpers shared by the SQL backends."""

from __future__ import annotations

import pytest

from gateway.store.schema import parse_mobiles


@pytest.mark.parametrize("joined, expected", [
    ("+14155550100,+14155550101", [14155550100, 14155550101]),
    ("+1", [1]),
    ("14155550100,+2", [14155550100, 2]),
    ("+1415abc,+2,+", [2]),
    ("+1+2,+3", [3]),
    ("+1234567890123456789,+123456789012345678", [123456789012345678]),
    ("+١٢٣,+4", [4]),  # non-ASCII digits are not E.164
    ("", []),
])
def test_parse_mobiles(joined: str, expected: list[int]) -> None:
    assert parse_mobiles(joined) == expected
