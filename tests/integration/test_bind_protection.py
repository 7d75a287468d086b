"""Bind protection over real sockets: hashed passwords, allow lists from 127.0.0.2, lockout and its
exemption, connection caps, the session_init_timeout, and no password in any log line.

Any 127.x address is a local source: clients bind their socket to 127.0.0.2.. to be "another host".
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest
import smpplib.client
import smpplib.exceptions

from gateway import credentials
from gateway.app import Gateway
from gateway.logs import JsonFormatter
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, bind_pdu, submit_sm
from tests.integration.conftest import GatewayFactory

HASHED = str(credentials.hash_password(b"s3cr3tPw", n=1024))  # cheap cost for tests; the format is the same


async def connect(port: int, source: str = "127.0.0.1") -> RawClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return RawClient(reader, writer)


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    value = gateway.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def bind_status(port: int, source: str, system_id: str, password: str) -> tuple[int, bool]:
    """(bind_resp status, whether the gateway then closed the socket)."""
    client = await connect(port, source)
    resp = await client.bind(system_id, password)
    if resp.command_status == 0:
        await client.close()
        return 0, False
    return resp.command_status, await client.closed()


async def test_hashed_password_binds_and_submits(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=[{"system_id": "acme", "password_hash": HASHED}])
    assert await bind_status(gateway.smpp_port, "127.0.0.1", "acme", "s3cr3tPw") == (0, False)
    assert await bind_status(gateway.smpp_port, "127.0.0.1", "acme", "s3cr3tpw") == (st.ESME_RINVPASWD, True)
    assert await bind_status(gateway.smpp_port, "127.0.0.1", "ghost", "s3cr3tPw") == (st.ESME_RINVSYSID, True)
    client = await connect(gateway.smpp_port)
    assert (await client.bind("acme", "s3cr3tPw")).command_status == 0  # the cached verification
    assert (await client.request(submit_sm())).command_status == 0
    await client.close()


async def test_pdus_pipelined_behind_a_bind_wait_for_it_in_order(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=[{"system_id": "acme", "password_hash": HASHED}])
    client = await connect(gateway.smpp_port)
    client.send(bind_pdu(P.BIND_TRANSCEIVER, "acme", "s3cr3tPw", seq=1)
                + P.encode(P.ENQUIRE_LINK, 0, 2) + submit_sm(seq=3))  # one write: verified off the loop
    answers = [await client.read(timeout=5) for _ in range(3)]
    assert [(p.command_id, p.sequence_number, p.command_status) for p in answers] == [
        (P.BIND_TRANSCEIVER_RESP, 1, 0), (P.ENQUIRE_LINK_RESP, 2, 0), (P.SUBMIT_SM_RESP, 3, 0)]
    await client.close()


def _smpplib_bind(port: int, password: str) -> int:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transceiver(system_id="acme", password=password)
        client.unbind()
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        client.disconnect()
    return 0


async def test_hash_from_the_real_cli_binds_smpplib(make_gateway: GatewayFactory) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "hash-password", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(b"Pa55w\n"), 30)
    assert proc.returncode == 0, err
    lines = out.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scrypt$n=16384$r=8$p=1$")
    gateway = await make_gateway(accounts=[{"system_id": "acme", "password_hash": lines[0]}])
    assert await asyncio.to_thread(_smpplib_bind, gateway.smpp_port, "Pa55w") == 0  # the newline was stripped
    assert await asyncio.to_thread(_smpplib_bind, gateway.smpp_port, "Pa55w\n") == st.ESME_RINVPASWD


async def test_password_file_holds_a_password_or_a_hash(make_gateway: GatewayFactory, tmp_path: Any) -> None:
    (tmp_path / "acme").write_text("filepw\n")
    (tmp_path / "other").write_text(HASHED + "\n")
    gateway = await make_gateway(accounts=[{"system_id": "acme", "password_file": str(tmp_path / "acme")},
                                           {"system_id": "other", "password_file": str(tmp_path / "other")}])
    assert (await bind_status(gateway.smpp_port, "127.0.0.1", "acme", "filepw"))[0] == 0
    assert (await bind_status(gateway.smpp_port, "127.0.0.1", "other", "s3cr3tPw"))[0] == 0
    assert (await bind_status(gateway.smpp_port, "127.0.0.1", "acme", "filepw\n"))[0] == st.ESME_RINVPASWD  # stripped


async def test_allow_list_refuses_other_addresses(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(accounts=[
        {"system_id": "acme", "password": "secret", "allowed_ips": ["127.0.0.1", "127.0.1.0/24"]},
        {"system_id": "other", "password": "pw2"}])
    port = gateway.smpp_port
    assert await bind_status(port, "127.0.0.1", "acme", "secret") == (0, False)
    assert await bind_status(port, "127.0.1.9", "acme", "secret") == (0, False)
    assert await bind_status(port, "127.0.0.2", "acme", "secret") == (st.ESME_RBINDFAIL, True)
    assert await bind_status(port, "127.0.0.2", "acme", "wrong") == (st.ESME_RBINDFAIL, True)  # no guessing
    assert await bind_status(port, "127.0.0.2", "other", "pw2") == (0, False)  # no list: any address
    assert metric(gateway, "gateway_bind_failures_total", reason="ip_not_allowed") == 2


async def test_lockout_after_repeated_failures_and_only_for_that_address(
        make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    gateway = await make_gateway(esme={"lockout_threshold": 3, "lockout_window": 60, "lockout_duration": 300})
    port = gateway.smpp_port
    with caplog.at_level(logging.INFO):
        for password in ("bad1", "bad2", "bad3"):
            assert await bind_status(port, "127.0.0.3", "acme", password) == (st.ESME_RINVPASWD, True)
        for _ in range(3):  # locked: a correct password is refused too, and the socket closed
            assert await bind_status(port, "127.0.0.3", "acme", "secret") == (st.ESME_RBINDFAIL, True)
        assert await bind_status(port, "127.0.0.1", "acme", "secret") == (0, False)  # others unaffected
    assert metric(gateway, "gateway_bind_lockouts_total") == 1
    assert metric(gateway, "gateway_bind_failures_total", reason="locked_out") == 3
    events = [r.getMessage() for r in caplog.records if r.name.startswith("gateway")]
    assert events.count("bind_lockout") == 1  # once per lockout, not per attempt
    assert events.count("bind_refused") == 3  # the three wrong passwords; locked attempts are counted only


async def test_unknown_system_ids_count_towards_the_lockout(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"lockout_threshold": 2})
    for system_id in ("ghost1", "ghost2"):
        assert (await bind_status(gateway.smpp_port, "127.0.0.7", system_id, "x"))[0] == st.ESME_RINVSYSID
    assert (await bind_status(gateway.smpp_port, "127.0.0.7", "acme", "secret"))[0] == st.ESME_RBINDFAIL


async def test_lockout_exempt_addresses(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"lockout_threshold": 2, "lockout_exempt": ["127.0.0.4/31"]})
    for _ in range(4):
        assert (await bind_status(gateway.smpp_port, "127.0.0.5", "acme", "bad"))[0] == st.ESME_RINVPASWD
    assert await bind_status(gateway.smpp_port, "127.0.0.5", "acme", "secret") == (0, False)
    for _ in range(2):
        await bind_status(gateway.smpp_port, "127.0.0.6", "acme", "bad")
    assert (await bind_status(gateway.smpp_port, "127.0.0.6", "acme", "secret"))[0] == st.ESME_RBINDFAIL


async def test_no_password_in_any_log_line_during_failed_binds(
        make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    gateway = await make_gateway(
        accounts=[{"system_id": "acme", "password": "Qx7pLm2z"}, {"system_id": "hashed", "password_hash": HASHED}],
        esme={"lockout_threshold": 3})
    port = gateway.smpp_port
    secrets = ["Qx7pLm2z", "s3cr3tPw", "Wv8nRt4k", "Jh5gFd3s"]
    with caplog.at_level(logging.DEBUG):
        await bind_status(port, "127.0.0.8", "acme", "Wv8nRt4k")
        await bind_status(port, "127.0.0.8", "hashed", "Jh5gFd3s")
        await bind_status(port, "127.0.0.8", "ghost", "Qx7pLm2z")
        await bind_status(port, "127.0.0.8", "acme", "Qx7pLm2z")  # locked out: the right one
        for body in (b"acme\x00Qx7pLm2z", b"acme\x00Qx7pLm2z\x01\x00\x00\x34\x00\x00\x00"):
            malformed = await connect(port, "127.0.0.9")  # truncated; a password of 9 octets
            resp = await malformed.request(P.encode(P.BIND_TRANSMITTER, 0, 1, body))
            assert resp.command_status == st.ESME_RBINDFAIL and await malformed.closed()
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert any("bind_refused" in line for line in lines) and any("bind_lockout" in line for line in lines)
    for line in lines:
        assert not any(s in line for s in secrets), line


async def test_connection_caps_per_address_and_in_total(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"max_connections": 4, "max_connections_per_ip": 2})
    port = gateway.smpp_port
    first = [await connect(port, "127.0.0.10") for _ in range(2)]
    await first[1].wait(lambda: len(gateway.esme.connections) == 2)  # the server has counted them
    refused = await connect(port, "127.0.0.10")  # bound or not, a third from this address
    assert await refused.closed()
    assert (await first[0].bind()).command_status == 0  # the open ones are unharmed
    others = [await connect(port, "127.0.0.11") for _ in range(2)]
    assert (await others[1].request(P.encode(P.ENQUIRE_LINK, 0, 1))).command_status == 0
    beyond = await connect(port, "127.0.0.12")  # the global cap
    assert await beyond.closed()
    assert metric(gateway, "gateway_connections_refused_total", reason="max_connections_per_ip") == 1
    assert metric(gateway, "gateway_connections_refused_total", reason="max_connections") == 1
    assert metric(gateway, "gateway_esme_connections") == 4
    server_side = next(c for c in gateway.esme.connections if c.ip == "127.0.0.11")
    await others[0].close()
    await others[1].close()
    await asyncio.wait_for(server_side.closed_future, 5)
    again = await connect(port, "127.0.0.12")  # a closed connection frees its place
    assert (await again.request(P.encode(P.ENQUIRE_LINK, 0, 1))).command_status == 0
    for client in (*first, again):
        await client.close()


async def test_enquire_link_before_bind_does_not_keep_a_socket_open(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(esme={"session_init_timeout": 0.5})
    client = await connect(gateway.smpp_port)
    answered = 0
    async with asyncio.timeout(10):
        while True:  # keeps talking until the gateway closes it
            try:
                resp = await client.request(P.encode(P.ENQUIRE_LINK, 0, 1), timeout=5)
            except ConnectionError:
                break
            assert resp.command_status == 0
            answered += 1
    assert answered >= 1
    await client.close()


async def test_check_config_wrong_hash_is_one_line_and_exit_2() -> None:
    from tests.integration.test_cli import _env, _gateway

    accounts = json.dumps([{"system_id": "acme", "password_hash": "scrypt$n=16384$r=8$p=1$c2FsdA$short"}])
    code, out, err = await _gateway("check-config", env=_env(GATEWAY_ACCOUNTS=accounts))
    assert code == 2 and out == ""
    assert err.splitlines() == [("config error: accounts.0.password_hash: not a hash printed by "
                                 "`gateway hash-password` (expected scrypt$n=<N>$r=<r>$p=<p>$<salt>$<hash>)")]


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False), ("::1", False)])
async def test_check_config_warns_about_plaintext_passwords_off_loopback(host: str, warned: bool) -> None:
    from tests.integration.test_cli import _env, _gateway

    accounts = json.dumps([{"system_id": "plain", "password": "pw"}, {"system_id": "hashed", "password_hash": HASHED}])
    code, out, err = await _gateway("check-config", env=_env(GATEWAY_ACCOUNTS=accounts, GATEWAY_LISTEN__HOST=host))
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("config warning: accounts:")]
    assert len(warnings) == (1 if warned else 0)
    assert not warned or "'plain' has a plaintext password" in warnings[0]
    assert HASHED not in out and "s3cr3tPw" not in out  # the hash is masked too


async def test_carrier_password_file(make_gateway: GatewayFactory, sim: Simulator, tmp_path: Any) -> None:
    (tmp_path / "carrier").write_text("gwpw\n")
    gateway = await make_gateway(carrier={"password": "", "password_file": str(tmp_path / "carrier")})
    assert gateway.settings.carrier.password.get_secret_value() == "gwpw"  # and it bound (make_gateway waits)


async def test_a_check_that_errors_denies_and_closes(make_gateway: GatewayFactory,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(presented: bytes, stored: credentials.ScryptHash) -> bool:
        raise MemoryError("scrypt: memory limit exceeded")  # what OpenSSL can raise
    monkeypatch.setattr(credentials, "verify", broken)
    gateway = await make_gateway(accounts=[{"system_id": "acme", "password_hash": HASHED}],
                                 esme={"lockout_threshold": 2})
    assert await bind_status(gateway.smpp_port, "127.0.0.13", "acme", "s3cr3tPw") == (st.ESME_RBINDFAIL, True)
    assert metric(gateway, "gateway_bind_failures_total", reason="error") == 1
    await bind_status(gateway.smpp_port, "127.0.0.13", "acme", "s3cr3tPw")
    assert metric(gateway, "gateway_bind_lockouts_total") == 1  # errors count as failures


async def test_an_application_opening_all_its_binds_at_once_is_not_busy(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(accounts=[{"system_id": "acme", "password_hash": HASHED}],
                                 esme={"lockout_threshold": 2})
    clients = [await connect(gateway.smpp_port, "127.0.0.14") for _ in range(8)]
    for client in clients:  # all eight binds on the wire before the first scrypt ends: they share it
        client.send(bind_pdu(P.BIND_TRANSCEIVER, "acme", "s3cr3tPw", seq=1))
    answers = [await client.read(lambda p: p.command_id == P.BIND_TRANSCEIVER_RESP) for client in clients]
    assert [p.command_status for p in answers] == [0] * 8
    for client in clients:
        await client.close()
