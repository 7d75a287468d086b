"""Bind protection, the asyncio shell over gateway.limits and gateway.credentials.

- Connection caps: an application connection beyond `esme.max_connections` (or
  `max_connections_per_ip` from one address) is refused at once.
- Lockout: failed binds are counted per source address; a locked-out address has every bind
  refused without its password being looked at.
- Passwords: a `password_hash` costs one scrypt (~45 ms of CPU), run in a small thread pool so the
  event loop never stalls. A successful verification is remembered (keyed by an HMAC of the
  system_id, the presented password and the stored hash, under a key made at start), so
  applications that re-bind often pay the scrypt once per gateway start; concurrent binds with the
  same credentials share one scrypt. Failures are never cached. An unknown system_id costs a scrypt
  against a dummy hash whenever any account uses a hash, so it takes as long as a known one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from gateway import credentials
from gateway.config import Account, Esme
from gateway.limits.connections import ConnectionCaps
from gateway.limits.lockout import Admission, BindLockout
from gateway.metrics import Metrics
from gateway.smpp import status as st

if TYPE_CHECKING:
    from gateway.proxy import AccountState, Proxy
    from gateway.smpp.fields import BindRequest

log = logging.getLogger(__name__)
PRUNE_INTERVAL = 10.0
MAX_CACHED = 10_000  # remembered successful verifications; cleared when full
# what counts towards a lockout: attempts at credentials, not a full account or a gateway shutting down
CREDENTIAL_FAILURES = frozenset({"unknown_system_id", "wrong_password", "ip_not_allowed"})


class PasswordCheck:
    """max_wait: a verification still queued after this long is dropped (TimeoutError): its
    connection is gone by then (session_init_timeout), so a flood cannot build an hour of backlog."""

    def __init__(self, accounts: list[Account], max_wait: float, workers: int | None = None) -> None:
        self.max_wait = max_wait
        self._key = os.urandom(32)
        self._ok: set[bytes] = set()
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}
        self._workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self._executor: ThreadPoolExecutor | None = None
        self._dummy: credentials.ScryptHash | None = None
        self.set_accounts(accounts)

    def set_accounts(self, accounts: list[Account]) -> None:
        """The dummy hash an unknown system_id costs: like the accounts' (made again only when they
        change its parameters: one scrypt). Remembered verifications stay: they name the hash."""
        hashed = [h for h in (a.stored_hash() for a in accounts) if h is not None]
        if not hashed:
            self._dummy = None
        elif self._dummy is None or (self._dummy.n, self._dummy.r, self._dummy.p) != (
                hashed[0].n, hashed[0].r, hashed[0].p):
            self._dummy = credentials.hash_password(os.urandom(8), hashed[0].n, hashed[0].r, hashed[0].p)

    def _cache_key(self, account: Account, presented: bytes, stored: credentials.ScryptHash) -> bytes:
        material = b"\x00".join([account.system_id.encode(), presented, str(stored).encode()])
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def costly(self, account: Account | None, password: str) -> bool:
        """Would verify() start a scrypt of its own (neither remembered nor already under way)?"""
        if account is None:
            return self._dummy is not None
        stored = account.stored_hash()
        if stored is None:
            return False
        key = self._cache_key(account, password.encode("latin-1"), stored)
        return key not in self._ok and key not in self._inflight

    async def verify(self, account: Account | None, password: str) -> bool:
        presented = password.encode("latin-1")  # the bytes the bind carried
        if account is None:
            if self._dummy is not None:
                await self._scrypt(self._dummy, presented)
            else:
                credentials.equal(presented, b"\x00" * 9)
            return False
        stored = account.stored_hash()
        if stored is None:
            assert account.password is not None
            return credentials.equal(presented, account.password.get_secret_value().encode("utf-8"))
        key = self._cache_key(account, presented, stored)
        if key in self._ok:
            return True
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._scrypt(stored, presented))
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        ok = await asyncio.shield(future)
        if ok:
            if len(self._ok) >= MAX_CACHED:
                self._ok.clear()
            self._ok.add(key)
        return ok

    async def _scrypt(self, stored: credentials.ScryptHash, presented: bytes) -> bool:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="bind-scrypt")
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.max_wait
        ok = await loop.run_in_executor(self._executor, _verify_until, deadline, presented, stored)
        if ok is None:
            raise TimeoutError("password verification waited too long")
        return ok

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _verify_until(deadline: float, presented: bytes, stored: credentials.ScryptHash) -> bool | None:
    """In a worker thread: None when the deadline passed while the job waited in the queue."""
    if time.monotonic() > deadline:
        return None
    return credentials.verify(presented, stored)


class BindGuard:
    def __init__(self, proxy: Proxy, limits: Esme, metrics: Metrics) -> None:
        self.proxy = proxy
        self.metrics = metrics
        self.caps = ConnectionCaps(limits.max_connections, limits.max_connections_per_ip)
        self.lockout = BindLockout(limits.lockout_threshold, limits.lockout_window, limits.lockout_duration,
                                   limits.exempt_networks())
        self.passwords = PasswordCheck(proxy.settings.accounts, max_wait=limits.session_init_timeout)
        self._next_prune = 0.0

    # --- connections -------------------------------------------------------------
    def admit_connection(self, ip: str) -> bool:
        reason = self.caps.admit(ip)
        if reason is not None:
            self.metrics.connections_refused.labels(reason).inc()
            return False
        self.metrics.esme_connections.set(self.caps.total)
        return True

    def release_connection(self, ip: str) -> None:
        self.caps.release(ip)
        self.metrics.esme_connections.set(self.caps.total)

    # --- binds -------------------------------------------------------------------
    async def bind(self, bind: BindRequest, ip: str, tls: bool = False) -> tuple[int, AccountState | None, str]:
        """(status, account or None, reason for the metric). Raises only on our bug: the caller denies."""
        loop = asyncio.get_running_loop()
        state = self.proxy.accounts.get(bind.system_id)
        config = state.config if state else None
        costly = self.passwords.costly(config, bind.password)
        admission = self.lockout.admit(ip, loop.time(), costly)
        if admission is not Admission.OK:
            return st.ESME_RBINDFAIL, None, admission.value
        counted = True  # an error on the way counts as a failure
        try:
            started = loop.time()
            try:
                ok = await self.passwords.verify(config, bind.password)
            except TimeoutError:  # queued behind a flood past session_init_timeout: deny, count nothing
                counted = False
                return st.ESME_RBINDFAIL, None, "verify_timeout"
            self.metrics.bind_verify_seconds.observe(loop.time() - started)
            fresh = self.proxy.accounts.get(bind.system_id)
            if fresh is not None and fresh.config is not config:  # reloaded meanwhile: its credentials decide
                ok = await self.passwords.verify(fresh.config, bind.password)
            status, account, reason = self.proxy.authenticate(bind, ip, ok, tls)
            counted = reason in CREDENTIAL_FAILURES
            return status, account, reason
        finally:
            if self.lockout.finish(ip, loop.time(), counted, costly):
                self.metrics.bind_lockouts.inc()
                log.warning("bind_lockout", extra={"peer_ip": ip, "failures": self.lockout.threshold,
                                                   "window": self.lockout.window,
                                                   "duration": self.lockout.duration})

    def reconfigure(self, limits: Esme, accounts: list[Account]) -> None:
        """A reload: caps and lockout rules apply from the next connection and the next failure;
        addresses locked out stay locked for the duration they got."""
        self.caps.max_total, self.caps.max_per_ip = limits.max_connections, limits.max_connections_per_ip
        lockout = self.lockout
        lockout.threshold, lockout.window, lockout.duration = (limits.lockout_threshold, limits.lockout_window,
                                                               limits.lockout_duration)
        lockout.exempt = limits.exempt_networks()
        self.passwords.max_wait = limits.session_init_timeout
        self.passwords.set_accounts(accounts)

    def tick(self, now: float) -> None:
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL
            self.lockout.prune(now)

    def close(self) -> None:
        self.passwords.close()
