"""Every gateway_* metric the Grafana dashboards and the alert rules in deploy/ read is one a running
gateway really exports: scraped from /metrics over HTTP, histogram and counter suffixes resolved."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.simulator import Simulator
from tests.deploy import dashboard_expressions, metric_names, rule_expressions
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.pki import Pki
from tests.integration.test_http import http_get
from tests.integration.test_tls_listener import listen_tls

_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.MULTILINE)
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count", "_created"), "summary": ("", "_sum", "_count", "_created"),
             "counter": ("", "_total", "_created"), "gauge": ("",)}


def exported_names(text: str) -> set[str]:
    """Names a query may use: every sample's, and each declared family's with its type's suffixes
    (a labelled family that has no sample yet is still exported: its # TYPE line is there)."""
    names = set(_SAMPLE.findall(text))
    for family, kind in _TYPE.findall(text):
        base = family.removesuffix("_total") if kind == "counter" else family
        names.update(base + suffix for suffix in _SUFFIXES.get(kind, ("",)))
    return names


def test_exported_names_resolve_suffixes() -> None:
    text = ("# TYPE gateway_x_seconds histogram\ngateway_x_seconds_bucket{le=\"+Inf\"} 1.0\n"
            "# TYPE gateway_y_total counter\n# TYPE gateway_z gauge\n")
    names = exported_names(text)
    assert {"gateway_x_seconds_bucket", "gateway_x_seconds_count", "gateway_y_total", "gateway_z"} <= names
    assert not {"gateway_x_seconds", "gateway_y_bucket", "gateway_z_total"} & names
    assert metric_names('sum(rate(gateway_y_total{reason!="gateway_q"}[5m])) / gateway_z') == {
        "gateway_y_total", "gateway_z"}


async def test_dashboard_and_alert_metrics_exist(make_gateway: GatewayFactory, sim: Simulator, tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    gateway = await make_gateway(listen_tls=listen_tls(pki.issue("gateway")))
    client = await RawClient.connect(gateway.smpp_port)
    await client.bind()
    assert (await client.request(submit_sm())).command_status == 0
    status, body = await http_get(gateway.http_port, "/metrics")
    assert status == 200
    exported = exported_names(body)
    expressions = [*dashboard_expressions(), *rule_expressions()]
    used: dict[str, list[str]] = {}
    for where, expr in expressions:
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    assert len(list(rule_expressions())) >= 9 and len(used) >= 25  # the parsers found the expressions
    missing = {name: places for name, places in used.items() if name not in exported}
    assert missing == {}, "metrics the dashboards or alerts read that the gateway does not export"
    await client.close()
