"""Cluster shares, the asyncio shell: heartbeats on a shared store, this gateway's share out.

On a store several gateways share (PostgreSQL) every gateway upserts its heartbeat row each
``cluster.heartbeat_interval``; ``limits.cluster.ClusterView`` turns the rows into the fraction
of every account and carrier limit this gateway takes, handed to ``on_share`` (app wires it to
the limits) at start and whenever it changes, and shown as ``gateway_cluster_instances`` and
``gateway_cluster_share``. A clean stop deletes the row, so the others take the whole at their
next heartbeat. On SQLite (one instance) nothing is sent: the share is 1.0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable

from gateway.config import Cluster
from gateway.errors import StoreError
from gateway.limits.cluster import ClusterView
from gateway.metrics import Metrics
from gateway.store.base import Store

log = logging.getLogger(__name__)
FORGET_AFTER = 3600.0  # rows of gateways gone this long are deleted by the others' heartbeats
LEAVE_TIMEOUT = 2.0


def _ignore(_fraction: float) -> None:
    return None


class ClusterShare:
    """This gateway's membership: its heartbeat task and its current share."""

    def __init__(self, settings: Cluster, metrics: Metrics) -> None:
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.interval = settings.heartbeat_interval
        self.view = ClusterView(self.instance_id, settings.heartbeat_interval, settings.missing_heartbeats)
        self.metrics = metrics
        self.on_share: Callable[[float], None] = _ignore  # fraction of every limit, 1.0 = whole
        self.task: asyncio.Task[None] | None = None
        self.answered = 0  # heartbeats the store answered
        self._store: Store | None = None

    @property
    def share(self) -> float:
        return self.view.share

    @property
    def live(self) -> int:
        return self.view.live

    async def start(self, store: Store) -> None:
        """The first heartbeat, answered (StoreError otherwise: the start fails as on any store
        that cannot be read), then one every interval. On a store that is not shared: 1.0."""
        if not store.shared:
            self._publish(1.0)
            return
        self._store = store
        try:
            await self._heartbeat()
        except TimeoutError:
            raise StoreError(f"cluster heartbeat: no answer within {self.view.missing_after:g} s") from None
        self.task = asyncio.create_task(self._run(), name="cluster-heartbeat")

    async def _heartbeat(self) -> None:
        assert self._store is not None
        async with asyncio.timeout(self.view.missing_after):  # later than that the others dropped us anyway
            beat = await self._store.heartbeat(self.instance_id, FORGET_AFTER)
        self.answered += 1
        share = self.view.observe(beat.now, ((row.id, row.last_seen) for row in beat.instances))
        if share is not None:
            log.info("cluster_share", extra={"instances": self.view.live, "share": round(share, 6)})
            self._publish(share)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._heartbeat()
            except (StoreError, TimeoutError) as exc:
                self._failed(exc)
            except Exception:  # our bug: log it, keep heartbeating
                log.exception("cluster_heartbeat_bug")

    def _failed(self, exc: BaseException) -> None:
        """The share stays as it is (never 0, never the whole limit for rows that could not be read)."""
        if not self.view.failing:
            log.warning("cluster_heartbeat_failed", extra={"error": str(exc) or type(exc).__name__,
                                                          "share": round(self.view.share, 6)})
        self.view.failed()
        self.metrics.cluster_heartbeat_failures.inc()

    def _publish(self, share: float) -> None:
        self.metrics.cluster_instances.set(self.view.live)
        self.metrics.cluster_share.set(share)
        try:
            self.on_share(share)
        except Exception:  # the limits' bug must not stop the heartbeats
            log.exception("cluster_share_hook_failed")

    async def stop(self) -> None:
        """Stop heartbeating and delete our row (the others take our share at their next heartbeat)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        store, self._store = self._store, None
        if store is None:
            return
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await store.leave(self.instance_id)
        except (StoreError, TimeoutError) as exc:  # the others drop our row when it goes stale
            log.warning("cluster_leave_failed", extra={"error": str(exc) or type(exc).__name__})
