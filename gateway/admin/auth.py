"""Bearer tokens of the admin HTTP API, each with a role (`read` or `write`).

Tokens come from the settings (`http.api_tokens`) or from files, re-read on reload (prepare); every
presented token is compared with every configured one in constant time (hmac.compare_digest),
so neither a match nor its position shows in the timing. No token configured: the API is off.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import MIN_API_TOKEN
from gateway.errors import ConfigError

ROLES = ("read", "write")


@dataclass(frozen=True, slots=True)
class Grant:
    name: str
    role: str

    def allows(self, role: str) -> bool:
        return self.role == "write" or self.role == role


class ApiTokens:
    def __init__(self, entries: Sequence[Any]) -> None:
        self.entries = list(entries)
        self.tokens = _load(self.entries)  # ConfigError when a file does not load: before anything starts

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def prepare(self, entries: Sequence[Any]) -> Callable[[], None]:
        """The tokens of entries (token files re-read), built aside; ConfigError when one fails (the
        old tokens stay). The returned commit swaps them in (reload)."""
        fresh_entries = list(entries)
        fresh = _load(fresh_entries)

        def commit() -> None:
            self.entries, self.tokens = fresh_entries, fresh

        return commit

    def grant(self, headers: dict[str, str]) -> Grant | None:
        """The grant of the request's bearer token; None when it has none or an unknown one."""
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        presented = credential.strip().encode()
        found = None
        for token, grant in self.tokens:  # every one, match or not
            if hmac.compare_digest(presented, token) and found is None:
                found = grant
        return found


def _load(entries: Sequence[Any]) -> list[tuple[bytes, Grant]]:
    tokens = []
    for i, entry in enumerate(entries):
        where = f"http.api_tokens[{i}]"
        if entry.token is not None:
            secret = entry.token.get_secret_value().strip()
        else:
            try:
                secret = entry.token_file.read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{where}.token_file: {exc}") from None
            if len(secret) < MIN_API_TOKEN:
                raise ConfigError(f"{where}.token_file {entry.token_file}: "
                                  f"a token has at least {MIN_API_TOKEN} characters")
        tokens.append((secret.encode(), Grant(entry.name or f"token{i}", entry.role)))
    return tokens
