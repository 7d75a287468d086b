"""/metrics, /healthz, /readyz on the gateway's HTTP port."""

from __future__ import annotations

import asyncio

from gateway.app import Gateway
from gateway.simulator import Simulator
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


async def test_readyz_waits_for_carrier(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(wait_bound=False, carrier={"port": 1})
    status, body = await http_get(gateway.http_port, "/readyz")
    assert status == 503 and "carrier" in body
    assert (await http_get(gateway.http_port, "/healthz"))[0] == 200
    assert "gateway_ready 0.0" in (await http_get(gateway.http_port, "/metrics"))[1]


async def test_readyz_ok_when_bound(gateway: Gateway) -> None:
    assert (await http_get(gateway.http_port, "/readyz"))[0] == 200
    assert "gateway_ready 1.0" in (await http_get(gateway.http_port, "/metrics"))[1]
    assert (await http_get(gateway.http_port, "/nope"))[0] == 404


async def test_metrics_count_traffic(gateway: Gateway, sim: Simulator) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    assert (await client.request(submit_sm())).command_status == 0
    status, body = await http_get(gateway.http_port, "/metrics")
    assert status == 200
    assert 'gateway_pdus_total{command="submit_sm",direction="in",side="esme"} 1.0' in body
    assert 'gateway_pdus_total{command="submit_sm",direction="out",side="carrier"} 1.0' in body
    assert 'gateway_esme_sessions{account="acme"} 1.0' in body
    assert "gateway_carrier_sessions_bound 1.0" in body
    assert 'gateway_request_latency_seconds_count 1.0' in body
    assert 'gateway_inflight{side="carrier"} 0.0' in body
    await client.close()


async def test_garbage_http_does_not_break_the_endpoint(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.http_port)
    writer.write(b"\x00\xff garbage\r\n\r\n")
    await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    assert (await http_get(gateway.http_port, "/healthz"))[0] == 200


async def test_mt_and_latency_by_account(gateway: Gateway, sim: Simulator) -> None:
    acme, other = await RawClient.connect(gateway.smpp_port), await RawClient.connect(gateway.smpp_port)
    await acme.bind()
    await other.bind("other", "pw2")
    for _ in range(3):
        assert (await acme.request(submit_sm())).command_status == 0
    assert (await other.request(submit_sm(src="14155550177"))).command_status == 0
    _, body = await http_get(gateway.http_port, "/metrics")
    for account, n in (("acme", 3), ("other", 1)):
        assert f'gateway_account_pdus_total{{account="{account}",command="submit_sm",direction="in"}} {n}.0' in body
        assert (f'gateway_account_pdus_total{{account="{account}",command="submit_sm_resp",direction="out"}} '
                f'{n}.0') in body
        assert f'gateway_account_request_latency_seconds_count{{account="{account}"}} {n}.0' in body
        assert f'gateway_account_request_latency_seconds_bucket{{account="{account}",le="+Inf"}} {n}.0' in body
    # the totals are the sums, the binds (counted before the account is known) included
    assert 'gateway_pdus_total{command="submit_sm",direction="in",side="esme"} 4.0' in body
    assert 'gateway_pdus_total{command="bind_transceiver",direction="in",side="esme"} 2.0' in body
    assert 'gateway_request_latency_seconds_count 4.0' in body
    await acme.close()
    await other.close()
