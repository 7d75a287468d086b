"""A token bucket: `rate` tokens a second, at most `burst` held. Pure: the caller passes `now`.

Over any interval of T seconds a bucket lets through at most burst + rate * T tokens (plus,
once, the excess of a single request costing more than the whole burst: a full bucket lets
it through and owes the difference, so a long message is slowed, never refused forever).

The rate can change at runtime (`set_rate`): cluster shares scale every configured limit.
"""

from __future__ import annotations

import math


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        check_rate(rate, burst)
        self.rate = rate
        self.burst = burst
        self.tokens = burst  # starts full
        self.stamp = now

    def _refill(self, now: float) -> float:
        elapsed = now - self.stamp
        tokens = self.tokens
        if elapsed > 0:
            tokens = min(self.burst, tokens + elapsed * self.rate)
            self.tokens = tokens
            self.stamp = now
        return tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """True (and the tokens taken) when `cost` tokens are there, or the bucket is full.
        The hot path: the refill is inline (no call), the accounting linear in `now`."""
        burst = self.burst
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > burst:  # noqa: PLR1730 - no min() call on the hot path
            tokens = burst
        self.stamp = now
        if tokens >= cost or tokens >= burst:
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False

    def refund(self, cost: float = 1.0) -> None:
        """Tokens taken for a request that was not sent after all."""
        self.tokens = min(self.burst, self.tokens + cost)

    def delay(self, now: float, cost: float = 1.0) -> float:
        """Seconds from now until `take(cost)` would succeed (0.0: now)."""
        tokens = self._refill(now)
        need = min(cost, self.burst) - tokens
        return need / self.rate if need > 0 else 0.0

    def set_rate(self, rate: float, burst: float, now: float) -> None:
        """A new rate and burst from now on; tokens earned so far are kept (capped at the new burst)."""
        check_rate(rate, burst)
        self._refill(now)
        self.rate = rate
        self.burst = burst
        self.tokens = min(self.tokens, burst)


def check_rate(rate: float, burst: float) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number, not {rate!r}")
    if not (math.isfinite(burst) and burst >= 1):
        raise ValueError(f"burst must be at least 1, not {burst!r}")
