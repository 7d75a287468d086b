"""SIGHUP: re-read what can change without a restart, part by part, between PDUs.

Today the parts are the TLS certificate and key files of every listener and of the carrier
leg, and the metrics token file. Each part builds its new state aside and swaps it in only
when that succeeded: a part that fails keeps what it had and is logged, the others still
reload. Sessions already up are never touched. Later parts (accounts, keywords, limits from
the TOML file) register here the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.metrics import Metrics

log = logging.getLogger(__name__)


class Reloader:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.parts: list[tuple[str, Callable[[], None]]] = []

    def add(self, name: str, reload: Callable[[], None]) -> None:
        """`reload()` raises (ConfigError, OSError, ValueError, ssl.SSLError) to keep the old state."""
        self.parts.append((name, reload))

    def reload(self) -> bool:
        """Every part; True when all of them took the new files."""
        failed = []
        for name, reload in self.parts:
            try:
                reload()
            except Exception as exc:  # noqa: BLE001 - the old state stays; the message names the file
                failed.append(name)
                log.error("reload_failed", extra={"part": name, "error": str(exc) or type(exc).__name__})
        self.metrics.config_reloads.labels("failed" if failed else "ok").inc()
        log.info("reloaded", extra={"parts": [n for n, _ in self.parts], "failed": failed})
        return not failed
