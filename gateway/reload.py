"""SIGHUP (and the admin API): re-read the configuration, build it aside, swap it in between PDUs.

`Reloader.reload()` is synchronous and runs on the event loop, so no PDU is handled while it works:
1. load: the TOML file, environment and flags again (`ConfigSource.load`), validated in full. A
   problem (bad TOML, a bad account, a bad keyword table) fails the reload and changes nothing.
2. split: a changed setting that needs a restart (`needs_restart`: ports, listeners, database_url,
   the carrier's address and credentials, routing, cluster, optout.default_region) keeps its
   running value and is logged as `reload_needs_restart`; everything else is the new configuration.
3. prepare: each part builds its new state aside (TLS contexts, the metrics token, accounts,
   keyword tables, limits). A part that fails fails the reload; nothing is swapped.
4. commit: each part swaps its state in; no await anywhere, so it lands between two PDUs.

`gateway_config_reloads_total{result="ok"|"failed"}` counts the outcomes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.policy.settings import OptoutSettings
from gateway.proxy import address_refusal
from gateway.store.base import AuditEvent

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.esme_server import EsmeConnection
    from gateway.proxy import AccountState

log = logging.getLogger(__name__)

Commit = Callable[[], None]
Prepare = Callable[[Settings], Commit | None]  # raises (ConfigError, OSError, ValueError, ssl.SSLError) to fail

# what a reload applies; every other setting needs a restart. None: every field of the section.
RELOADABLE: dict[str, frozenset[str] | None] = {
    "accounts": None, "esme": None, "drain_timeout": None, "events_retention_days": None, "log_level": None,
    "optout": frozenset(OptoutSettings.model_fields) - {"default_region"},
    "carrier": frozenset({"max_tps", "burst", "max_queue_delay",
                          "tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify"}),
    "listen_tls": frozenset({"cert_file", "key_file", "client_ca_file"}),
    "http": frozenset({"metrics_token", "metrics_token_file", "api_tokens", "cert_file", "key_file"}),
}
# Turning a listener's or the carrier leg's TLS on or off needs a restart, and so does mutual TLS on
# or off (the verify mode of a handshake comes from the listener's first context): then these do too.
_SWITCHES: tuple[tuple[str, Callable[[Any], bool], frozenset[str]], ...] = (
    ("listen_tls", lambda s: bool(s.enabled), frozenset({"cert_file", "key_file", "client_ca_file"})),
    ("listen_tls", lambda s: s.client_ca_file is not None, frozenset({"client_ca_file"})),
    ("http", lambda s: s.cert_file is not None, frozenset({"cert_file", "key_file"})),
    ("carrier", lambda s: bool(s.tls), frozenset({"tls_ca_file", "tls_cert_file", "tls_key_file", "tls_verify"})),
)


@dataclass(frozen=True)
class ConfigSource:
    """Where the running settings came from: the file (None: GATEWAY_CONFIG, if set) and the flags."""

    config_file: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def load(self, **extra: Any) -> Settings:
        """Settings from the file, the environment and the flags, as at start (ConfigError when invalid)."""
        merged = copy.deepcopy(dict(self.overrides))
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return load_settings(self.config_file, **merged)


@dataclass
class ReloadResult:
    """What one reload did. True when it was applied (restart-needed settings do not make it fail)."""

    ok: bool
    changed: list[str] = field(default_factory=list)  # settings now in force, dotted ("optout.replies")
    restart_needed: list[str] = field(default_factory=list)  # changed in the file, kept until a restart
    failed: list[str] = field(default_factory=list)  # "<part>: <reason>", nothing changed
    config_version: str = ""  # the keyword configuration version in the audit trail after it
    at: float = 0.0

    def __bool__(self) -> bool:
        return self.ok

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "changed": self.changed, "restart_needed": self.restart_needed,
                "failed": self.failed, "config_version": self.config_version, "at": self.at}


def split(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """(changed settings a reload applies, changed settings that need a restart), as dotted names."""
    changed: list[str] = []
    restart: list[str] = []
    for name in type(old).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        if name == "accounts" or not isinstance(a, BaseModel):
            (changed if name in RELOADABLE else restart).append(name)
            continue
        allowed = RELOADABLE.get(name, frozenset())
        allowed = frozenset(type(a).model_fields) if allowed is None else allowed
        for section, switch, fields in _SWITCHES:
            if section == name and switch(a) != switch(b):
                allowed -= fields
        for key in type(a).model_fields:
            if getattr(a, key) != getattr(b, key):
                (changed if key in allowed else restart).append(f"{name}.{key}")
    return changed, list(dict.fromkeys(restart))


def keep_running(old: Settings, new: Settings, restart: list[str]) -> Settings:
    """new, with the running value of every setting in restart (dotted names from split)."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name in restart:
        section, _, key = name.partition(".")
        if key:
            sections.setdefault(section, {})[key] = getattr(getattr(old, section), key)
        else:
            top[name] = getattr(old, name)
    for section, values in sections.items():
        top[section] = getattr(new, section).model_copy(update=values)
    merged = new.model_copy(update=top)
    carrier = merged.carrier
    if carrier.max_queue_delay > carrier.response_timeout:
        raise ConfigError(f"carrier.max_queue_delay ({carrier.max_queue_delay:g} s) is longer than the running "
                          f"carrier.response_timeout ({carrier.response_timeout:g} s)")
    return merged


def load_for(source: ConfigSource, running: Settings) -> tuple[Settings, list[str], list[str]]:
    """The settings a reload applies, with (changed, restart-needed) names. The default region is read
    with the running one, since account and program numbers are normalised by it."""
    fresh = source.load()
    region = running.optout.default_region
    moved = fresh.optout.default_region != region
    if moved:
        fresh = source.load(optout={"default_region": region})
    changed, restart = split(running, fresh)
    if moved:
        restart.append("optout.default_region")
    return keep_running(running, fresh, restart), changed, restart


class Reloader:
    def __init__(self, metrics: Metrics, settings: Settings, source: ConfigSource | None = None) -> None:
        self.metrics = metrics
        self.settings = settings  # what runs: restart-needed settings keep their start values
        self.source = source or ConfigSource()
        self.parts: list[tuple[str, Prepare]] = []
        self.last: ReloadResult | None = None
        self.version: Callable[[], str] = lambda: settings.optout.config_version

    def add(self, name: str, prepare: Prepare) -> None:
        """prepare(new settings) builds the part's new state aside and returns what swaps it in (None:
        nothing to swap); it raises to fail the reload, and must not change anything itself."""
        self.parts.append((name, prepare))

    def reload(self) -> ReloadResult:
        """The whole reload, synchronously (see the module docstring)."""
        try:
            merged, changed, restart = load_for(self.source, self.settings)
        except ConfigError as exc:
            return self._failed("configuration", str(exc))
        commits: list[tuple[str, Commit]] = []
        for name, prepare in self.parts:
            try:
                commit = prepare(merged)
            except Exception as exc:  # noqa: BLE001 - nothing swapped yet: the old state stays everywhere
                return self._failed(name, str(exc) or type(exc).__name__)
            if commit is not None:
                commits.append((name, commit))
        broken = []
        for name, commit in commits:
            try:
                commit()
            except Exception:  # our bug (a commit only assigns): the other parts still swap; counted as failed
                log.exception("reload_commit_failed", extra={"part": name})
                broken.append(f"{name}: could not be swapped in (reload_commit_failed)")
        self.settings = merged
        result = ReloadResult(not broken, changed, restart, broken, self.version(), time.time())
        self._count(result)
        if restart:
            log.warning("reload_needs_restart", extra={"settings": restart})
        log.info("reloaded", extra={"parts": [n for n, _ in commits], "changed": changed, "failed": result.failed,
                                    "restart_needed": restart, "config_version": result.config_version})
        return result

    def _failed(self, part: str, reason: str) -> ReloadResult:
        lines = reason.splitlines() or [reason]
        found = re.search(r"\bline (\d+)", reason)
        log.error("reload_failed", extra={"part": part, "error": "; ".join(lines),
                                          "line": int(found.group(1)) if found else None})
        result = ReloadResult(False, failed=[f"{part}: {line}" for line in lines], config_version=self.version(),
                              at=time.time())
        self._count(result)
        return result

    def _count(self, result: ReloadResult) -> None:
        self.last = result
        self.metrics.config_reloads.labels("ok" if result.ok else "failed").inc()
        self.metrics.config_reload_ok.set(1 if result.ok else 0)
        if result.ok:
            self.metrics.config_reload_time.set(result.at)


def settings_part(gateway: Gateway) -> Prepare:
    """Accounts, numbers, keywords and replies, programs, limits, session limits, log level: the
    keyword tables are built aside; the commit swaps the rest in and unbinds the sessions that must go."""

    def prepare(new: Settings) -> Commit:
        optout = gateway.optout
        tables = optout.prepare(new.optout) if optout is not None else None

        def commit() -> None:
            old = gateway.settings
            before = optout.version if optout is not None else ""
            removed, changed = gateway.proxy.reconfigure(new, asyncio.get_running_loop().time())
            gateway.esme.reconfigure(new.esme, new.accounts)
            if optout is not None and tables is not None:
                optout.reconfigure(tables)
                if optout.version != before:
                    optout.record(AuditEvent(at=time.time(), op="config_reload", source="operator", rule=before,
                                             config_version=optout.version,
                                             text=",".join(_changed_fields(old.optout, new.optout))))
            if new.log_level != old.log_level:
                logging.getLogger().setLevel(new.log_level)
            gateway.settings = new
            _unbind(gateway, removed, changed, new.drain_timeout)

        return commit

    return prepare


def _changed_fields(old: BaseModel, new: BaseModel) -> list[str]:
    return [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]


def _unbind(gateway: Gateway, removed: list[AccountState], changed: list[AccountState], drain_timeout: float) -> None:
    """Sessions of removed accounts go (an outbound unbind); a changed account's bound sessions stay,
    unless its allowed_ips or require_tls would now refuse them."""
    gone = {id(s) for s in removed}
    rules = {id(s): s.config for s in changed}
    leaving: dict[str, list[EsmeConnection]] = {}
    for conn in gateway.esme.connections:
        state = conn.account
        if state is None:
            continue
        if id(state) in gone:
            leaving.setdefault("account_removed", []).append(conn)
        elif id(state) in rules:
            reason = address_refusal(rules[id(state)], conn.ip, conn.tls)
            if reason is not None:
                leaving.setdefault(reason, []).append(conn)
    for reason, sessions in leaving.items():
        gateway.esme.unbind_sessions(sessions, drain_timeout, reason)

