"""Every log event the gateway emits has a stable snake_case name listed in README's "Log events",
with the fields it carries: an AST walk over gateway/ finds each `log.<level>("name", extra=...)`."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LEVELS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})
SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
CONNECTION_FIELDS = ("peer", "side")  # Connection.log_extra


@dataclass
class Call:
    where: str
    name: str | None  # None: the message is not a literal string
    fields: list[str] = field(default_factory=list)
    extra_args: int = 0  # %-style arguments after the message


def _is_logger(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("log", "logger", "logging")
    if isinstance(node, ast.Call):  # logging.getLogger("...").warning(...)
        func = node.func
        return (isinstance(func, ast.Attribute) and func.attr == "getLogger") or (
            isinstance(func, ast.Name) and func.id == "getLogger")
    return False


def _fields(call: ast.Call) -> list[str]:
    out: list[str] = []
    for kw in call.keywords:
        if kw.arg != "extra":
            continue
        value = kw.value
        if isinstance(value, ast.Dict):
            out += [k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        elif isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "log_extra":
            out += [*CONNECTION_FIELDS, *(k.arg for k in value.keywords if k.arg is not None)]
    return out


def log_calls() -> list[Call]:
    calls = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS and _is_logger(node.func.value)):
                continue
            args = node.args[1:] if node.func.attr == "log" else node.args
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            message = args[0] if args else None
            name = message.value if isinstance(message, ast.Constant) and isinstance(message.value, str) else None
            calls.append(Call(where, name, _fields(node), len(args) - 1))
    return calls


def readme_rows() -> dict[str, str]:
    """event name -> its README row (a row may list several names), plus the simulator paragraph."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Log events", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            names_cell = line.split("|")[1]
            for name in re.findall(r"`([^`]+)`", names_cell):
                rows[name] = line
    simulator = section.split("The bundled simulator", 1)[1]
    for name, fields in re.findall(r"`(\w+)`\s+\(([^)]*)\)", simulator):
        rows.setdefault(f"simulator:{name}", fields)
    return rows


def test_the_walk_finds_the_log_calls() -> None:
    names = {c.name for c in log_calls()}
    assert {"gateway_started", "esme_bound", "optout_event", "config_warning", "reload_failed"} <= names
    assert len(names) > 60


def test_every_message_is_a_literal_snake_case_event_name() -> None:
    bad = [c.where for c in log_calls() if c.name is None or not SNAKE.fullmatch(c.name) or c.extra_args]
    assert bad == [], "log calls whose message is not a stable event name (facts go in extra=)"


def test_every_event_and_field_is_in_the_readme() -> None:
    rows = readme_rows()
    missing, fields_missing = [], []
    for call in log_calls():
        assert call.name is not None
        simulator = "/simulator/" in call.where
        row = rows.get(f"simulator:{call.name}") if simulator else rows.get(call.name)
        if row is None:
            missing.append(f"{call.where}: {call.name}")
            continue
        fields_missing += [f"{call.where}: {call.name}.{f}" for f in call.fields if f"`{f}`" not in row]
    assert missing == [], "log events not in README's Log events table"
    assert fields_missing == [], "fields not in the event's README row"


def test_readme_lists_no_event_the_gateway_does_not_emit() -> None:
    emitted = {c.name for c in log_calls()}
    listed = {name.removeprefix("simulator:") for name in readme_rows()}
    assert listed - emitted == set()
