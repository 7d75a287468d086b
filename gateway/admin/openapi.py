"""The admin API's OpenAPI 3.1 document, built from the pydantic models of models.py
(OpenAPI 3.1 schemas are JSON Schema 2020-12, which pydantic writes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.admin import models as m

REF = "#/components/schemas/{model}"
PROBLEM = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}
NUMBER_PARAM = {"name": "number", "in": "path", "required": True,
                "description": m.NUMBER, "schema": {"type": "string", "minLength": 1, "maxLength": 40}}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel] | None, description: str) -> dict[str, Any]:
    schema = {"type": "object"} if model is None else _ref(model)
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _params(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Query parameters: the model's fields, without the null a missing parameter stands for."""
    schema = model.model_json_schema()
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if branches:
            prop.update(branches[0])
        if prop.get("default") is None:
            prop.pop("default", None)
        prop.pop("title", None)
        description = prop.pop("description", "")
        param = {"name": name, "in": "query", "required": False, "schema": prop}
        if description:
            param["description"] = description
        out.append(param)
    return out


def _op(op_id: str, summary: str, role: str, responses: dict[str, Any], *,
        body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
        number: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id, "summary": summary, "description": f"Needs a {role} token.",
        "security": [{"bearer": []}],
        "responses": {**responses, "default": {"description": "a problem (RFC 9457)", "content": PROBLEM}},
    }
    params = ([NUMBER_PARAM] if number else []) + (_params(query) if query else [])
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


def document() -> dict[str, Any]:
    _, defs = models_json_schema([(model, "validation") for model in (*m.REQUESTS, *m.RESPONSES)],
                                 ref_template=REF)
    change = {"200": _json(m.ChangeOut, "nothing to change: the store already was in that state"),
              "201": _json(m.ChangeOut, "changed, and enforced by this gateway")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "SMPP opt-out gateway admin API", "version": __version__,
                 "description": "Blocks, opt-outs from other channels, the audit trail, configuration."},
        "components": {"schemas": defs.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/blocks": {
                "get": _op("listBlocks", "A page of blocks, filtered", "read",
                           {"200": _json(m.BlockPage, "a page")}, query=m.BlockQuery),
                "post": _op("addBlock", "Block a key (default kind admin)", "write", change, body=m.BlockAdd),
            },
            "/v1/blocks/{number}": {
                "get": _op("getBlocks", "Every block of one mobile", "read",
                           {"200": _json(m.NumberBlocks, "its blocks (none: blocked false)")}, number=True),
                "delete": _op("removeBlock", "Lift a key's block", "write",
                              {"200": _json(m.ChangeOut, "lifted (changed) or not blocked")},
                              body=m.BlockRemove, number=True),
            },
            "/v1/optouts": {
                "post": _op("addOptout", "Record an opt-out taken on another channel", "write", change,
                            body=m.OptoutIn),
            },
            "/v1/events/{number}": {
                "get": _op("numberEvents", "One mobile's audit events", "read",
                           {"200": _json(m.EventsOut, "in id order")}, query=m.EventQuery, number=True),
            },
            "/v1/config": {
                "get": _op("getConfig", "The effective configuration, secrets masked", "read",
                           {"200": _json(None, "as `gateway check-config` prints it")}),
            },
            "/v1/reload": {
                "post": _op("reload", "Reload the configuration (as SIGHUP)", "write",
                            {"200": _json(m.ReloadOut, "done; ok false when a part kept its old state")}),
            },
        },
    }
