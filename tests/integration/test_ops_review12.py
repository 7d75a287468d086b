"""Issue 12 review: probes over real sockets for what the first tests left out (races of the
index sync with admin API writes and an import's index rebuild, reload with PDUs in flight,
sessions on both listeners, systemd's reload handshake, the labels dashboards and alerts read)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway import sdnotify
from gateway.admin_import import import_blocks
from gateway.admin_rows import RowDefaults
from gateway.app import Gateway, handle_sighup
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, BlockKey
from tests.deploy import _STRING, dashboard_expressions, rule_expressions
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.pki import Pki, tls_connect
from tests.integration.test_admin_api import (
    LONG_CODE,
    MOBILE,
    WRITE,
    api_gateway,
    bound_client,
    call,
    submit_status,
)
from tests.integration.test_optout import LONG_CODE as MO_LONG_CODE
from tests.integration.test_optout import App, replies_to
from tests.integration.test_reload import ACME, CUSTOM_STOP, NEWCO, OTHER, reloads, toml
from tests.integration.test_sdnotify import Messages
from tests.integration.test_tls_listener import listen_tls, reload_by_signal

KEY = BlockKey(MOBILE, LONG_CODE, "number")
BLOCK = {"number": MOBILE, "counterpart": LONG_CODE, "scope": "number", "reason": "r", "operator": "o"}
LIFT = {"counterpart": LONG_CODE, "scope": "number", "reason": "r", "operator": "o"}


def hold_first_fetch(gateway: Gateway) -> tuple[asyncio.Event, asyncio.Event]:
    """The store's next events_after that finds events returns them only once `release` is set
    (the read itself happens at once: its snapshot is then older than what follows)."""
    assert gateway.store is not None
    store = gateway.store
    real: Callable[..., Awaitable[list[AuditEvent]]] = store.events_after
    held, release = asyncio.Event(), asyncio.Event()

    async def events_after(event_id: int, limit: int = 1000) -> list[AuditEvent]:
        events = await real(event_id, limit)
        if events and not held.is_set():
            held.set()
            await release.wait()
        return events

    store.events_after = events_after  # type: ignore[method-assign]
    return held, release


async def test_a_stale_catch_up_never_undoes_a_newer_api_write(make_gateway: GatewayFactory, db_url: str) -> None:
    """Block, lift, block again through the API while one catch-up of the index sync is held
    with the lift: once it goes on, the mobile must still be blocked (the old code replayed the
    lift after the newer block and forwarded MT to a blocked mobile)."""
    gateway = await api_gateway(make_gateway, db_url)
    port = gateway.http_port
    client = await bound_client(gateway)
    assert (await call(port, "POST", "/v1/blocks", WRITE, BLOCK))[0] == 201
    assert await submit_status(client) == st.ESME_RINVDSTADR
    held, release = hold_first_fetch(gateway)
    lift = asyncio.create_task(call(port, "DELETE", f"/v1/blocks/{MOBILE}", WRITE, LIFT))
    await asyncio.wait_for(held.wait(), 5)  # a catch-up read the lift and waits
    again = asyncio.create_task(call(port, "POST", "/v1/blocks", WRITE, BLOCK))
    assert gateway.store is not None
    async with asyncio.timeout(5):
        while await gateway.store.get_block(KEY) is None:  # blocked again in the store
            await asyncio.sleep(0.01)
    release.set()
    assert (await asyncio.wait_for(lift, 5))[0] == 200
    status, _, done = await asyncio.wait_for(again, 5)
    assert status == 201 and done["changed"]
    assert KEY in gateway.index
    assert await submit_status(client) == st.ESME_RINVDSTADR
    await client.close()


async def test_concurrent_api_writes_leave_index_and_store_alike(make_gateway: GatewayFactory,
                                                                 db_url: str) -> None:
    gateway = await api_gateway(make_gateway, db_url)
    port = gateway.http_port
    numbers = [f"+1415555{n:04d}" for n in range(300, 330)]

    async def churn(number: str) -> list[int]:
        body = {**BLOCK, "number": number}
        statuses = []
        for _ in range(3):
            statuses.append((await call(port, "POST", "/v1/blocks", WRITE, body))[0])
            statuses.append((await call(port, "DELETE", f"/v1/blocks/{number}", WRITE, LIFT))[0])
        statuses.append((await call(port, "POST", "/v1/blocks", WRITE, body))[0])
        return statuses

    results = await asyncio.gather(*(churn(n) for n in numbers))
    assert {s for r in results for s in r} <= {200, 201}, results
    assert gateway.store is not None
    stored = {b.key for b in await gateway.store.list_blocks(limit=1000)}
    assert stored == {BlockKey(n, LONG_CODE, "number") for n in numbers}
    assert all(key in gateway.index for key in stored)


# --- reload with PDUs in flight -------------------------------------------------------------------



async def test_stop_in_flight_during_a_reload_keeps_one_configuration(make_gateway: GatewayFactory, sim: Simulator,
                                                                     tmp_path: Path) -> None:
    """A STOP whose store write is under way when the reply text changes: its reply, its event's
    reply_text and config_version all come from the configuration it was decided under; the next
    STOP gets the new text and version."""
    config = tmp_path / "gateway.toml"
    config.write_text(toml([ACME, OTHER]))
    gateway = await make_gateway(config=config)
    assert gateway.store is not None and gateway.optout is not None
    app = await App.bind(gateway)
    store = gateway.store
    real = store.record_mo
    held, release = asyncio.Event(), asyncio.Event()

    async def record_mo(*args: Any, **kw: Any) -> Any:
        if not held.is_set():
            held.set()
            await release.wait()
        return await real(*args, **kw)

    store.record_mo = record_mo  # type: ignore[method-assign]
    before = gateway.optout.version
    first = asyncio.create_task(sim.inject_mo("14155550123", MO_LONG_CODE, "STOP"))
    await asyncio.wait_for(held.wait(), 5)
    config.write_text(toml([ACME, OTHER], f'[optout.replies]\nstop = "{CUSTOM_STOP}"\n'))
    result = gateway.reload()
    assert result and result.config_version != before
    release.set()
    assert await asyncio.wait_for(first, 5) == 0
    await replies_to(sim, "14155550123", b"unsubscribed")
    assert await sim.inject_mo("14155550124", MO_LONG_CODE, "STOP") == 0
    await replies_to(sim, "14155550124", b"Custom: you are out")
    stops = [e for e in await store.events_after(0) if e.op == "stop"]
    assert [(e.number, e.config_version, CUSTOM_STOP in e.reply_text) for e in stops] == [
        ("+14155550123", before, False), ("+14155550124", result.config_version, True)]
    await app.close()


async def test_removed_account_is_unbound_on_both_listeners(make_gateway: GatewayFactory, sim: Simulator,
                                                            tmp_path: Path) -> None:
    """other bound on the plaintext and the TLS listener is removed; acme, now require_tls, loses its
    plaintext session only; its TLS session answers throughout."""
    pki = Pki(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(toml([ACME, OTHER]))
    gateway = await make_gateway(config=config, listen_tls=listen_tls(pki.issue("gateway")))
    ctx = pki.client_context()
    sessions: dict[str, RawClient] = {}
    for name, system_id, password, tls in (("other_plain", "other", "pw2", False), ("other_tls", "other", "pw2", True),
                                           ("acme_plain", "acme", "secret", False), ("acme_tls", "acme", "secret", True)):
        client = await (tls_connect(gateway.smpp_tls_port, ctx) if tls else RawClient.connect(gateway.smpp_port))
        assert (await client.bind(system_id, password)).command_status == st.ESME_ROK
        sessions[name] = client
    config.write_text(toml([{**ACME, "require_tls": True}]).replace("= True", "= true"))
    result = gateway.reload()
    assert result, result.failed
    for name in ("other_plain", "other_tls", "acme_plain"):
        client = sessions[name]
        unbind = await client.read(lambda p: p.command_id == P.UNBIND)
        client.respond(unbind, body=b"")
        assert await client.closed(), name
    acme = sessions["acme_tls"]
    assert (await acme.request(P.encode(P.ENQUIRE_LINK, 0, 9))).command_status == st.ESME_ROK
    assert (await acme.request(submit_sm())).command_status == st.ESME_ROK
    assert not [p for p in acme.queue if p.command_id == P.UNBIND]
    assert [len(s.sessions) for s in gateway.proxy.accounts.values()] == [1]
    await acme.close()


async def other_removed_while_queued(make_gateway: GatewayFactory, tmp_path: Path, max_tps: float,
                                     drain_timeout: float, waiting: int) -> tuple[Gateway, RawClient]:
    """Account "other" sends 6 submits at a carrier max_tps that holds at least `waiting` of them in
    the pacer; then a reload removes it."""
    config = tmp_path / "gateway.toml"
    limits = f"[carrier]\nmax_tps = {max_tps}\nburst = 1.0\n"
    config.write_text(toml([ACME, OTHER], limits))
    gateway = await make_gateway(config=config, drain_timeout=drain_timeout)
    other = await RawClient.connect(gateway.smpp_port)
    assert (await other.bind("other", "pw2")).command_status == st.ESME_ROK
    for seq in range(10, 16):
        other.send(submit_sm(src="14155550199", text=f"queued {seq}", seq=seq))
    pacer = gateway.proxy.pacer
    assert pacer is not None, gateway.settings.carrier
    async with asyncio.timeout(5):
        while len(pacer.queue) < waiting:
            await asyncio.sleep(0.01)
    config.write_text(toml([ACME], limits))
    assert gateway.reload()
    return gateway, other


async def test_submits_waiting_for_the_carrier_rate_of_a_removed_account_are_answered(
        make_gateway: GatewayFactory, sim: Simulator, tmp_path: Path) -> None:
    """Submits of a removed account waiting in the carrier pacer: each one that reaches the carrier
    has its answer reach the application before its session closes (drain_timeout is ample)."""
    _, other = await other_removed_while_queued(make_gateway, tmp_path, 4.0, 10.0, waiting=3)
    unbind = await other.read(lambda p: p.command_id == P.UNBIND)
    other.respond(unbind, body=b"")
    assert await other.closed(timeout=10)
    answers = [p for p in other.queue if p.command_id == P.SUBMIT_SM_RESP]
    at_carrier = [p for p in sim.received if p.command_id == P.SUBMIT_SM and b"queued" in p.raw]
    assert len(answers) == 6 and {p.command_status for p in answers} == {st.ESME_ROK}
    assert len(at_carrier) == 6


async def test_submits_still_waiting_when_a_removed_accounts_session_closes_are_not_forwarded(
        make_gateway: GatewayFactory, sim: Simulator, tmp_path: Path) -> None:
    """The application never answers the unbind: its session closes at drain_timeout, and what still
    waits for the carrier rate then is dropped, never sent for an account that is gone."""
    gateway, other = await other_removed_while_queued(make_gateway, tmp_path, 1.0, 0.5, waiting=4)
    pacer = gateway.proxy.pacer
    assert pacer is not None
    await other.read(lambda p: p.command_id == P.UNBIND)  # not answered
    assert await other.closed(timeout=5)
    async with asyncio.timeout(10):
        while pacer.queue:
            await asyncio.sleep(0.05)
    answered = [p for p in other.queue if p.command_id == P.SUBMIT_SM_RESP and p.command_status == st.ESME_ROK]
    at_carrier = [p for p in sim.received if p.command_id == P.SUBMIT_SM and b"queued" in p.raw]
    assert len(at_carrier) <= len(answered) + 1 and len(at_carrier) < 6


# --- the admin API: bad input --------------------------------------------------------------------


async def test_deeply_nested_json_is_a_400_problem_not_a_500(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    """json.loads raises RecursionError (not ValueError) on a deep nest: it escaped as a 500."""
    gateway = await api_gateway(make_gateway, f"sqlite:///{tmp_path}/deep.db")
    for raw in (b"[" * 50_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
        for method, path in (("POST", "/v1/blocks"), ("POST", "/v1/optouts"), ("DELETE", f"/v1/blocks/{MOBILE}")):
            status, ctype, problem = await call(gateway.http_port, method, path, WRITE, raw=raw)
            assert (status, ctype) == (400, "application/problem+json"), (method, path, status, problem)
            assert problem["status"] == 400
    assert gateway.store is not None and await gateway.store.list_blocks() == []


# --- dashboards and alerts: the labels they read exist -------------------------------------------



_SELECTOR = re.compile(r"\b(gateway_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_NAME = re.compile(r"\b(gateway_[a-zA-Z0-9_]+)\b")
TARGET_LABELS = frozenset({"instance", "job", "le", "__name__"})


def label_names(gateway: Gateway) -> dict[str, set[str]]:
    """Every exported family (with its sample suffixes) -> its label names, from the registry."""
    out: dict[str, set[str]] = {}
    registry = gateway.metrics.registry
    for collector, names in list(registry._collector_to_names.items()):
        declared = getattr(collector, "_labelnames", None)
        if declared is not None:
            for name in names:
                out.setdefault(name, set()).update(declared)
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
            out.setdefault(family.name, set()).update(sample.labels)
    return out


async def test_dashboard_and_alert_labels_exist(make_gateway: GatewayFactory, sim: Simulator) -> None:
    """A selector or a by()/on() clause naming a label the metric does not have matches nothing:
    the panel stays empty, the alert never fires. Every label they use is one the gateway exports."""
    gateway = await make_gateway()
    client = await RawClient.connect(gateway.smpp_port)
    assert (await client.bind()).command_status == st.ESME_ROK
    assert (await client.request(submit_sm())).command_status == st.ESME_ROK
    labels = label_names(gateway)
    wrong: list[str] = []
    for where, expr in [*dashboard_expressions(), *rule_expressions()]:
        plain = _STRING.sub('""', expr)
        for name, body in _SELECTOR.findall(plain):
            for label in set(_MATCHER.findall(body)) - TARGET_LABELS:
                if label not in labels.get(name, set()):
                    wrong.append(f"{where}: {name} has no label {label!r}")
        used = set(_NAME.findall(plain))
        available = set().union(*(labels.get(n, set()) for n in used)) if used else set()
        for group in _GROUPING.findall(plain):
            for label in {g.strip() for g in group.split(",") if g.strip()} - TARGET_LABELS:
                if label not in available:
                    wrong.append(f"{where}: no metric of it has label {label!r}")
    assert wrong == []
    await client.close()


async def test_api_blocks_of_every_scope_are_refused_on_the_wire_at_once(make_gateway: GatewayFactory,
                                                                         tmp_path: Path) -> None:
    gateway = await api_gateway(make_gateway, f"sqlite:///{tmp_path}/scopes.db")
    client = await bound_client(gateway)
    cases = [("+14155550131", {"scope": "global"}), ("+14155550132", {"scope": "account", "counterpart": "acme"}),
             ("+14155550133", {"scope": "number", "counterpart": LONG_CODE})]
    for mobile, key in cases:
        dst = mobile[1:]
        assert (await client.request(submit_sm(dst=dst))).command_status == st.ESME_ROK
        status, _, done = await call(gateway.http_port, "POST", "/v1/blocks", WRITE,
                                     {"number": mobile, "reason": "r", "operator": "o", **key})
        assert status == 201, done
        assert (await client.request(submit_sm(dst=dst))).command_status == st.ESME_RINVDSTADR, key
    other = {"number": "+14155550132", "scope": "account", "counterpart": "other", "reason": "r", "operator": "o"}
    assert (await call(gateway.http_port, "POST", "/v1/blocks", WRITE, other))[0] == 201
    await client.close()


# --- systemd: a reload while the carrier is down ----------------------------------------------------




@contextlib.asynccontextmanager
async def systemd(gateway: Gateway, tmp_path: Path) -> AsyncIterator[tuple[Messages, int]]:
    """The gateway under a NOTIFY_SOCKET of our own, reloads announced (handle_sighup): the messages
    systemd would read, and the index of the first READY=1."""
    address = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    notifier = sdnotify.Notifier(address)
    watch = sdnotify.start(notifier, gateway.ready, gateway.status_line)
    messages = Messages(sock)
    try:
        ready_at = await messages.until("READY=1", timeout=5)
        handle_sighup(gateway, notifier)
        yield messages, ready_at
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        notifier.close()
        sock.close()


async def announced(messages: Messages, ready_at: int) -> None:
    """RELOADING=1 after ready_at, then READY=1 with the outcome."""
    reloading = await messages.until("RELOADING=1", after=ready_at, timeout=5)
    done = await messages.until("READY=1", after=reloading, timeout=5)
    assert messages.seen[done + 1] == "STATUS=reload applied"


async def test_a_reload_while_not_ready_still_ends_with_ready(make_gateway: GatewayFactory, sim: Simulator,
                                                              tmp_path: Path) -> None:
    """systemd holds `systemctl reload` from RELOADING=1 until READY=1 (up to TimeoutStartSec). A
    gateway that was ready once and lost its carrier sent no READY=1 after the reload: the reload
    hung for minutes, when the operator most needs one (say, to fix the carrier's TLS files)."""
    gateway = await make_gateway()
    async with systemd(gateway, tmp_path) as (messages, ready_at):
        await sim.stop()
        async with asyncio.timeout(5):
            while gateway.ready():
                await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGHUP)
        await announced(messages, ready_at)


async def test_an_api_reload_is_announced_to_systemd_like_sighup(make_gateway: GatewayFactory,
                                                                   tmp_path: Path) -> None:
    """POST /v1/reload goes through the same announcement as SIGHUP: RELOADING=1, then READY=1 and
    the outcome in STATUS (it said nothing before, so systemd never saw those reloads)."""
    gateway = await api_gateway(make_gateway, f"sqlite:///{tmp_path}/gw.db")
    async with systemd(gateway, tmp_path) as (messages, ready_at):
        status, _, result = await call(gateway.http_port, "POST", "/v1/reload", WRITE)
        assert status == 200 and result["ok"], result
        await announced(messages, ready_at)


# --- a bad reload file names its line ---------------------------------------------------------------




BAD_NUMBERS = {  # the file, and the line the reason must name
    "malformed_number": (toml([ACME, {**NEWCO, "numbers": ["+14155550177", "garbage"]}]), '"garbage"]'),
    "same_value_elsewhere": (toml([{**ACME, "senders": ["garbage"]}, {**NEWCO, "numbers": ["garbage"]}]),
                             'numbers = ["garbage"]'),
}


@pytest.mark.parametrize("bad", list(BAD_NUMBERS))
async def test_a_bad_account_number_names_its_line(make_gateway: GatewayFactory, sim: Simulator, tmp_path: Path,
                                                   bad: str, caplog: pytest.LogCaptureFixture) -> None:
    """A number an account lists that is no number: the reload fails, changes nothing, and names
    the line (it named none)."""
    config = tmp_path / "gateway.toml"
    config.write_text(toml([ACME, OTHER]))
    gateway = await make_gateway(config=config)
    text, marker = BAD_NUMBERS[bad]
    text = text.replace('["+14155550177", "garbage"]', '[\n  "+14155550177",\n  "garbage"]')
    line = next(n for n, content in enumerate(text.splitlines(), start=1) if content.strip().endswith(marker))
    config.write_text(text)
    with caplog.at_level(logging.ERROR, logger="gateway.reload"):
        await reload_by_signal(gateway)
    assert reloads(gateway, "failed") == 1 and reloads(gateway, "ok") == 0
    result = gateway.reloader.last
    assert result is not None and not result
    assert any(f"line {line} of" in reason for reason in result.failed), (line, result.failed)
    logged = [r for r in caplog.records if r.getMessage() == "reload_failed"]
    assert logged and logged[0].__dict__["line"] == line
    assert set(gateway.proxy.accounts) == {"acme", "other"}


# --- an import's index reload while the gateway takes a STOP -------------------------------------


async def test_a_block_written_while_an_import_reloads_the_index_stays_enforced(
        make_gateway: GatewayFactory, sim: Simulator, db_url: str) -> None:
    """An import makes every gateway rebuild its block index from the store. An API block written
    while the rebuild reads was applied (by the API's own catch-up) to the old index, and the rebuilt
    one, read before it, was swapped in without it: MT to that mobile went to the carrier."""
    gateway = await api_gateway(make_gateway, db_url)
    assert gateway.store is not None
    store = gateway.store
    real = store.block_groups
    held, release = asyncio.Event(), asyncio.Event()

    async def block_groups() -> AsyncIterator[Sequence[Any]]:
        pages = [page async for page in real()]  # the snapshot is taken now
        held.set()
        await release.wait()
        for page in pages:
            yield page

    store.block_groups = block_groups  # type: ignore[method-assign]
    packed = getattr(store, "load_packed", None)  # PostgreSQL: the index is built from one snapshot
    if packed is not None:
        async def load_packed(sink: Any) -> None:
            await packed(sink)  # the snapshot was read: hold the rebuilt index before its swap
            held.set()
            await release.wait()

        store.load_packed = load_packed  # type: ignore[attr-defined]
    client = await bound_client(gateway)
    rows = "number,counterpart,scope\n+14155550161,+14155550100,number\n"
    await import_blocks(store, io.StringIO(rows), RowDefaults(scope="number"), "US", err=io.StringIO())
    await asyncio.wait_for(held.wait(), 5)  # the index sync saw the import and reads the store
    add = asyncio.create_task(call(gateway.http_port, "POST", "/v1/blocks", WRITE, BLOCK))
    async with asyncio.timeout(5):
        while await store.get_block(KEY) is None:
            await asyncio.sleep(0.01)
    release.set()
    assert (await asyncio.wait_for(add, 5))[0] == 201
    assert KEY in gateway.index and BlockKey("+14155550161", LONG_CODE, "number") in gateway.index
    assert await submit_status(client) == st.ESME_RINVDSTADR
    await client.close()


async def test_an_api_optout_is_lifted_by_the_mobiles_start(make_gateway: GatewayFactory, sim: Simulator,
                                                            tmp_path: Path) -> None:
    """README: an opt-out from another channel is 'lifted only by the mobile's own opt-in (START)'."""
    gateway = await api_gateway(make_gateway, f"sqlite:///{tmp_path}/start.db")
    app = await App.bind(gateway)
    status, _, done = await call(gateway.http_port, "POST", "/v1/optouts", WRITE, {"number": MOBILE, "channel": "voice"})
    assert status == 201 and done["key"]["scope"] == "global"
    assert (await app.client.request(submit_sm(dst=MOBILE[1:]))).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE[1:], MO_LONG_CODE, "START") == 0
    await replies_to(sim, MOBILE[1:], b"")
    assert (await app.client.request(submit_sm(dst=MOBILE[1:]))).command_status == st.ESME_ROK
    await app.close()


async def test_the_simulators_mo_endpoint_answers_deep_json_with_a_400(sim: Simulator) -> None:
    """The same parser limit on the simulator's POST /mo (smoke tests post to it): a 400, not a 500."""
    assert sim.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.http_port)
    body = b"[" * 50_000
    writer.write(f"POST /mo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
