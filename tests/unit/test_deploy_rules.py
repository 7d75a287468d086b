"""deploy/: the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`),
prometheus.yml passes `promtool check config`, every dashboard expression parses as PromQL, and
alertmanager.yml passes `amtool check-config`. promtool comes with Debian's `prometheus` package
(.ci/run installs it); without it these tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy import (
    DASHBOARDS,
    DEPLOY,
    RULE_FILES,
    RULE_TESTS,
    as_promql,
    dashboard_expressions,
)
from tests.pg import in_ci


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (apt-get install --no-install-recommends {package})"
        if in_ci():
            pytest.fail(f"{reason}; CI=true: the deploy checks must run", pytrace=False)
        pytest.skip(reason)
    return path


def run(*args: str, cwd: Path = DEPLOY) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_rules_pass_promtool_check() -> None:
    promtool = tool("promtool", "prometheus")
    out = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert "SUCCESS" in out


def test_rule_unit_tests_pass() -> None:
    promtool = tool("promtool", "prometheus")
    assert "SUCCESS" in run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = "".join(p.read_text() for p in RULE_FILES)
    alerts = {line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")}
    tests = RULE_TESTS.read_text()
    fired = {line.split(":", 1)[1].strip() for line in tests.splitlines() if line.strip().startswith("alertname:")}
    quiet = {part.split(":", 1)[1].strip() for line in tests.splitlines() if "exp_alerts: []" in line
             for part in line.split(",") if "alertname:" in part}
    assert len(alerts) >= 9
    assert alerts - fired == set(), "alerts no test sees firing"
    assert alerts - quiet == set(), "alerts no test sees quiet"


def test_prometheus_config_loads_the_rules() -> None:
    promtool = tool("promtool", "prometheus")
    out = run(promtool, "check", "config", "prometheus.yml")
    assert f"{len(RULE_FILES)} rule files found" in out


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    expressions = list(dashboard_expressions())
    assert DASHBOARDS and len(expressions) > 20
    # each expression as a recording rule: `check rules` parses every one and names the bad one
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, (_, expr) in enumerate(expressions):
        query = as_promql(expr)
        if query.startswith("label_values("):  # a Grafana function: check its metric selector
            query = query[len("label_values("):].rsplit(",", 1)[0]
        lines += [f"      - record: dashboard:expr_{n}", f"        expr: '{query.replace(chr(39), chr(39) * 2)}'"]
    rules = tmp_path / "dashboard.yml"
    rules.write_text("\n".join(lines) + "\n")
    assert f"SUCCESS: {len(expressions)} rules found" in run(promtool, "check", "rules", str(rules))


def test_alertmanager_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (apt-get install --no-install-recommends prometheus-alertmanager)")
    assert "SUCCESS" in run(amtool, "check-config", "alertmanager.yml")


def test_compose_provisions_the_dashboard_and_the_rules() -> None:
    """Without docker: the mounts in compose.yaml are where the provisioning files and
    prometheus.yml look, and the dashboard is well-formed for Grafana's provider."""
    compose = (DEPLOY / "compose.yaml").read_text()
    provider = (DEPLOY / "grafana/provisioning/dashboards/gateway.yml").read_text()
    dashboards_path = provider.split("path:", 1)[1].split()[0]
    assert f"./grafana/dashboards:{dashboards_path}:ro" in compose
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in compose
    assert "url: http://prometheus:9090" in (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose
    assert "./prometheus:/etc/prometheus/prometheus:ro" in compose  # rule_files: prometheus/alerts.yml
    assert "- prometheus/alerts.yml" in (DEPLOY / "prometheus.yml").read_text()
    assert "./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in compose
    assert 'targets: ["alertmanager:9093"]' in (DEPLOY / "prometheus.yml").read_text()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        panels = dashboard["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids))
        for panel in panels:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
                assert panel["targets"], panel["title"]
