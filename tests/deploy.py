"""The PromQL in deploy/: every expression of the Grafana dashboards and the alert rules, and the
metric names each one uses. Shared by the promtool tests and the live /metrics check."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = [DEPLOY / "prometheus" / "alerts.yml"]
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GATEWAY_NAME = re.compile(r"\b(gateway_[a-zA-Z0-9_]+)\b")
_EXPR = re.compile(r"^(\s*)(?:-\s+)?expr:\s*(.*)$")


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every target expression and query variable of every dashboard."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if variable.get("type") == "query":
                text = query.get("query", "") if isinstance(query, dict) else str(query)
                yield f"{path.name}: variable {variable['name']}", text
        yield from _panel_expressions(path.name, dashboard.get("panels", []))


def _panel_expressions(where: str, panels: list[dict[str, object]]) -> Iterator[tuple[str, str]]:
    for panel in panels:
        for target in panel.get("targets", []):  # type: ignore[attr-defined]
            if target.get("expr"):
                yield f"{where}: panel {panel.get('title')!r} {target.get('refId')}", target["expr"]
        yield from _panel_expressions(where, panel.get("panels", []))  # type: ignore[arg-type]


def rule_expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every rule: `expr:` on one line, or a block scalar (| or >) below it."""
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            m = _EXPR.match(line)
            if m is None:
                continue
            indent, value = len(m.group(1)), m.group(2).strip()
            if value[:1] in ("|", ">"):
                block = []
                for following in lines[n + 1:]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                value = " ".join(block)
            yield f"{path.name}:{n + 1}", value


def metric_names(expr: str) -> set[str]:
    """The gateway_* metric names an expression reads (label values and other strings ignored)."""
    return set(_GATEWAY_NAME.findall(_STRING.sub('""', expr)))


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, so promtool can parse it."""
    for variable, value in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")):
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)
