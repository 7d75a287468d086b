"""SMPP over TLS for applications: versions, mutual TLS, bad input on both ports, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.consts

from gateway.app import Gateway, handle_sighup
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.pki import Files, Pki, client_hello, peer_certificate, tls_connect


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def listen_tls(files: Files, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": 0, "cert_file": str(files.cert), "key_file": str(files.key), **extra}


async def tls_gateway(make_gateway: GatewayFactory, pki: Pki, **extra: Any) -> tuple[Gateway, Files]:
    server = pki.issue("gateway")
    gateway = await make_gateway(listen_tls=listen_tls(server, **extra), esme={"session_init_timeout": 1.0})
    assert gateway.smpp_tls_port
    return gateway, server


async def bind_and_submit(client: RawClient, sim: Simulator) -> None:
    assert (await client.bind()).command_status == st.ESME_ROK
    resp = await client.request(submit_sm(text="over tls"))
    assert resp.command_status == st.ESME_ROK
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"over tls" in p.raw)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls12_and_tls13_bind_and_submit(make_gateway: GatewayFactory, sim: Simulator, pki: Pki,
                                               version: ssl.TLSVersion,
                                               caplog: pytest.LogCaptureFixture) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki)
    caplog.set_level(logging.INFO, logger="gateway.esme_server")
    client = await tls_connect(gateway.smpp_tls_port, pki.client_context(version=version))
    await bind_and_submit(client, sim)
    bound = [r for r in caplog.records if r.getMessage() == "esme_bound"]
    assert len(bound) == 1  # one line per bind, with the TLS facts
    assert bound[0].tls_version == version.name.replace("_", ".")  # type: ignore[attr-defined]
    assert bound[0].tls_cipher  # type: ignore[attr-defined]
    await client.close()


async def test_tls11_is_refused(make_gateway: GatewayFactory, sim: Simulator, pki: Pki) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki)
    with pytest.raises((ssl.SSLError, ConnectionError)):  # the alert, or the reset right after it
        await tls_connect(gateway.smpp_tls_port, pki.client_context(version=ssl.TLSVersion.TLSv1_1))
    assert not gateway.esme.connections
    client = await tls_connect(gateway.smpp_tls_port, pki.client_context())
    await bind_and_submit(client, sim)
    await client.close()


async def test_min_version_13_refuses_12(make_gateway: GatewayFactory, sim: Simulator, pki: Pki) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki, min_version="TLSv1.3")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await tls_connect(gateway.smpp_tls_port, pki.client_context(version=ssl.TLSVersion.TLSv1_2))
    client = await tls_connect(gateway.smpp_tls_port, pki.client_context(version=ssl.TLSVersion.TLSv1_3))
    await bind_and_submit(client, sim)
    await client.close()


async def test_smpplib_over_tls(make_gateway: GatewayFactory, sim: Simulator, pki: Pki) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki)
    ctx = pki.client_context()
    ctx.check_hostname = False  # smpplib wraps without a server name; the chain is still verified

    def session() -> int:
        client = smpplib.client.Client("127.0.0.1", gateway.smpp_tls_port, timeout=5, ssl_context=ctx,
                                       allow_unknown_opt_params=True)
        client.connect()
        try:
            client.bind_transceiver(system_id="acme", password="secret")
            pdu = client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_INTL, source_addr="14155550100",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr="14155550123",
                short_message=b"smpplib over tls")
            client.read_once()  # the submit_sm_resp
            client.unbind()
            return int(pdu.sequence)
        finally:
            client.disconnect()

    await asyncio.to_thread(session)
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"smpplib over tls" in p.raw)


async def test_mutual_tls(make_gateway: GatewayFactory, sim: Simulator, pki: Pki) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki, client_ca_file=str(pki.ca_file))
    port = gateway.smpp_tls_port
    good = await tls_connect(port, pki.client_context(pki.issue("app", "app.example", common_name="app1")))
    await bind_and_submit(good, sim)
    for files in (pki.issue("intruder", "app.example", ca=pki.other_ca), None):  # another CA; no certificate
        try:
            client = await tls_connect(port, pki.client_context(files))
        except (ssl.SSLError, ConnectionError):
            continue  # TLS 1.2: refused in the handshake
        with pytest.raises((ssl.SSLError, ConnectionError)):  # TLS 1.3: the alert comes with the first read
            await client.bind()
        await client.close()
    assert (await good.request(P.encode(P.ENQUIRE_LINK, 0, 1))).command_status == st.ESME_ROK
    await good.close()


async def test_peer_subject_logged_at_bind(make_gateway: GatewayFactory, sim: Simulator, pki: Pki,
                                           caplog: pytest.LogCaptureFixture) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki, client_ca_file=str(pki.ca_file))
    caplog.set_level(logging.INFO, logger="gateway.esme_server")
    client = await tls_connect(gateway.smpp_tls_port,
                               pki.client_context(pki.issue("app", "app.example", common_name="app1")))
    assert (await client.bind()).command_status == st.ESME_ROK
    bound = [r for r in caplog.records if r.getMessage() == "esme_bound"]
    assert "CN=app1" in bound[0].peer_subject  # type: ignore[attr-defined]
    await client.close()


# --- bad input: the one connection ends, the others keep working ----------------------


async def test_plaintext_on_the_tls_port_is_closed(make_gateway: GatewayFactory, sim: Simulator,
                                                   pki: Pki) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki)
    healthy = await tls_connect(gateway.smpp_tls_port, pki.client_context())
    assert (await healthy.bind()).command_status == st.ESME_ROK
    talker = await RawClient.connect(gateway.smpp_tls_port)
    talker.send(submit_sm())  # SMPP bytes where a ClientHello belongs
    assert await talker.closed()
    silent = await RawClient.connect(gateway.smpp_tls_port)  # says nothing: the handshake deadline
    assert await silent.closed(timeout=10)
    assert (await healthy.request(submit_sm())).command_status == st.ESME_ROK
    assert not gateway.esme.connections - {c for c in gateway.esme.connections if c.system_id == "acme"}
    await healthy.close()


async def test_handshake_stalled_halfway_is_closed(make_gateway: GatewayFactory, sim: Simulator,
                                                   pki: Pki) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki)
    stalled = await RawClient.connect(gateway.smpp_tls_port)
    stalled.send(client_hello()[:20])  # a ClientHello cut short, then nothing
    assert await stalled.closed(timeout=10)
    client = await tls_connect(gateway.smpp_tls_port, pki.client_context())
    await bind_and_submit(client, sim)
    await client.close()


async def test_client_hello_on_the_plaintext_port_is_garbage(make_gateway: GatewayFactory, sim: Simulator,
                                                             pki: Pki) -> None:
    gateway, _ = await tls_gateway(make_gateway, pki)
    healthy = await RawClient.connect(gateway.smpp_port)
    assert (await healthy.bind()).command_status == st.ESME_ROK
    hello = await RawClient.connect(gateway.smpp_port)
    hello.send(client_hello())
    nack = await hello.read()
    assert (nack.command_id, nack.command_status) == (P.GENERIC_NACK, st.ESME_RINVCMDLEN)
    assert await hello.closed()
    assert (await healthy.request(submit_sm())).command_status == st.ESME_ROK
    await healthy.close()


async def test_plaintext_listener_can_be_turned_off(make_gateway: GatewayFactory, sim: Simulator,
                                                    pki: Pki) -> None:
    server = pki.issue("gateway")
    gateway = await make_gateway(listen={"enabled": False, "port": 0}, listen_tls=listen_tls(server))
    assert gateway.smpp_port == 0 and len(gateway.esme.servers) == 1
    client = await tls_connect(gateway.smpp_tls_port, pki.client_context())
    await bind_and_submit(client, sim)
    await client.close()


# --- reload -----------------------------------------------------------------------------


async def reload_by_signal(gateway: Gateway) -> None:
    """A real SIGHUP to this process, through the handler `gateway run` installs."""
    reloads = gateway.metrics.config_reloads
    before = sum(reloads.labels(r)._value.get() for r in ("ok", "failed"))
    handle_sighup(gateway)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(5):
            while sum(reloads.labels(r)._value.get() for r in ("ok", "failed")) == before:
                await asyncio.sleep(0.01)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


async def test_sighup_swaps_the_certificate_for_new_handshakes_only(
        make_gateway: GatewayFactory, sim: Simulator, pki: Pki) -> None:
    gateway, files = await tls_gateway(make_gateway, pki)
    port = gateway.smpp_tls_port
    old = await tls_connect(port, pki.client_context())
    assert (await old.bind()).command_status == st.ESME_ROK
    first_cert = peer_certificate(old)

    files.write(pki.ca.issue_cert("localhost", "127.0.0.1", common_name="renewed"))
    await reload_by_signal(gateway)
    assert gateway.metrics.config_reloads.labels("ok")._value.get() == 1
    new = await tls_connect(port, pki.client_context())
    assert peer_certificate(new) != first_cert
    by_address = await tls_connect(port, pki.client_context(), server_hostname="127.0.0.1")  # sends no SNI
    assert peer_certificate(by_address) == peer_certificate(new)
    await by_address.close()
    assert (await new.bind()).command_status == st.ESME_ROK
    assert (await old.request(P.encode(P.ENQUIRE_LINK, 0, 1))).command_status == st.ESME_ROK
    assert (await old.request(submit_sm())).command_status == st.ESME_ROK
    second_cert = peer_certificate(new)

    files.cert.write_text("not a certificate\n")  # a broken renewal keeps the context we have
    await reload_by_signal(gateway)
    assert gateway.metrics.config_reloads.labels("failed")._value.get() == 1
    third = await tls_connect(port, pki.client_context())
    assert peer_certificate(third) == second_cert
    for client in (old, new, third):
        await client.close()


async def test_require_tls_refuses_a_plaintext_bind(make_gateway: GatewayFactory, sim: Simulator,
                                                    pki: Pki) -> None:
    server = pki.issue("gateway")
    accounts = [{"system_id": "acme", "password": "secret", "numbers": ["+14155550100"], "require_tls": True}]
    gateway = await make_gateway(listen_tls=listen_tls(server), accounts=accounts)
    plain = await RawClient.connect(gateway.smpp_port)
    refused = await plain.bind("acme", "secret")
    assert refused.command_status == st.ESME_RBINDFAIL  # the right password, the wrong listener
    assert await plain.closed()
    assert gateway.metrics.registry.get_sample_value(
        "gateway_bind_failures_total", {"reason": "tls_required"}) == 1
    secure = await tls_connect(gateway.smpp_tls_port, pki.client_context())
    await bind_and_submit(secure, sim)
    await secure.close()


def expiry_series(gateway: Gateway) -> dict[tuple[str, str, str], float]:
    family = next(iter(gateway.metrics.certificate_expiry.collect()))
    return {(s.labels["listener"], s.labels["role"], s.labels["file"]): s.value for s in family.samples}


async def test_certificate_expiry_metric_follows_sighup(make_gateway: GatewayFactory, pki: Pki) -> None:
    first = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    server = pki.issue("gateway")
    server.write(pki.ca.issue_cert("localhost", "127.0.0.1", not_after=first))
    gateway = await make_gateway(listen_tls=listen_tls(server, client_ca_file=str(pki.ca_file)))
    assert expiry_series(gateway) == {
        ("listen_tls", "certificate", str(server.cert)): first.timestamp(),
        ("listen_tls", "client_ca", str(pki.ca_file)): datetime(3000, 1, 1, tzinfo=UTC).timestamp(),  # trustme's CA
    }
    renewed = datetime(2032, 6, 7, 8, 9, 10, tzinfo=UTC)
    server.write(pki.ca.issue_cert("localhost", "127.0.0.1", not_after=renewed))
    await reload_by_signal(gateway)
    assert expiry_series(gateway)[("listen_tls", "certificate", str(server.cert))] == renewed.timestamp()
    assert gateway.metrics.registry.get_sample_value(
        "gateway_certificate_expiry_seconds",
        {"listener": "listen_tls", "role": "certificate", "file": str(server.cert)}) == renewed.timestamp()
    server.cert.write_text("not a certificate\n")  # a failed reload keeps the files in use, and their expiry
    await reload_by_signal(gateway)
    assert expiry_series(gateway)[("listen_tls", "certificate", str(server.cert))] == renewed.timestamp()
