"""Admin API tokens: configuration checks, roles, constant-time look-up, files re-read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.admin.auth import ApiTokens
from gateway.config import load_settings
from gateway.errors import ConfigError

READ = "r" * 16
WRITE = "w" * 16


def tokens(*entries: dict[str, Any]) -> ApiTokens:
    return ApiTokens(load_settings(None, http={"api_tokens": list(entries)}).http.api_tokens)


@pytest.mark.parametrize("entry, problem", [
    ({"token": "short", "role": "write"}, "at least 16 characters"),
    ({"role": "read"}, "set token or token_file"),
    ({"token": READ, "token_file": "/x", "role": "read"}, "set token or token_file"),
    ({"token": READ, "role": "admin"}, "http.api_tokens.0.role"),
    ({"token": READ, "colour": "red"}, "colour"),
])
def test_bad_token_entries(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings(None, http={"api_tokens": [entry]})


def test_roles_and_unknown_tokens() -> None:
    t = tokens({"name": "dash", "token": READ}, {"token": WRITE, "role": "write"})
    read, write = t.grant({"authorization": f"Bearer {READ}"}), t.grant({"authorization": f"bearer {WRITE}"})
    assert read is not None and read.name == "dash" and read.allows("read") and not read.allows("write")
    assert write is not None and write.name == "token1" and write.allows("write") and write.allows("read")
    for header in ({}, {"authorization": READ}, {"authorization": f"Basic {READ}"},
                   {"authorization": f"Bearer {READ}x"}, {"authorization": "Bearer "}):
        assert t.grant(header) is None
    assert not tokens().enabled and tokens().grant({"authorization": "Bearer "}) is None


def test_token_file_reread_and_a_bad_one_keeps_the_old(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{WRITE}\n")
    t = tokens({"token_file": str(path), "role": "write"})
    assert t.grant({"authorization": f"Bearer {WRITE}"}) is not None
    path.write_text("too short\n")
    with pytest.raises(ConfigError, match="at least 16"):
        t.prepare(t.entries)  # a reload re-reads the files aside: the failure changes nothing
    assert t.grant({"authorization": f"Bearer {WRITE}"}) is not None
    path.write_text(f"{READ}\n")
    t.prepare(t.entries)()
    assert t.grant({"authorization": f"Bearer {WRITE}"}) is None
    assert t.grant({"authorization": f"Bearer {READ}"}) is not None
    path.unlink()
    with pytest.raises(ConfigError, match="token_file"):
        tokens({"token_file": str(path)})
