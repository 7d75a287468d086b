"""Every Prometheus metric, defined once.

Hot-path counters are plain ints in `Stats` (no locks, no label lookups per message);
a custom collector turns them into Prometheus families at scrape time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.smpp.pdu import COMMAND_NAMES, command_name

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Stats:
    """Plain counters the event loop bumps; read only by the collector."""

    def __init__(self) -> None:
        # (side, direction) -> the 4 command_id bytes of the header -> count
        self.pdus: dict[tuple[str, str], dict[bytes, int]] = {}
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.esme_sessions: defaultdict[str, int] = defaultdict(int)
        self.carrier_bound = 0
        self.inflight: dict[str, int] = {"esme": 0, "carrier": 0}

    def pdu_counter(self, side: str, direction: str) -> dict[bytes, int]:
        """The counter a connection bumps per PDU, keyed by the raw command_id bytes (see count_new)."""
        return self.pdus.setdefault((side, direction), {})


OTHER_COMMAND = b"\xff\xff\xff\xff"  # every command id SMPP 3.4 does not define, as one series
_KNOWN_KEYS = frozenset(command_id.to_bytes(4, "big") for command_id in COMMAND_NAMES)
MAX_COMMAND_KEYS = len(_KNOWN_KEYS) + 1  # a counter never holds more keys than this


def count_new(counts: dict[bytes, int], key: bytes) -> None:
    """First PDU of a known command id, or any PDU of an unknown one: known ids always get their
    own key; unknown ids all count under OTHER_COMMAND, so random ids cannot grow the map (nor
    push the known ones out)."""
    if key not in _KNOWN_KEYS:
        key = OTHER_COMMAND
    counts[key] = counts.get(key, 0) + 1


class _StatsCollector(Collector):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        s = self.stats
        pdus = CounterMetricFamily(
            "gateway_pdus", "SMPP PDUs by side, direction and command", labels=["side", "direction", "command"]
        )
        for (side, direction), counts in list(s.pdus.items()):
            merged: defaultdict[str, int] = defaultdict(int)
            for raw_id, n in list(counts.items()):
                command_id = int.from_bytes(raw_id, "big")
                merged[command_name(command_id) if command_id in COMMAND_NAMES else "unknown"] += n
            for name, n in merged.items():
                pdus.add_metric([side, direction, name], n)
        yield pdus
        sessions = GaugeMetricFamily("gateway_esme_sessions", "bound application sessions", labels=["account"])
        for account, n in list(s.esme_sessions.items()):
            sessions.add_metric([account], n)
        yield sessions
        yield GaugeMetricFamily("gateway_carrier_sessions_bound", "bound carrier sessions", value=s.carrier_bound)
        inflight = GaugeMetricFamily("gateway_inflight", "requests awaiting a response", labels=["side"])
        for side, n in s.inflight.items():
            inflight.add_metric([side], n)
        yield inflight
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip(LATENCY_BUCKETS, s.latency_counts):
            acc += n
            buckets.append((repr(bound), acc))
        acc += s.latency_counts[-1]
        buckets.append(("+Inf", acc))
        yield HistogramMetricFamily(
            "gateway_request_latency_seconds",
            "application request to response latency",
            buckets=buckets,
            sum_value=s.latency_sum,
        )


class Metrics:
    """The registry and the (rarely bumped) labelled metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stats = Stats()
        self.registry.register(_StatsCollector(self.stats))
        r = self.registry
        self.bind_failures = Counter("gateway_bind_failures", "rejected application binds", ["reason"], registry=r)
        self.bind_lockouts = Counter(
            "gateway_bind_lockouts", "source addresses locked out after repeated failed binds", registry=r
        )
        self.bind_verify_seconds = Histogram(
            "gateway_bind_verify_seconds", "password verification per bind (scrypt for a password_hash)",
            registry=r, buckets=(0.0001, 0.001, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.connections_refused = Counter(
            "gateway_connections_refused", "application connections closed at once", ["reason"], registry=r
        )
        self.esme_connections = Gauge(
            "gateway_esme_connections", "open application connections, bound or not", registry=r
        )
        self.carrier_reconnects = Counter("gateway_carrier_reconnects", "carrier connection attempts", registry=r)
        self.carrier_tls_failures = Counter(
            "gateway_carrier_tls_failures", "carrier TLS handshakes that failed", ["reason"], registry=r
        )
        self.config_reloads = Counter("gateway_config_reloads", "SIGHUP reloads", ["result"], registry=r)
        self.carrier_timeouts = Counter("gateway_carrier_timeouts", "requests the carrier never answered", registry=r)
        self.optout_events = Counter(
            "gateway_optout_events", "opt-out engine events", ["op", "number_type"], registry=r
        )
        self.mt_rejected = Counter("gateway_mt_rejected", "MT refused by the gateway", ["reason"], registry=r)
        self.rejected_receipts = Counter(
            "gateway_rejected_receipts", "block_mode receipt: REJECTD receipts by result", ["result"], registry=r
        )
        self.autoreplies = Counter("gateway_autoreplies", "auto-replies sent", ["op", "result"], registry=r)
        self.blocks = Gauge("gateway_blocks", "blocks in the in-memory index", ["kind"], registry=r)
        self.index_bytes = Gauge("gateway_index_bytes", "bytes the in-memory block index holds (packed keys, "
                                 "Bloom filter, pending changes, counterpart ids)", registry=r)
        self.store_errors = Counter("gateway_store_errors", "store operations that failed", registry=r)
        self.outbox_stored = Counter("gateway_outbox_stored", "MO/receipts kept in the outbox", registry=r)
        self.outbox_delivered = Counter(
            "gateway_outbox_delivered", "outbox rows finished", ["result"], registry=r
        )
        self.store_latency = Histogram(
            "gateway_store_latency_seconds", "store operations on the MO path", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.mo_unrouted = Counter(
            "gateway_mo_unrouted", "deliver_sm answered with a temporary status", ["reason"], registry=r
        )
        self.receipts_held = Counter(
            "gateway_receipts_held", "receipts parked for their route, by how the hold ended", ["outcome"], registry=r
        )
        self.cluster_instances = Gauge(
            "gateway_cluster_instances", "live gateways on the store (heartbeats), this one included", registry=r
        )
        self.cluster_share = Gauge("gateway_cluster_share", "fraction of every limit this gateway takes", registry=r)
        self.cluster_heartbeat_failures = Counter(
            "gateway_cluster_heartbeat_failures", "heartbeats the store did not answer (share frozen)", registry=r
        )
        self.cluster_instances.set(1)
        self.cluster_share.set(1.0)
        self.limit_rate = Gauge(
            "gateway_limit_rate", "effective rate of each limit (per second; this gateway's share)", ["limit"],
            registry=r,
        )
        self.carrier_throttled = Counter(
            "gateway_carrier_throttled", "carrier answers that asked us to slow down, by status", ["status"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
