"""PDU counters: raw command ids in, bounded labels out."""

from __future__ import annotations

from gateway.metrics import MAX_COMMAND_KEYS, Metrics, count_new


def test_random_command_ids_cannot_grow_the_counters() -> None:
    metrics = Metrics()
    counts = metrics.stats.pdu_counter("esme", "in")
    for command_id in range(10_000):
        key = 0x00A00000 + command_id
        try:
            counts[key] += 1
        except KeyError:
            count_new(counts, key)
    assert len(counts) <= MAX_COMMAND_KEYS + 1
    assert sum(counts.values()) == 10_000
    text = metrics.render().decode()
    assert 'gateway_pdus_total{command="unknown",direction="in",side="esme"} 10000.0' in text


def test_known_commands_get_their_names() -> None:
    metrics = Metrics()
    counts = metrics.stats.pdu_counter("carrier", "out")
    count_new(counts, 0x00000004)
    assert 'gateway_pdus_total{command="submit_sm",direction="out",side="carrier"} 1.0' in metrics.render().decode()
