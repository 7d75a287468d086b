"""PDU counters over a real socket: unknown command ids never push known ones out."""

from __future__ import annotations

from gateway.app import Gateway
from gateway.smpp import pdu as P
from tests.integration.client import RawClient
from tests.integration.test_http import http_get


async def test_unknown_ids_before_bind_do_not_poison_known_counters(gateway: Gateway) -> None:
    client = await RawClient.connect(gateway.smpp_port)
    for n in range(70):
        answer = await client.request(P.encode(0x00A00000 + n, 0, 1))
        assert answer.command_id == P.GENERIC_NACK
    assert (await client.bind()).command_status == 0
    _, body = await http_get(gateway.http_port, "/metrics")
    assert 'gateway_pdus_total{command="bind_transceiver",direction="in",side="esme"} 1.0' in body
    assert 'gateway_pdus_total{command="unknown",direction="in",side="esme"} 70.0' in body
    assert 'gateway_pdus_total{command="bind_transceiver_resp",direction="out",side="esme"} 1.0' in body
    await client.close()
