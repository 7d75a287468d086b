"""Who may send from which source_addr: tenant isolation on MT. Pure: values in, verdicts out.

An account that owns numbers sends only from them and from the alphanumeric senders it lists
(`senders`). Any other account may send from anything no account owns, numbers and listed
senders alike. Numbers are compared as the block index keys originators (E.164 with '+', short
codes as digits: the caller normalises a source_addr with numbers.parse_number first, so
`4155550100` TON 2 and `+1 415 555 0100` are the account's `+14155550100`); alphanumeric senders
case-insensitively (`ACME` and `Acme` show the same name on a handset).
"""

from __future__ import annotations

from collections.abc import Iterable


class SenderRules:
    def __init__(self, accounts: Iterable[tuple[str, Iterable[str], Iterable[str]]]) -> None:
        """accounts: (system_id, numbers in E.164 or short-code digits, alphanumeric senders)."""
        self._own: dict[str, frozenset[str]] = {}  # accounts with numbers: everything they may use
        owners: dict[str, set[str]] = {}
        for system_id, numbers, senders in accounts:
            owned = list(numbers)
            keys = set(owned) | {s.casefold() for s in senders}
            for key in keys:
                owners.setdefault(key, set()).add(system_id)
            if owned:
                self._own[system_id] = frozenset(keys)
        self._owners = {key: frozenset(ids) for key, ids in owners.items()}

    def lists(self, system_id: str, sender: str) -> bool:
        """The account lists this alphanumeric sender (or owns this number)."""
        return system_id in self._owners.get(sender, ()) or system_id in self._owners.get(sender.casefold(), ())

    def allows(self, system_id: str, origin: str) -> bool:
        """May system_id send from origin (a normalised source_addr)?"""
        own = self._own.get(system_id)
        if own is not None:
            return origin in own or origin.casefold() in own
        owners = self._owners.get(origin) or self._owners.get(origin.casefold())
        return owners is None or system_id in owners
