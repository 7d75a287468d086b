"""Every Prometheus metric, defined once.

Hot-path counters are plain ints in `Stats` (no locks, no label lookups per message);
a custom collector turns them into Prometheus families at scrape time. A bound application
session counts into its account's `AccountStats` (chosen once, at bind), so the per-account
families cost nothing per message; the totals are their sums at scrape time.
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


class AccountStats:
    """One account's application PDUs and request latency, bumped by its bound sessions."""

    __slots__ = ("latency_counts", "latency_sum", "pdus_in", "pdus_out")

    def __init__(self) -> None:
        self.pdus_in: dict[int, int] = {}  # command_id -> count (see count_new)
        self.pdus_out: dict[int, int] = {}
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0


class Stats:
    """Plain counters the event loop bumps; read only by the collector."""

    def __init__(self) -> None:
        # (side, direction) -> command_id -> count
        # (side "esme": connections not bound yet; bound ones count in `accounts`)
        self.pdus: dict[tuple[str, str], dict[int, int]] = {}
        self.accounts: dict[str, AccountStats] = {}
        self.unbound = AccountStats()  # latency of a session without an account (never in practice)
        self.esme_sessions: defaultdict[str, int] = defaultdict(int)
        self.carrier_bound = 0
        self.inflight: dict[str, int] = {"esme": 0, "carrier": 0}

    def pdu_counter(self, side: str, direction: str) -> dict[int, int]:
        """The counter a connection bumps per PDU, keyed by command_id (see count_new)."""
        return self.pdus.setdefault((side, direction), {})

    def account(self, system_id: str) -> AccountStats:
        """The counters a session of this account bumps once bound (one per account, kept)."""
        found = self.accounts.get(system_id)
        if found is None:
            found = self.accounts[system_id] = AccountStats()
        return found


OTHER_COMMAND = 0xFFFFFFFF  # every command id SMPP 3.4 does not define, as one series
_KNOWN_KEYS = frozenset(COMMAND_NAMES)
MAX_COMMAND_KEYS = len(_KNOWN_KEYS) + 1  # a counter never holds more keys than this


def count(counts: dict[int, int], key: int) -> None:
    """One PDU of command id key (the hot path inlines this)."""
    try:
        counts[key] += 1
    except KeyError:
        count_new(counts, key)


def count_new(counts: dict[int, int], key: int) -> None:
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
        accounts = list(s.accounts.items())
        yield from _pdu_families(s, accounts)
        sessions = GaugeMetricFamily("gateway_esme_sessions", "bound application sessions", labels=["account"])
        for account, n in list(s.esme_sessions.items()):
            sessions.add_metric([account], n)
        yield sessions
        yield GaugeMetricFamily("gateway_carrier_sessions_bound", "bound carrier sessions", value=s.carrier_bound)
        inflight = GaugeMetricFamily("gateway_inflight", "requests awaiting a response", labels=["side"])
        for side, n in s.inflight.items():
            inflight.add_metric([side], n)
        yield inflight
        yield from _latency_families(s, accounts)


def _pdu_families(s: Stats, accounts: list[tuple[str, AccountStats]]) -> Iterator[Any]:
    """gateway_pdus_total (every connection) and gateway_account_pdus_total (bound sessions)."""
    pdus = CounterMetricFamily(
        "gateway_pdus", "SMPP PDUs by side, direction and command", labels=["side", "direction", "command"]
    )
    merged: defaultdict[tuple[str, str, str], int] = defaultdict(int)
    for (side, direction), counts in list(s.pdus.items()):
        _merge(merged, (side, direction), counts)
    by_account = CounterMetricFamily(
        "gateway_account_pdus", "application PDUs of bound sessions by account, direction and command",
        labels=["account", "direction", "command"],
    )
    for account, a in accounts:
        for direction, counts in (("in", a.pdus_in), ("out", a.pdus_out)):
            mine: defaultdict[tuple[str, str, str], int] = defaultdict(int)
            _merge(mine, (account, direction), counts)
            for key, n in mine.items():
                by_account.add_metric(list(key), n)
                merged["esme", direction, key[2]] += n
    for key, n in merged.items():
        pdus.add_metric(list(key), n)
    yield pdus
    yield by_account


def _latency_families(s: Stats, accounts: list[tuple[str, AccountStats]]) -> Iterator[Any]:
    """gateway_request_latency_seconds (all) and gateway_account_request_latency_seconds{account}."""
    total = [0] * (len(LATENCY_BUCKETS) + 1)
    total_sum = 0.0
    latency = HistogramMetricFamily(
        "gateway_account_request_latency_seconds", "application request to response latency by account",
        labels=["account"],
    )
    for name, a in [*accounts, (None, s.unbound)]:
        bucket_counts = list(a.latency_counts)
        total = [x + y for x, y in zip(total, bucket_counts)]
        total_sum += a.latency_sum
        if name is not None:
            latency.add_metric([name], _buckets(bucket_counts), a.latency_sum)
    yield HistogramMetricFamily(
        "gateway_request_latency_seconds", "application request to response latency",
        buckets=_buckets(total), sum_value=total_sum,
    )
    yield latency


def _merge(out: defaultdict[tuple[str, str, str], int], prefix: tuple[str, str], counts: dict[int, int]) -> None:
    """Command-id counts into (prefix..., command name) keys."""
    for command_id, n in list(counts.items()):
        out[(*prefix, command_name(command_id) if command_id in COMMAND_NAMES else "unknown")] += n


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one past every bound) into cumulative Prometheus buckets."""
    buckets: list[tuple[str, float]] = []
    acc = 0
    for bound, n in zip(LATENCY_BUCKETS, counts):
        acc += n
        buckets.append((repr(bound), acc))
    buckets.append(("+Inf", acc + counts[-1]))
    return buckets


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
        self.config_reloads = Counter("gateway_config_reloads", "configuration reloads (SIGHUP, admin API)",
                                      ["result"], registry=r)
        self.config_reload_ok = Gauge("gateway_config_last_reload_successful",
                                      "1: the last reload was applied (or none yet), 0: it failed", registry=r)
        self.config_reload_ok.set(1)
        self.config_reload_time = Gauge("gateway_config_last_reload_success_timestamp_seconds",
                                        "unix time of the last applied reload (0: none since start)", registry=r)
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
        self.ready = Gauge("gateway_ready", "1 when /readyz answers 200 (carrier bound, store ready)", registry=r)
        self.certificate_expiry = Gauge(
            "gateway_certificate_expiry_seconds",
            "notAfter (unix time) of each certificate file in use: the earliest certificate in the file",
            ["listener", "role", "file"], registry=r,
        )
        self.outbox_backlog = Gauge(
            "gateway_outbox_backlog", "rows queued in the durable outbox, by account (the whole store)",
            ["account"], registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "gateway_outbox_oldest_age_seconds", "age of each account's oldest outbox row (the whole store)",
            ["account"], registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
