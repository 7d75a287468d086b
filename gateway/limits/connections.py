"""Open application connections, bound or not: a global cap and a cap per source address."""

from __future__ import annotations

MAX_CONNECTIONS = "max_connections"
MAX_CONNECTIONS_PER_IP = "max_connections_per_ip"


class ConnectionCaps:
    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """None: counted in, call `release` when it closes. Otherwise the cap it would exceed."""
        if self.total >= self.max_total:
            return MAX_CONNECTIONS
        n = self._per_ip.get(ip, 0)
        if n >= self.max_per_ip:
            return MAX_CONNECTIONS_PER_IP
        self._per_ip[ip] = n + 1
        self.total += 1
        return None

    def release(self, ip: str) -> None:
        n = self._per_ip.get(ip, 0) - 1
        if n > 0:
            self._per_ip[ip] = n
        else:
            self._per_ip.pop(ip, None)
        self.total = max(0, self.total - 1)

    def open_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)
