"""limits.cluster: live gateways from heartbeat rows and the store's clock, and the share each takes."""

from __future__ import annotations

import pytest

from gateway.limits.cluster import ClusterView, live_count, share_of

ME = "me"


@pytest.mark.parametrize("rows, now, expected", [
    ([], 100.0, 1),  # our own row not read (yet): we run, so we count
    ([(ME, 100.0)], 100.0, 1),
    ([(ME, 100.0), ("b", 99.0), ("c", 97.0)], 100.0, 3),  # c seen exactly 3 s ago: still live
    ([(ME, 100.0), ("b", 99.0), ("c", 96.9)], 100.0, 2),  # c missing for more than 3 s
    ([(ME, 10.0), ("b", 100.5)], 100.0, 2),  # a row ahead of now is live; our own stale row counts once
])
def test_live_count(rows: list[tuple[str, float]], now: float, expected: int) -> None:
    assert live_count(ME, rows, now, missing_after=3.0) == expected


@pytest.mark.parametrize("live, share", [(1, 1.0), (2, 0.5), (3, 1 / 3), (0, 1.0)])
def test_share_of(live: int, share: float) -> None:
    assert share_of(live) == pytest.approx(share)


def test_first_answer_always_reports_the_share() -> None:
    view = ClusterView(ME, heartbeat_interval=1.0)
    assert view.observe(0.0, [(ME, 0.0)]) == 1.0
    assert view.observe(1.0, [(ME, 1.0)]) is None  # unchanged: no call


def test_join_and_graceful_leave_adjust_at_the_next_heartbeat() -> None:
    view = ClusterView(ME, heartbeat_interval=1.0)
    assert view.observe(0.0, [(ME, 0.0)]) == 1.0
    assert view.observe(1.0, [(ME, 1.0), ("b", 0.6)]) == 0.5  # b joined
    assert view.observe(2.0, [(ME, 2.0), ("b", 1.6), ("c", 1.9)]) == pytest.approx(1 / 3)
    assert view.observe(3.0, [(ME, 3.0), ("b", 2.6)]) == 0.5  # c deleted its row
    assert (view.live, view.share) == (2, 0.5)


def test_a_silent_gateway_drops_out_after_the_missing_heartbeats() -> None:
    view = ClusterView(ME, heartbeat_interval=1.0, missing_heartbeats=3)
    view.observe(0.0, [(ME, 0.0), ("b", 0.0)])
    for now in (1.0, 2.0, 3.0):  # b killed at 0: still counted for 3 intervals
        assert view.observe(now, [(ME, now), ("b", 0.0)]) is None
    assert view.observe(4.0, [(ME, 4.0), ("b", 0.0)]) == 1.0


def test_an_outage_freezes_the_share_and_recovery_never_jumps_to_the_whole() -> None:
    view = ClusterView(ME, heartbeat_interval=1.0, missing_heartbeats=3)
    assert view.observe(0.0, [(ME, 0.0), ("b", 0.0)]) == 0.5
    for _ in range(10):  # the store is away: nothing changes, never 0
        view.failed()
    assert (view.share, view.live, view.failing) == (0.5, 2, True)
    # back at 20: b's row is 20 s old because b could not write either; b's heartbeat follows
    assert view.observe(20.0, [(ME, 20.0), ("b", 0.0)]) is None
    assert not view.failing
    assert view.observe(21.0, [(ME, 21.0), ("b", 20.4)]) is None
    assert view.share == 0.5


def test_after_an_outage_a_gateway_that_really_left_drops_out_after_the_hold() -> None:
    view = ClusterView(ME, heartbeat_interval=1.0, missing_heartbeats=3)
    view.observe(0.0, [(ME, 0.0), ("b", 0.0)])
    view.failed()
    assert [view.observe(t, [(ME, t), ("b", 0.0)]) for t in (20.0, 21.0, 22.0)] == [None] * 3
    assert view.observe(23.0, [(ME, 23.0), ("b", 0.0)]) == 1.0


def test_after_an_outage_a_join_counts_at_once() -> None:
    view = ClusterView(ME, heartbeat_interval=1.0)
    view.observe(0.0, [(ME, 0.0)])
    view.failed()
    assert view.observe(5.0, [(ME, 5.0), ("b", 4.9)]) == 0.5  # rising is never held back


@pytest.mark.parametrize("cluster, problem", [
    ({"heartbeat_interval": 0}, "cluster.heartbeat_interval"),
    ({"heartbeat_interval": float("nan")}, "cluster.heartbeat_interval"),
    ({"heartbeat_interval": -1}, "cluster.heartbeat_interval"),
    ({"missing_heartbeats": 1}, "cluster.missing_heartbeats"),
    ({"heartbeat": 1}, "cluster.heartbeat"),
])
def test_check_config_rejects_bad_cluster_settings(cluster: dict[str, float], problem: str) -> None:
    from gateway.config import load_settings
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(None, database_url="sqlite:///x.db", cluster=cluster)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(problem + ":")
