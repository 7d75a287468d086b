"""Pure abuse limits: lockout counters, CIDR checks, connection caps (values and `now` in)."""

from __future__ import annotations

import pytest

from gateway.limits.connections import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, ConnectionCaps
from gateway.limits.lockout import Admission, BindLockout
from gateway.limits.networks import contains, key, parse_networks

NETS = parse_networks(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])


@pytest.mark.parametrize("ip, expected", [
    ("127.0.0.1", True), ("127.0.0.2", False), ("10.200.3.4", True), ("11.0.0.1", False),
    ("2001:db8::7", True), ("2001:db9::1", False), ("::ffff:10.1.2.3", True), ("fe80::1%eth0", False),
    ("", False), ("not-an-ip", False), ("?", False), ("10.0.0.1:2775", False)])
def test_allow_list(ip: str, expected: bool) -> None:
    assert contains(NETS, ip) is expected


def test_a_check_that_errors_denies() -> None:
    class Broken:
        def __contains__(self, item: object) -> bool:
            raise RuntimeError("boom")
    assert contains([Broken()], "10.0.0.1") is False  # type: ignore[list-item]


@pytest.mark.parametrize("bad", ["10.0.0.1/24", "10.0.0.0/33", "300.1.1.1", "localhost", ""])
def test_bad_networks_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        parse_networks([bad])


def test_address_key_is_one_spelling() -> None:
    assert key("::ffff:127.0.0.1") == "127.0.0.1"
    assert key("2001:DB8:0::1") == "2001:db8::1"


def lockout(**kw: object) -> BindLockout:
    args: dict[str, object] = {"threshold": 3, "window": 60.0, "duration": 300.0, **kw}
    return BindLockout(**args)  # type: ignore[arg-type]


def fail(lk: BindLockout, ip: str, now: float) -> bool:
    assert lk.admit(ip, now) is Admission.OK
    return lk.finish(ip, now, failed=True)


def test_threshold_failures_in_window_lock_the_address_for_the_duration() -> None:
    lk = lockout()
    assert not fail(lk, "10.0.0.1", 0.0)
    assert not fail(lk, "10.0.0.1", 10.0)
    assert fail(lk, "10.0.0.1", 20.0)  # the third: starts the lockout (logged once)
    assert lk.admit("10.0.0.1", 20.0) is Admission.LOCKED
    assert lk.admit("10.0.0.1", 319.9) is Admission.LOCKED
    assert lk.admit("10.0.0.2", 21.0) is Admission.OK  # other addresses not affected
    assert lk.admit("10.0.0.1", 320.0) is Admission.OK  # over


def test_failures_outside_the_window_do_not_add_up() -> None:
    lk = lockout()
    assert not fail(lk, "10.0.0.1", 0.0)
    assert not fail(lk, "10.0.0.1", 30.0)
    assert not fail(lk, "10.0.0.1", 61.0)  # the first one fell out of the window
    assert fail(lk, "10.0.0.1", 62.0)


def test_success_neither_counts_nor_resets() -> None:
    lk = lockout()
    fail(lk, "10.0.0.1", 0.0)
    fail(lk, "10.0.0.1", 1.0)
    assert lk.admit("10.0.0.1", 2.0) is Admission.OK
    assert not lk.finish("10.0.0.1", 2.0, failed=False)
    assert fail(lk, "10.0.0.1", 3.0)  # a good bind in between does not wipe an attacker's count


def test_exempt_networks_are_never_locked_out() -> None:
    lk = lockout(exempt=parse_networks(["10.0.0.0/24"]))
    for t in range(10):
        assert not fail(lk, "10.0.0.9", float(t))
    assert lk.admit("10.0.0.9", 10.0) is Admission.OK
    for t in range(3):
        fail(lk, "10.0.1.9", float(t))
    assert lk.admit("10.0.1.9", 3.0) is Admission.LOCKED


def test_binds_under_verification_are_capped_per_address() -> None:
    lk = lockout()
    assert [lk.admit("10.0.0.1", 0.0) for _ in range(4)] == [Admission.OK] * 3 + [Admission.BUSY]
    assert lk.admit("10.0.0.2", 0.0) is Admission.OK
    lk.finish("10.0.0.1", 0.1, failed=False)
    assert lk.admit("10.0.0.1", 0.1) is Admission.OK


def test_prune_and_bounded_memory() -> None:
    lk = lockout(max_tracked=100)
    for i in range(1000):
        fail(lk, f"10.0.{i // 256}.{i % 256}", 0.0)
    assert lk.tracked() <= 100
    lk.prune(61.0)
    assert lk.tracked() == 0


def test_connection_caps() -> None:
    caps = ConnectionCaps(max_total=3, max_per_ip=2)
    assert caps.admit("a") is None and caps.admit("a") is None
    assert caps.admit("a") == MAX_CONNECTIONS_PER_IP
    assert caps.admit("b") is None
    assert caps.admit("c") == MAX_CONNECTIONS
    caps.release("a")
    assert caps.admit("c") is None
    assert caps.total == 3 and caps.open_from("a") == 1


def test_cheap_verifications_are_not_capped() -> None:
    lk = lockout()
    for _ in range(3):
        lk.admit("10.0.0.1", 0.0)
    assert lk.admit("10.0.0.1", 0.0, costly=False) is Admission.OK  # remembered or shared: no scrypt
    assert not lk.finish("10.0.0.1", 0.0, failed=False, costly=False)
    assert lk.admit("10.0.0.1", 0.0) is Admission.BUSY
