"""Bind lockout per source address: `threshold` failed binds within `window` seconds lock the
address out for `duration` seconds (every bind refused, a correct one too). Exempt networks are
never locked out. Also caps binds under verification per address, so one address cannot make the
gateway run many password hashes at once before its failures are counted."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from gateway.limits.networks import Network, contains

MAX_TRACKED = 100_000  # addresses with recent failures kept; the oldest are forgotten beyond it


class Admission(Enum):
    OK = "ok"
    LOCKED = "locked_out"
    BUSY = "busy"  # as many binds of this address under verification as the threshold


class BindLockout:
    def __init__(self, threshold: int, window: float, duration: float, exempt: Sequence[Network] = (),
                 max_tracked: int = MAX_TRACKED) -> None:
        self.threshold = threshold
        self.window = window
        self.duration = duration
        self.exempt = tuple(exempt)
        self.max_tracked = max_tracked
        self._failures: dict[str, list[float]] = {}
        self._locked: dict[str, float] = {}  # address -> locked until
        self._pending: dict[str, int] = {}

    def is_exempt(self, ip: str) -> bool:
        return bool(self.exempt) and contains(self.exempt, ip)

    def locked(self, ip: str, now: float) -> bool:
        until = self._locked.get(ip)
        if until is None:
            return False
        if now < until:
            return True
        del self._locked[ip]
        return False

    def admit(self, ip: str, now: float, costly: bool = True) -> Admission:
        """May a bind from ip be verified now? costly: it needs a password hash computed (not a
        remembered or shared one); those are capped per address and pending until `finish`."""
        if self.is_exempt(ip):
            return Admission.OK
        if self.locked(ip, now):
            return Admission.LOCKED
        if costly:
            if self._pending.get(ip, 0) >= self.threshold:
                return Admission.BUSY
            self._pending[ip] = self._pending.get(ip, 0) + 1
        return Admission.OK

    def finish(self, ip: str, now: float, failed: bool, costly: bool = True) -> bool:
        """The end of an admitted bind; True when this failure starts a lockout."""
        if costly:
            pending = self._pending.get(ip, 0) - 1
            if pending > 0:
                self._pending[ip] = pending
            else:
                self._pending.pop(ip, None)
        return self.failed(ip, now) if failed else False

    def failed(self, ip: str, now: float) -> bool:
        if self.is_exempt(ip):
            return False
        recent = [t for t in self._failures.get(ip, ()) if now - t < self.window]
        recent.append(now)
        if len(recent) >= self.threshold:
            self._failures.pop(ip, None)
            self._locked[ip] = now + self.duration
            _bound(self._locked, self.max_tracked)
            return True
        self._failures[ip] = recent
        _bound(self._failures, self.max_tracked)
        return False

    def prune(self, now: float) -> None:
        """Forget failures older than the window and lockouts that ran out."""
        self._failures = {ip: ts for ip, ts in self._failures.items() if now - ts[-1] < self.window}
        self._locked = {ip: until for ip, until in self._locked.items() if now < until}

    def tracked(self) -> int:
        return len(self._failures) + len(self._locked)


def _bound(table: dict[str, Any], limit: int) -> None:
    while len(table) > limit:
        del table[next(iter(table))]
