"""The carrier leg over TLS against the simulator listening on TLS: verification, refusals, reload."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.tls import ServerFiles, build_server_context, subject_text
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.pki import Files, Pki
from tests.integration.test_http import http_get


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def carrier_context(files: Files, client_ca: Path | None = None) -> ssl.SSLContext:
    return build_server_context(ServerFiles("simulator", files.cert, files.key, client_ca))


@pytest.fixture
async def tls_sim_factory() -> AsyncIterator[Callable[[ssl.SSLContext], Any]]:
    started: list[Simulator] = []

    async def factory(ctx: ssl.SSLContext) -> Simulator:
        simulator = Simulator(host="127.0.0.1", smpp_port=0, http_port=None, tls=ctx)
        await simulator.start()
        started.append(simulator)
        return simulator

    yield factory
    for simulator in started:
        await simulator.stop()


def tls_carrier(sim: Simulator, pki: Pki, **extra: Any) -> dict[str, Any]:
    return {"port": sim.smpp_port, "tls": True, "tls_ca_file": str(pki.ca_file), **extra}


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def tls_failures(gateway: Gateway, reason: str) -> float:
    return float(gateway.metrics.carrier_tls_failures.labels(reason)._value.get())


async def test_verified_tls_carrier_carries_traffic(make_gateway: GatewayFactory, pki: Pki,
                                                    tls_sim_factory: Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.carrier")
    tsim = await tls_sim_factory(carrier_context(pki.issue("carrier")))
    gateway = await make_gateway(carrier=tls_carrier(tsim, pki))  # the name checked: the host, 127.0.0.1
    client = await RawClient.connect(gateway.smpp_port)
    assert (await client.bind()).command_status == st.ESME_ROK
    assert (await client.request(submit_sm(text="to a tls carrier"))).command_status == st.ESME_ROK
    await tsim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"to a tls carrier" in p.raw)
    bound = [r for r in caplog.records if r.getMessage() == "carrier_bound"]
    assert bound and bound[0].tls_version in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
    await client.close()


@pytest.mark.parametrize("case", ["wrong_host", "untrusted_ca", "expired"])
async def test_bad_carrier_certificate_is_refused_and_retried(make_gateway: GatewayFactory, pki: Pki,
                                                              tls_sim_factory: Any, case: str) -> None:
    files = pki.issue("carrier", expired=case == "expired")
    tsim = await tls_sim_factory(carrier_context(files))
    extra: dict[str, Any] = {"wrong_host": {"tls_server_name": "carrier.example"},
                             "untrusted_ca": {"tls_ca_file": str(pki.other_ca_file)}}.get(case, {})
    gateway = await make_gateway(wait_bound=False, carrier=tls_carrier(tsim, pki, **extra))
    await until(lambda: tls_failures(gateway, "certificate") >= 2)  # retried with backoff
    status, body = await http_get(gateway.http_port, "/readyz")
    assert status == 503
    assert "carrier TLS certificate rejected" in body
    expected = {"wrong_host": "Hostname mismatch", "untrusted_ca": "unable to get local issuer",
                "expired": "certificate has expired"}[case]
    assert expected in body
    _, metrics = await http_get(gateway.http_port, "/metrics")
    assert 'gateway_carrier_tls_failures_total{reason="certificate"}' in metrics
    assert not tsim.received and not gateway.proxy.carriers  # never bound, never downgraded to plaintext


async def test_tls_verify_false_binds_with_a_warning(make_gateway: GatewayFactory, pki: Pki,
                                                     tls_sim_factory: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.app")
    tsim = await tls_sim_factory(carrier_context(pki.issue("carrier", ca=pki.other_ca)))
    gateway = await make_gateway(carrier=tls_carrier(tsim, pki, tls_verify=False))
    assert gateway.proxy.carriers
    assert [r for r in caplog.records if r.getMessage() == "carrier_tls_unverified"]


async def test_carrier_mutual_tls_and_client_certificate_reload(make_gateway: GatewayFactory, pki: Pki,
                                                                tls_sim_factory: Any) -> None:
    """The carrier wants a client certificate; SIGHUP's new one is used by the next connection,
    while the session already bound keeps answering the carrier's enquire_link."""
    tsim = await tls_sim_factory(carrier_context(pki.issue("carrier"), client_ca=pki.ca_file))
    client_files = pki.issue("gw-client", "gw.example", common_name="gateway-2025")
    gateway = await make_gateway(carrier=tls_carrier(
        tsim, pki, sessions=2, tls_cert_file=str(client_files.cert), tls_key_file=str(client_files.key)))
    await until(lambda: tsim.bound_count == 2)

    def subjects() -> list[str]:
        return [subject_text(s.writer.get_extra_info("ssl_object").getpeercert()["subject"])
                for s in tsim._sessions if s.bound]

    assert all("CN=gateway-2025" in s for s in subjects())
    client_files.write(pki.ca.issue_cert("gw.example", common_name="gateway-2026"))
    assert gateway.reload()
    old, dropped = [s for s in tsim._sessions if s.bound]
    dropped.abort()
    await until(lambda: tsim.bound_count == 2 and dropped not in tsim._sessions)
    assert sorted(s.rsplit("CN=", 1)[1] for s in subjects()) == ["gateway-2025", "gateway-2026"]
    seq, _ = old.send_request(P.ENQUIRE_LINK, b"")
    resp = await tsim.wait_for(lambda p: p.command_id == P.ENQUIRE_LINK_RESP and p.sequence_number == seq)
    assert resp.command_status == st.ESME_ROK

    outsider = pki.issue("outsider", "gw.example", ca=pki.other_ca)  # a client cert from another CA
    client_files.cert.write_bytes(outsider.cert.read_bytes())
    client_files.key.write_bytes(outsider.key.read_bytes())
    assert gateway.reload()  # loads fine: it is the carrier that refuses it
    for session in [s for s in tsim._sessions if s.bound]:
        if session is not old:
            session.abort()
    await until(lambda: gateway.carrier.last_error is not None)
    assert "client certificate refused" in str(gateway.carrier.last_error)
    assert len(gateway.proxy.carriers) == 1  # the old session still carries traffic


async def test_carrier_handshake_that_never_completes_is_timed_out(make_gateway: GatewayFactory) -> None:
    """A carrier that accepts TCP and never answers the ClientHello: the attempt ends at bind_timeout,
    and the next one is TLS again."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gateway = await make_gateway(wait_bound=False, carrier={"port": port, "tls": True, "bind_timeout": 0.3})
        await until(lambda: len(accepted) >= 2 and gateway.carrier.last_error is not None)
        assert "carrier connection failed" in str(gateway.carrier.last_error)
        assert not gateway.proxy.carriers
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
