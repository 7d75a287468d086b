"""Times the operator CLI accepts for --since/--until and created_at."""

from __future__ import annotations

import pytest

from gateway.admin_rows import RowError, parse_time


@pytest.mark.parametrize("text, expected", [
    ("1700000000", 1700000000.0),
    ("1700000000.5", 1700000000.5),
    ("2024-05-01", 1714521600.0),
    ("20240501", 1714521600.0),  # compact ISO date, not 1970's seconds
    ("2024-05-01T00:00:00Z", 1714521600.0),
    ("2024-05-01T02:00:00+02:00", 1714521600.0),
])
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, "--since") == expected


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(RowError, match="--since 'yesterday'"):
        parse_time("yesterday", "--since")
