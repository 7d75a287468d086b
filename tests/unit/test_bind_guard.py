"""PasswordCheck: scrypt off the event loop, successes remembered, identical binds share one
scrypt, unknown system_ids cost a scrypt too, and a job queued too long is dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway import bind_guard, credentials
from gateway.bind_guard import PasswordCheck
from gateway.config import Account

HASHED = str(credentials.hash_password(b"rightpw", n=1024))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = credentials.verify

    def counting(presented: bytes, stored: credentials.ScryptHash) -> bool:
        seen.append(presented)
        return real(presented, stored)
    monkeypatch.setattr(bind_guard.credentials, "verify", counting)
    return seen


def accounts(**kw: Any) -> list[Account]:
    return [Account(system_id="hashed", password_hash=HASHED), Account(system_id="plain", password="pw", **kw)]


async def test_success_is_remembered_failures_never(calls: list[bytes]) -> None:
    check = PasswordCheck(accounts(), max_wait=10)
    hashed = accounts()[0]
    assert await check.verify(hashed, "rightpw")
    assert await check.verify(hashed, "rightpw")
    assert not await check.verify(hashed, "wrongpw")
    assert not await check.verify(hashed, "wrongpw")
    assert calls == [b"rightpw", b"wrongpw", b"wrongpw"]
    check.close()


async def test_concurrent_identical_binds_share_one_scrypt(calls: list[bytes]) -> None:
    check = PasswordCheck(accounts(), max_wait=10)
    results = await asyncio.gather(*(check.verify(accounts()[0], "rightpw") for _ in range(10)))
    assert results == [True] * 10 and calls == [b"rightpw"]
    check.close()


async def test_unknown_system_id_costs_a_scrypt_when_hashes_are_in_use(calls: list[bytes]) -> None:
    check = PasswordCheck(accounts(), max_wait=10)
    assert not await check.verify(None, "rightpw")
    assert calls == [b"rightpw"]
    plain_only = PasswordCheck([Account(system_id="plain", password="pw")], max_wait=10)
    assert not await plain_only.verify(None, "pw")
    assert await plain_only.verify(Account(system_id="plain", password="pw"), "pw")
    assert calls == [b"rightpw"]  # plaintext accounts only: nothing to make equal
    check.close()


async def test_a_verification_queued_too_long_is_dropped(calls: list[bytes]) -> None:
    check = PasswordCheck(accounts(), max_wait=-1.0)
    with pytest.raises(TimeoutError):
        await check.verify(accounts()[0], "rightpw")
    assert calls == []
    check.close()
