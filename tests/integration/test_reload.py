"""Reload over real sockets: the TOML file read again on SIGHUP, swapped in between PDUs."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import smpplib.client

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.test_cli import _env, _gateway
from tests.integration.test_compliance_programs import ALERTS, MOBILE, NOON_PST, PROMO, mo
from tests.integration.test_mt_enforcement import bound
from tests.integration.test_optout import LONG_CODE, App, replies_to
from tests.integration.test_tls_listener import reload_by_signal

ACME = {"system_id": "acme", "password": "secret", "numbers": ["+14155550100"]}
OTHER = {"system_id": "other", "password": "pw2"}
NEWCO = {"system_id": "newco", "password": "newpw"}
CUSTOM_STOP = "Custom: you are out and get nothing more. Reply START to rejoin."


def toml(accounts: list[dict[str, Any]], extra: str = "") -> str:
    """A configuration file: the accounts as [[accounts]] tables, then extra TOML."""
    lines = []
    for account in accounts:
        lines.append("[[accounts]]")
        for key, value in account.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        lines.append("")
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(toml([ACME, OTHER]))
    return path


async def bind_status(gateway: Gateway, system_id: str, password: str) -> int:
    client = await RawClient.connect(gateway.smpp_port)
    status = (await client.bind(system_id, password)).command_status
    await client.close()
    return status


def reloads(gateway: Gateway, result: str) -> float:
    return gateway.metrics.registry.get_sample_value("gateway_config_reloads_total", {"result": result}) or 0.0


def _smpplib_bind_and_send(port: int, system_id: str, password: str) -> int:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    statuses: list[int] = []
    client.set_message_sent_handler(lambda pdu: statuses.append(pdu.status))
    client.connect()
    try:
        client.bind_transceiver(system_id=system_id, password=password)
        client.send_message(source_addr_ton=1, source_addr_npi=1, source_addr="14155550199",
                            dest_addr_ton=1, dest_addr_npi=1, destination_addr="14155550123",
                            short_message=b"after reload")
        while not statuses:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return statuses[0]


async def test_added_account_binds_after_sighup(make_gateway: GatewayFactory, sim: Simulator, config: Path) -> None:
    gateway = await make_gateway(config=config)
    assert await bind_status(gateway, "newco", "newpw") == st.ESME_RINVSYSID
    config.write_text(toml([ACME, OTHER, NEWCO]))
    await reload_by_signal(gateway)
    assert reloads(gateway, "ok") == 1
    status = await asyncio.to_thread(_smpplib_bind_and_send, gateway.smpp_port, "newco", "newpw")
    assert status == st.ESME_ROK
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"after reload" in p.raw)
    assert gateway.reloader.last is not None and "accounts" in gateway.reloader.last.changed


async def test_removed_account_is_unbound_and_the_others_stay(make_gateway: GatewayFactory, sim: Simulator,
                                                              config: Path) -> None:
    gateway = await make_gateway(config=config)
    acme, other = await bound(gateway), await bound(gateway, "other", "pw2")
    config.write_text(toml([ACME]))
    assert gateway.reload()
    unbind = await other.read(lambda p: p.command_id == P.UNBIND)  # the gateway's own, outbound unbind
    assert (await other.request(submit_sm())).command_status == st.ESME_RINVBNDSTS  # no new requests
    other.respond(unbind, body=b"")
    assert await other.closed()
    assert await bind_status(gateway, "other", "pw2") == st.ESME_RINVSYSID
    assert (await acme.request(P.encode(P.ENQUIRE_LINK, 0, 7))).command_status == st.ESME_ROK
    assert (await acme.request(submit_sm())).command_status == st.ESME_ROK
    assert not [p for p in acme.queue if p.command_id == P.UNBIND]
    await acme.close()


async def test_changed_reply_text_is_used_for_the_next_stop(make_gateway: GatewayFactory, sim: Simulator,
                                                           config: Path) -> None:
    gateway = await make_gateway(config=config)
    app = await App.bind(gateway)
    assert await sim.inject_mo("14155550123", LONG_CODE, "STOP") == 0
    await replies_to(sim, "14155550123", b"unsubscribed")
    assert gateway.store is not None and gateway.optout is not None
    before = gateway.optout.version
    config.write_text(toml([ACME, OTHER], f'[optout.replies]\nstop = "{CUSTOM_STOP}"\n'))
    result = gateway.reload()
    assert result and "optout.replies" in result.changed and result.config_version != before
    assert await sim.inject_mo("14155550124", LONG_CODE, "STOP") == 0
    await replies_to(sim, "14155550124", b"Custom: you are out")
    async with asyncio.timeout(5):
        while len([e for e in await gateway.store.events_after(0) if e.op == "stop"]) < 2:
            await asyncio.sleep(0.01)
    events = await gateway.store.events_after(0)
    stops = [e for e in events if e.op == "stop"]
    assert [e.config_version for e in stops] == [before, result.config_version]  # the audit trail moves with it
    assert stops[1].reply_text == CUSTOM_STOP
    marker = [e for e in events if e.op == "config_reload"]
    assert [(e.rule, e.config_version, e.text) for e in marker] == [(before, result.config_version, "replies")]
    await app.close()


BAD_FILES = {  # the file, and the line the reason must name
    "toml": (toml([ACME, NEWCO], "[optout\n"), "[optout"),
    "account": (toml([ACME, {"system_id": "newco", "password": "far-too-long"}]), 'password = "far-too-long"'),
    "keywords": (toml([ACME, NEWCO], '[optout.keywords]\nstop = ["QUIT"]\n'), 'stop = ["QUIT"]'),
    "keyword_in_two_ops": (toml([ACME, NEWCO], '[optout.keywords]\nhelp = ["HELP", "STOP"]\n'),
                           'help = ["HELP", "STOP"]'),
}


@pytest.mark.parametrize("bad", list(BAD_FILES))
async def test_a_bad_file_changes_nothing(make_gateway: GatewayFactory, sim: Simulator, config: Path,
                                          bad: str, caplog: pytest.LogCaptureFixture) -> None:
    gateway = await make_gateway(config=config)
    acme = await bound(gateway)
    version = gateway.settings.optout.config_version
    text, marker = BAD_FILES[bad]
    line = text.splitlines().index(marker) + 1
    config.write_text(text)
    with caplog.at_level(logging.ERROR, logger="gateway.reload"):
        await reload_by_signal(gateway)
    assert reloads(gateway, "failed") == 1 and reloads(gateway, "ok") == 0
    assert gateway.metrics.registry.get_sample_value("gateway_config_last_reload_successful") == 0
    result = gateway.reloader.last
    assert result is not None and not result and result.changed == []
    assert any(f"line {line}" in reason for reason in result.failed), result.failed
    logged = [r for r in caplog.records if r.getMessage() == "reload_failed"]
    assert logged and logged[0].__dict__["line"] == line
    assert await bind_status(gateway, "other", "pw2") == st.ESME_ROK  # the old accounts, all of them
    assert await bind_status(gateway, "newco", "newpw") == st.ESME_RINVSYSID
    assert gateway.settings.optout.config_version == version
    assert (await acme.request(submit_sm())).command_status == st.ESME_ROK
    await acme.close()


async def test_unchanged_account_answers_enquire_link_throughout(make_gateway: GatewayFactory, sim: Simulator,
                                                                 config: Path) -> None:
    gateway = await make_gateway(config=config)
    acme = await bound(gateway)
    answered: list[int] = []
    done = asyncio.Event()

    async def keep_asking() -> None:
        seq = 1000
        while not done.is_set():
            seq += 1
            answered.append((await acme.request(P.encode(P.ENQUIRE_LINK, 0, seq), timeout=2)).command_status)

    asker = asyncio.create_task(keep_asking())
    variants = [toml([ACME, NEWCO]), toml([ACME], f'[optout.replies]\nstop = "{CUSTOM_STOP}"\n'),
                toml([{**ACME, "max_tps": 50}, OTHER]), "not = [valid", toml([ACME, OTHER])]
    for n, text in enumerate(variants):
        config.write_text(text)
        count = len(answered)
        await reload_by_signal(gateway)
        async with asyncio.timeout(5):  # at least one enquire_link answered after each reload
            while len(answered) <= count + 1:
                await asyncio.sleep(0.005)
        assert reloads(gateway, "ok") + reloads(gateway, "failed") == n + 1
    done.set()
    await asyncio.wait_for(asker, 5)
    assert answered and set(answered) == {st.ESME_ROK}
    assert not [p for p in acme.queue if p.command_id == P.UNBIND] and not acme.eof
    assert (await acme.request(submit_sm())).command_status == st.ESME_ROK
    assert reloads(gateway, "failed") == 1
    await acme.close()


async def test_restart_needed_settings_are_reported_and_kept(make_gateway: GatewayFactory, sim: Simulator,
                                                             config: Path, caplog: pytest.LogCaptureFixture) -> None:
    gateway = await make_gateway(config=config)
    app = await bound(gateway)
    extra = ('[carrier]\nsessions = 2\nmax_tps = 100.0\n[routing]\nunbound_status = 0x45\n'
             '[optout]\ndefault_region = "GB"\n[optout.replies]\nstop = "' + CUSTOM_STOP + '"\n')
    config.write_text(toml([ACME, OTHER, NEWCO], extra))
    with caplog.at_level(logging.WARNING, logger="gateway.reload"):
        result = gateway.reload()
    assert result, result.failed
    assert result.restart_needed == ["carrier.sessions", "routing.unbound_status", "optout.default_region"]
    logged = [r for r in caplog.records if r.getMessage() == "reload_needs_restart"]
    assert logged and logged[0].__dict__["settings"] == result.restart_needed
    s = gateway.settings  # kept as they run ...
    assert (s.carrier.sessions, s.routing.unbound_status, s.optout.default_region) == (1, 0x64, "US")
    assert gateway.proxy.unbound_status == 0x64 and sim.bound_count == 1
    assert s.carrier.max_tps == 100.0 and gateway.proxy.pacer is not None  # ... the rest applied
    assert gateway.optout is not None and gateway.optout.o.replies.stop.default == CUSTOM_STOP
    assert sorted(result.changed) == ["accounts", "carrier.max_tps", "optout.replies"]
    assert await bind_status(gateway, "newco", "newpw") == st.ESME_ROK
    assert (await app.request(submit_sm())).command_status == st.ESME_ROK  # through the new carrier pacer
    config.write_text(toml([ACME, OTHER, NEWCO]))
    again = gateway.reload()
    assert again and gateway.proxy.pacer is None and again.restart_needed == []
    assert (await app.request(submit_sm())).command_status == st.ESME_ROK
    await app.close()


async def test_changed_account_keeps_its_sessions_unless_its_rules_refuse_them(
        make_gateway: GatewayFactory, sim: Simulator, config: Path) -> None:
    gateway = await make_gateway(config=config)
    acme, other = await bound(gateway), await bound(gateway, "other", "pw2")
    config.write_text(toml([{**ACME, "password": "rotated", "max_tps": 5.0, "window": 3},
                            {**OTHER, "allowed_ips": ["10.0.0.0/8"]}]))
    assert gateway.reload()
    unbind = await other.read(lambda p: p.command_id == P.UNBIND)  # 127.0.0.1 is no longer allowed
    other.respond(unbind, body=b"")
    assert await other.closed()
    assert (await acme.request(submit_sm())).command_status == st.ESME_ROK  # bound under the old password: stays
    state = gateway.proxy.accounts["acme"]
    session = state.sessions[0]
    assert session.window == 3 and session.bucket is gateway.proxy.shaper.bucket_for("acme")
    assert session.bucket is not None and session.bucket.rate == 5.0
    assert await bind_status(gateway, "acme", "secret") == st.ESME_RINVPASWD
    assert await bind_status(gateway, "acme", "rotated") == st.ESME_ROK
    await acme.close()


async def test_gateway_reload_command_signals_the_gateway_in_the_pid_file(sim: Simulator, tmp_path: Path) -> None:
    config, pid_file = tmp_path / "gateway.toml", tmp_path / "run" / "gateway.pid"
    pid_file.parent.mkdir()
    config.write_text(toml([ACME]))
    env = _env(GATEWAY_LISTEN__PORT="0", GATEWAY_HTTP__PORT="0", GATEWAY_CARRIER__PORT=str(sim.smpp_port),
               GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/gw.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "--config", str(config), "--pid-file", str(pid_file), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None

    async def until_event(event: str) -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stderr.readline()).decode()  # type: ignore[union-attr]
                if f'"{event}"' in line:
                    return dict(json.loads(line))

    try:
        port = int((await until_event("gateway_started"))["smpp_port"])
        async with asyncio.timeout(5):
            while not pid_file.exists():
                await asyncio.sleep(0.01)
        assert pid_file.read_text().strip() == str(proc.pid)
        client = await RawClient.connect(port)
        assert (await client.bind("newco", "newpw")).command_status == st.ESME_RINVSYSID
        await client.close()
        config.write_text(toml([ACME, NEWCO]))
        code, out, err = await _gateway("reload", "--pid-file", str(pid_file), env=env)
        assert code == 0 and f"process {proc.pid}" in out, err
        reloaded = await until_event("reloaded")
        assert reloaded["changed"] == "['accounts']" and reloaded["failed"] == "[]"
        client = await RawClient.connect(port)
        assert (await client.bind("newco", "newpw")).command_status == st.ESME_ROK
        await client.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
        assert proc.returncode == 0 and not pid_file.exists()  # removed on the way out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    code, _, err = await _gateway("reload", "--pid-file", str(pid_file), env=env)
    assert code == 1 and "not found" in err
    pid_file.write_text(f"{proc.pid}\n")  # the gateway is gone: a stale file is never signalled
    code, _, err = await _gateway("reload", "--pid-file", str(pid_file), env=env)
    assert code == 1 and "stale" in err
    pid_file.write_text("garbage\n")
    code, _, err = await _gateway("reload", "--pid-file", str(pid_file), env=env)
    assert code == 1 and "not a process id" in err


PROGRAMS = f"""
[[accounts]]
system_id = "acme"
password = "secret"
numbers = ["+{ALERTS}", "+{PROMO}"]

[[accounts.programs]]
name = "alerts"
category = "transactional"
numbers = ["+{ALERTS}"]

[[accounts.programs]]
name = "promo"
category = "marketing"
numbers = ["+{PROMO}"]
quiet_hours = "off"

[[optout.programs.keywords]]
program = "promo"
stop = ["STOP PROMO"]
start = ["PROMO"]
stop_reply = "You will get no more promo messages. STOP ends all."
"""


async def test_programs_and_their_keywords_take_effect_on_reload(make_gateway: GatewayFactory, sim: Simulator,
                                                                 config: Path) -> None:
    config.write_text(toml([{**ACME, "numbers": [f"+{ALERTS}", f"+{PROMO}"]}]))
    gateway = await make_gateway(config=config)
    assert gateway.optout is not None
    gateway.optout.clock = lambda: NOON_PST
    app = await bound(gateway)
    await mo(sim, app, MOBILE, ALERTS, "stop promo")  # no program yet: a message like any other
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == st.ESME_ROK
    config.write_text(PROGRAMS)
    result = gateway.reload()
    assert result and {"accounts", "optout.programs"} <= set(result.changed)
    await mo(sim, app, MOBILE, ALERTS, "stop promo")
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"no more promo" in p.raw)
    assert (await app.request(submit_sm(MOBILE, src=PROMO))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm(MOBILE, src=ALERTS))).command_status == st.ESME_ROK
    await app.close()


async def test_session_limits_apply_to_the_next_connection(make_gateway: GatewayFactory, sim: Simulator,
                                                           config: Path) -> None:
    gateway = await make_gateway(config=config)
    first = await bound(gateway)
    config.write_text(toml([ACME, OTHER], "[esme]\nmax_connections_per_ip = 1\n"))
    assert gateway.reload()
    second = await RawClient.connect(gateway.smpp_port)
    assert await second.closed()  # closed at once: the cap counts the session already open
    assert gateway.metrics.registry.get_sample_value(
        "gateway_connections_refused_total", {"reason": "max_connections_per_ip"}) == 1
    assert (await first.request(submit_sm())).command_status == st.ESME_ROK  # the open one stays
    await first.close()
