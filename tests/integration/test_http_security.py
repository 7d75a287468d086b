"""The HTTP endpoint: bearer token for /metrics (inline or from a file, re-read on reload), HTTPS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from gateway.simulator import Simulator
from tests.integration.conftest import GatewayFactory
from tests.integration.pki import Pki


async def get(port: int, path: str, token: str | None = None,
              tls: ssl.SSLContext | None = None, seen: list[bytes] | None = None) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                   server_hostname="localhost" if tls else None)
    if seen is not None:
        seen.append(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


async def test_metrics_token(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(http={"metrics_token": "s3cr3t-scrape"})
    port = gateway.http_port
    assert (await get(port, "/metrics"))[0] == 401
    assert (await get(port, "/metrics", "wrong"))[0] == 401
    assert (await get(port, "/metrics", "s3cr3t-scrape-and-more"))[0] == 401
    status, body = await get(port, "/metrics", "s3cr3t-scrape")
    assert status == 200 and "gateway_pdus_total" in body
    assert (await get(port, "/healthz"))[0] == 200  # probes need no token
    assert (await get(port, "/readyz"))[0] == 200


async def test_metrics_token_file_is_reread_on_reload(make_gateway: GatewayFactory, sim: Simulator,
                                                      tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    gateway = await make_gateway(http={"metrics_token_file": str(token_file)})
    assert (await get(gateway.http_port, "/metrics", "first-token"))[0] == 200
    token_file.write_text("second-token\n")
    assert gateway.reload()
    assert (await get(gateway.http_port, "/metrics", "first-token"))[0] == 401
    assert (await get(gateway.http_port, "/metrics", "second-token"))[0] == 200
    token_file.unlink()  # gone: the token we have stays
    assert not gateway.reload()
    assert (await get(gateway.http_port, "/metrics", "second-token"))[0] == 200


async def test_https_endpoint_and_reload(make_gateway: GatewayFactory, sim: Simulator, tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    files = pki.issue("http")
    gateway = await make_gateway(http={"cert_file": str(files.cert), "key_file": str(files.key),
                                       "metrics_token": "tok"})
    ctx = pki.client_context()
    seen: list[bytes] = []
    assert (await get(gateway.http_port, "/metrics", "tok", tls=ctx, seen=seen))[0] == 200
    with pytest.raises((ValueError, ConnectionError, IndexError, ssl.SSLError)):
        await get(gateway.http_port, "/healthz")  # plaintext HTTP to the HTTPS port gets no answer
    files.write(pki.ca.issue_cert("localhost", "127.0.0.1", common_name="renewed"))
    assert gateway.reload()
    assert (await get(gateway.http_port, "/readyz", tls=ctx, seen=seen))[0] == 200
    assert seen[0] != seen[1]  # the renewed certificate
