"""Cluster shares, pure: how many gateways are live, and the fraction of every limit this one takes.

Each gateway on a shared store keeps a heartbeat row (its id, when it was last seen, on the
store's clock). A row seen within ``missing_after`` seconds of the store's ``now`` is a live
gateway; this one always counts itself. With ``live`` gateways each takes ``1 / live`` of every
account and carrier limit.

A heartbeat the store did not answer changes nothing (``failed``): the share is frozen at its
last value, never 0 and never the whole limit because rows could not be read. After such a
failure the next ``missing_heartbeats`` answers may raise the count but not lower it: the
other gateways' rows went stale in the same outage and their heartbeats are on their way; one
that really went away drops out after that hold.

Values and ``now`` in, the new share out; no sockets, tasks or clock reads here.
"""

from __future__ import annotations

from collections.abc import Iterable


def live_count(instance_id: str, rows: Iterable[tuple[str, float]], now: float, missing_after: float) -> int:
    """This instance plus every other row (id, last_seen) seen within missing_after of now."""
    return 1 + sum(1 for row_id, seen in rows if row_id != instance_id and now - seen <= missing_after)


def share_of(live: int) -> float:
    """The fraction of a limit each of live gateways takes."""
    return 1.0 / max(1, live)


class ClusterView:
    """One gateway's view of the cluster, fed by its heartbeats."""

    def __init__(self, instance_id: str, heartbeat_interval: float, missing_heartbeats: int = 3) -> None:
        self.instance_id = instance_id
        self.missing_after = heartbeat_interval * missing_heartbeats
        self._hold_after_failure = missing_heartbeats
        self.live = 1
        self.share = 1.0
        self.failing = False  # the last heartbeat got no answer
        self._hold = 0  # answers left during which the count may not fall
        self._observed = False

    def observe(self, now: float, rows: Iterable[tuple[str, float]]) -> float | None:
        """A heartbeat answered at now (store clock) with rows (id, last_seen): the new share,
        or None when it is unchanged. The first answer always returns the share."""
        live = live_count(self.instance_id, rows, now, self.missing_after)
        if self._hold > 0:
            self._hold -= 1
            live = max(live, self.live)
        self.failing = False
        first, self._observed = not self._observed, True
        if live == self.live and not first:
            return None
        self.live = live
        self.share = share_of(live)
        return self.share

    def failed(self) -> None:
        """A heartbeat the store did not answer: keep the share, hold the count after recovery."""
        self.failing = True
        self._hold = self._hold_after_failure
