"""The admin HTTP API on the gateway's HTTP port: JSON in and out, RFC 9457 problems for errors.

A Mount of gateway.httpd: it claims /v1/... and /openapi.json once a token is configured
(http.api_tokens; none: the paths are not routed and answer 404). Order of checks for every
request: the route (404, 405), the token (401) and its role (403), then the input (415, 422);
only then does an operation of operations.py run, so bad input changes nothing. A write is
applied to this gateway's block index before the answer (catch_up of the index sync); the other
gateways on the store get it from the event log.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ValidationError

from gateway.admin import models as m
from gateway.admin import operations as ops
from gateway.admin.auth import ApiTokens, Grant
from gateway.admin.openapi import document
from gateway.admin_rows import InputError
from gateway.config import effective
from gateway.errors import StoreError
from gateway.httpd import REASONS, Headers, HttpError, Reply, Request
from gateway.logs import redact
from gateway.store.base import BlockKey, Store

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
PROBLEM_TYPE = "tag:smpp-optout-gateway,2024:problem/"  # + slug; about:blank for plain HTTP errors


class Host(Protocol):
    """What the API needs of the running gateway (gateway.app.Gateway)."""

    settings: Any

    @property
    def store(self) -> Store | None: ...

    @property
    def sync(self) -> Any: ...

    def reload(self) -> Any: ...


class ProblemError(Exception):
    def __init__(self, status: int, detail: str, slug: str = "", errors: list[dict[str, Any]] | None = None,
                 title: str = "", headers: Headers = ()) -> None:
        super().__init__(detail)
        self.status, self.detail, self.slug, self.errors = status, detail, slug, errors
        self.title = title or REASONS.get(status, "Error")
        self.headers = headers


def problem(status: int, detail: str, slug: str = "", title: str = "",
            errors: list[dict[str, Any]] | None = None, headers: Headers = ()) -> Reply:
    body = m.Problem(type=PROBLEM_TYPE + slug if slug else "about:blank",
                     title=title or REASONS.get(status, "Error"), status=status, detail=detail,
                     errors=errors)
    return status, PROBLEM, json.dumps(body.model_dump(mode="json", exclude_none=True)).encode(), headers


def ok(status: int, model: BaseModel) -> Reply:
    return status, "application/json", m.dump(model), ()


Action = Callable[["AdminApi", Request, dict[str, str], Grant], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    role: str
    action: Action


class AdminApi:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.tokens = ApiTokens(host.settings.http.api_tokens)
        self._document: bytes | None = None

    # -- the Mount protocol --------------------------------------------------------

    def claims(self, path: str) -> bool:
        return self.tokens.enabled and (path == "/openapi.json" or path == "/v1" or path.startswith("/v1/"))

    def error(self, status: int, reason: str) -> Reply:
        return problem(status, reason)

    async def handle(self, request: Request) -> Reply:
        try:
            return await self._dispatch(request)
        except ProblemError as exc:
            return problem(exc.status, exc.detail, exc.slug, exc.title, exc.errors, exc.headers)
        except InputError as exc:
            return problem(422, str(exc), "invalid-input", "Invalid input")
        except StoreError as exc:
            log.warning("admin_api_store_error", extra={"path": request.path, "error": str(exc)})
            return problem(503, "the store is unavailable; try again", "store-unavailable")
        except HttpError as exc:
            return problem(exc.status, exc.reason)

    async def _dispatch(self, request: Request) -> Reply:
        if request.path == "/openapi.json":
            if request.method != "GET":
                raise ProblemError(405, "use GET", headers=(("Allow", "GET"),))
            if self._document is None:
                self._document = json.dumps(document(), ensure_ascii=False).encode()
            return 200, "application/json", self._document, ()
        route, params = self._route(request)
        grant = self.tokens.grant(request.headers)
        if grant is None:
            raise ProblemError(401, "send 'Authorization: Bearer <token>' with a configured token", "unauthorized",
                               headers=(("WWW-Authenticate", 'Bearer realm="gateway admin"'),))
        if not grant.allows(route.role):
            raise ProblemError(403, f"this route needs a {route.role} token; {grant.name} is {grant.role}",
                               "forbidden")
        return await route.action(self, request, params, grant)

    def _route(self, request: Request) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in ROUTES:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method == request.method:
                try:
                    return route, {k: unquote(v, errors="strict") for k, v in match.groupdict().items()}
                except UnicodeDecodeError:
                    raise ProblemError(400, "the path is not UTF-8", "malformed-path") from None
            allowed.append(route.method)
        if allowed:
            raise ProblemError(405, f"use {' or '.join(allowed)}", headers=(("Allow", ", ".join(allowed)),))
        raise ProblemError(404, f"no route {request.path}", "no-route")

    # -- helpers --------------------------------------------------------------------

    @property
    def site(self) -> ops.Site:
        return ops.Site.of(self.host.settings)

    def _store(self) -> Store:
        store = self.host.store
        if store is None:
            raise ProblemError(503, "this gateway runs without a store", "store-unavailable")
        return store

    async def _enforce(self) -> None:
        """This gateway's index takes the change now (the others follow the event log)."""
        sync = self.host.sync
        if sync is None:
            return
        try:
            await sync.catch_up()
        except StoreError as exc:  # the change is durable: the index poll applies it when the store is back
            log.warning("admin_api_enforce_deferred", extra={"error": str(exc)})

    def _log(self, op: str, grant: Grant, done: ops.Outcome, operator: str) -> None:
        log.info("admin_api_change", extra={"op": op, "token": grant.name, "operator": operator,
                                            "number": redact(done.key.number), "scope": done.key.scope,
                                            "changed": done.changed, "event_id": done.event_id})


def _body(request: Request, model: type[m.BaseModelT]) -> m.BaseModelT:
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ProblemError(415, f"Content-Type {ctype!r}: send application/json", "unsupported-media-type")
    try:
        data = json.loads(request.body) if request.body.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep for the parser
        raise ProblemError(400, "the body is not JSON", "malformed-json") from None
    if not isinstance(data, dict):
        raise ProblemError(422, "the body must be a JSON object", "invalid-input", title="Invalid input")
    return _validated(model, data)


def _query(request: Request, model: type[m.BaseModelT]) -> m.BaseModelT:
    try:
        pairs = parse_qsl(request.query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise ProblemError(400, "the query string is malformed", "malformed-query") from None
    data: dict[str, str] = {}
    for name, value in pairs:
        if name in data:
            raise ProblemError(422, f"query parameter {name!r} given twice", "invalid-input", title="Invalid input")
        data[name] = value
    return _validated(model, data)


def _validated(model: type[m.BaseModelT], data: dict[str, Any]) -> m.BaseModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['loc'] or 'body'}: {e['msg']}" for e in errors)
        raise ProblemError(422, detail, "invalid-input", errors=errors, title="Invalid input") from None


def _cursor(key: BlockKey | None) -> str | None:
    if key is None:
        return None
    raw = json.dumps([key.number, key.counterpart, key.scope], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str | None) -> BlockKey | None:
    if cursor is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        values = None
    if not (isinstance(values, list) and len(values) == 3 and all(isinstance(v, str) for v in values)):
        raise ProblemError(422, "cursor: not one this API gave", "invalid-input", title="Invalid input")
    return BlockKey(*values)


def _change(done: ops.Outcome) -> m.ChangeOut:
    k = done.key
    return m.ChangeOut(changed=done.changed, event_id=done.event_id,
                       key=m.KeyOut(number=k.number, counterpart=k.counterpart, scope=k.scope),
                       block=m.BlockOut.of(done.block) if done.block else None)


# -- the routes -----------------------------------------------------------------------


async def list_blocks(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    q = _query(request, m.BlockQuery)
    query = ops.BlockQuery(number=q.number, scope=q.scope, kind=q.kind, counterpart=q.counterpart,
                           account=q.account, limit=q.limit, after=_after(q.cursor))
    page = await ops.list_blocks(api._store(), api.site, query)
    return ok(200, m.BlockPage(blocks=[m.BlockOut.of(b) for b in page.blocks], next_cursor=_cursor(page.last)))


async def get_blocks(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    _query(request, m.NoQuery)
    number, blocks = await ops.blocks_of(api._store(), api.site, params["number"])
    return ok(200, m.NumberBlocks(number=number, blocked=bool(blocks), blocks=[m.BlockOut.of(b) for b in blocks]))


async def add_block(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    _query(request, m.NoQuery)
    body = _body(request, m.BlockAdd)
    site = api.site
    key = ops.key(body.number, body.counterpart, body.scope, site)
    done = await ops.add_block(api._store(), site, key, body.kind, ops.Actor(body.operator, body.reason))
    await api._enforce()
    api._log("admin_add", grant, done, body.operator)
    return ok(201 if done.changed else 200, _change(done))


async def remove_block(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    _query(request, m.NoQuery)
    body = _body(request, m.BlockRemove)
    site = api.site
    key = ops.key(params["number"], body.counterpart, body.scope, site)
    done = await ops.remove_block(api._store(), site, key, body.kind, ops.Actor(body.operator, body.reason))
    await api._enforce()
    api._log("admin_remove", grant, done, body.operator)
    return ok(200, _change(done))


async def add_optout(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    _query(request, m.NoQuery)
    body = _body(request, m.OptoutIn)
    done = await ops.record_optout(api._store(), api.site, body.number, body.channel, body.at,
                                   ops.Actor(body.operator or grant.name, body.reason),
                                   counterpart=body.counterpart, scope=body.scope)
    await api._enforce()
    api._log("optout", grant, done, body.operator)
    return ok(201 if done.changed else 200, _change(done))


async def number_events(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    q = _query(request, m.EventQuery)
    until = float("inf") if q.until is None else q.until
    number, events = await ops.number_events(api._store(), api.site, params["number"], q.since, until, q.limit)
    return ok(200, m.EventsOut(number=number, events=[m.EventOut.of(e) for e in events]))


async def get_config(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    _query(request, m.NoQuery)
    return 200, "application/json", effective(api.host.settings).encode(), ()


async def reload(api: AdminApi, request: Request, params: dict[str, str], grant: Grant) -> Reply:
    _query(request, m.NoQuery)
    result = api.host.reload()
    if inspect.isawaitable(result):
        result = await result
    log.info("admin_api_reload", extra={"token": grant.name, "ok": bool(result)})
    details = result.as_dict() if hasattr(result, "as_dict") else {"ok": bool(result)}
    return ok(200, m.ReloadOut(**details))


NUMBER = r"[^/]+"
ROUTES: tuple[Route, ...] = tuple(Route(method, re.compile(path), role, action) for method, path, role, action in (
    ("GET", r"/v1/blocks", "read", list_blocks),
    ("POST", r"/v1/blocks", "write", add_block),
    ("GET", rf"/v1/blocks/(?P<number>{NUMBER})", "read", get_blocks),
    ("DELETE", rf"/v1/blocks/(?P<number>{NUMBER})", "write", remove_block),
    ("POST", r"/v1/optouts", "write", add_optout),
    ("GET", rf"/v1/events/(?P<number>{NUMBER})", "read", number_events),
    ("GET", r"/v1/config", "read", get_config),
    ("POST", r"/v1/reload", "write", reload),
))
