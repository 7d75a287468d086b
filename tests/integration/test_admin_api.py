"""The admin HTTP API against a running gateway over real sockets, on SQLite and PostgreSQL:
tokens and roles, blocks, opt-outs from other channels enforced at once on every gateway,
events, configuration, reload, RFC 9457 problems for bad input that change nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.httpd import MAX_BODY
from gateway.simulator import Simulator
from gateway.smpp import status as st
from gateway.store.base import BlockKey
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory
from tests.integration.test_admin_cli import _gateway as cli
from tests.pg import drop_schema, pg_dsn_or_skip, unique_schema

READ = "read-token-0123456789"
WRITE = "write-token-0123456789"
TOKENS = [{"name": "dashboard", "token": READ, "role": "read"},
          {"name": "crm", "token": WRITE, "role": "write"}]
MOBILE = "+14155550123"
LONG_CODE = "+14155550100"


async def call(port: int, method: str, path: str, token: str | None = WRITE, body: Any = None,
               raw: bytes | None = None, headers: str = "") -> tuple[int, str, Any]:
    """One request; (status, content type, JSON body or text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    length = f"Content-Length: {len(data)}\r\n" if data or method in ("POST", "DELETE") else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{length}{headers}\r\n".encode() + data)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, text = answer.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    ctype = next(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:"))
    return int(lines[0].split(" ")[1]), ctype, json.loads(text) if "json" in ctype else text


async def api_gateway(make_gateway: GatewayFactory, url: str, **http: Any) -> Gateway:
    return await make_gateway(database_url=url, http={"api_tokens": TOKENS, **http})


async def bound_client(gateway: Gateway) -> RawClient:
    client = await RawClient.connect(gateway.smpp_port)
    assert (await client.bind()).command_status == 0
    return client


async def submit_status(client: RawClient) -> int:
    return (await client.request(submit_sm(dst=MOBILE[1:], src=LONG_CODE[1:]))).command_status


async def last_event(gateway: Gateway) -> int:
    assert gateway.store is not None
    return await gateway.store.last_event_id()


async def test_api_is_off_until_a_token_is_configured(gateway: Gateway) -> None:
    for path in ("/v1/blocks", "/openapi.json"):
        status, ctype, _ = await call(gateway.http_port, "GET", path)
        assert (status, ctype) == (404, "text/plain")
    assert (await call(gateway.http_port, "GET", "/healthz"))[0] == 200


async def test_tokens_and_roles(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gateway = await api_gateway(make_gateway, f"sqlite:///{tmp_path}/api.db")
    port = gateway.http_port
    before = await last_event(gateway)
    body = {"number": MOBILE, "counterpart": LONG_CODE, "reason": "r", "operator": "o"}
    for token, expected in ((None, 401), ("nope", 401), (READ + "x", 401), (READ, 403)):
        status, ctype, problem = await call(port, "POST", "/v1/blocks", token, body)
        assert (status, ctype) == (expected, "application/problem+json")
        assert problem["status"] == expected and problem["title"] and problem["detail"] and problem["type"]
    assert (await call(port, "POST", "/v1/reload", READ))[0] == 403
    assert (await call(port, "GET", "/v1/blocks", None))[0] == 401
    assert (await call(port, "GET", "/v1/blocks", READ))[0] == 200  # read token: read routes
    assert (await call(port, "GET", "/v1/blocks", WRITE))[0] == 200  # write token: every route
    assert await last_event(gateway) == before  # nothing was recorded
    assert (await call(port, "GET", "/metrics", None))[0] == 200  # the rest of the port as before


async def test_blocks_add_get_list_remove_enforced_at_once(make_gateway: GatewayFactory,
                                                           db_url: str) -> None:
    gateway = await api_gateway(make_gateway, db_url)
    port = gateway.http_port
    client = await bound_client(gateway)
    assert await submit_status(client) == 0
    add = {"number": MOBILE, "counterpart": LONG_CODE, "scope": "number",
           "reason": "complaint #42", "operator": "alice"}
    status, _, done = await call(port, "POST", "/v1/blocks", WRITE, add)
    assert status == 201 and done["changed"] and done["block"]["kind"] == "admin"
    assert await submit_status(client) == st.ESME_RINVDSTADR  # at once: no wait for the log follower
    assert (await call(port, "POST", "/v1/blocks", WRITE, add))[2]["changed"] is False
    _, _, got = await call(port, "GET", "/v1/blocks/%2B14155550123", READ)
    assert got["blocked"] and [b["counterpart"] for b in got["blocks"]] == [LONG_CODE]
    for i in range(3):  # global blocks of other mobiles, to page through
        await call(port, "POST", "/v1/blocks", WRITE, {"number": f"+1415555020{i}", "scope": "global",
                                                      "reason": "r", "operator": "bob"})
    _, _, page = await call(port, "GET", "/v1/blocks?scope=global&limit=2", READ)
    assert [b["number"] for b in page["blocks"]] == ["+14155550200", "+14155550201"]
    _, _, rest = await call(port, "GET", f"/v1/blocks?scope=global&limit=2&cursor={page['next_cursor']}", READ)
    assert [b["number"] for b in rest["blocks"]] == ["+14155550202"] and rest["next_cursor"] is None
    _, _, admin = await call(port, "GET", f"/v1/blocks?kind=admin&counterpart=%2B1{LONG_CODE[2:]}", READ)
    assert [b["number"] for b in admin["blocks"]] == [MOBILE]
    _, _, acme = await call(port, "GET", "/v1/blocks?account=acme", READ)  # acme owns LONG_CODE
    assert [b["number"] for b in acme["blocks"]] == [MOBILE]
    assert (await call(port, "GET", "/v1/blocks?account=other", READ))[2]["blocks"] == []
    remove = {"counterpart": LONG_CODE, "scope": "number", "reason": "resolved", "operator": "carol"}
    status, _, lifted = await call(port, "DELETE", f"/v1/blocks/{MOBILE}", WRITE, remove)
    assert status == 200 and lifted["changed"] and lifted["block"] is None
    assert await submit_status(client) == 0
    _, _, history = await call(port, "GET", f"/v1/events/{MOBILE}", READ)
    assert [(e["op"], e["operator"], e["reason"]) for e in history["events"]] == [
        ("admin_add", "alice", "complaint #42"), ("admin_add", "alice", "complaint #42"),
        ("admin_remove", "carol", "resolved")]
    await client.close()


async def test_bad_input_gets_a_problem_and_changes_nothing(make_gateway: GatewayFactory,
                                                            db_url: str) -> None:
    gateway = await api_gateway(make_gateway, db_url)
    port = gateway.http_port
    before = await last_event(gateway)
    good = {"number": MOBILE, "counterpart": LONG_CODE, "reason": "r", "operator": "o"}
    cases: list[tuple[str, str, Any, bytes | None, int]] = [
        ("POST", "/v1/blocks", {**good, "number": "not-a-number"}, None, 422),
        ("POST", "/v1/blocks", {**good, "number": "+1"}, None, 422),
        ("POST", "/v1/blocks", {**good, "colour": "red"}, None, 422),  # unknown field
        ("POST", "/v1/blocks", {**good, "scope": "galaxy"}, None, 422),
        ("POST", "/v1/blocks", {k: v for k, v in good.items() if k != "reason"}, None, 422),
        ("POST", "/v1/blocks", {**good, "operator": ""}, None, 422),
        ("POST", "/v1/blocks", None, b"{not json", 400),
        ("POST", "/v1/blocks", None, b"[1, 2]", 422),
        ("POST", "/v1/blocks", None, b"{" + b" " * MAX_BODY + b"}", 413),  # over the size limit
        ("DELETE", "/v1/blocks/12", {"reason": "r", "operator": "o"}, None, 422),
        ("POST", "/v1/optouts", {"number": MOBILE, "channel": "Voice Call!"}, None, 422),
        ("POST", "/v1/optouts", {"number": MOBILE, "channel": "keyword"}, None, 422),  # the gateway's own
        ("POST", "/v1/optouts", {"number": MOBILE, "channel": "voice", "at": 9e10}, None, 422),  # future
        ("POST", "/v1/optouts", {"number": "garbage", "channel": "voice"}, None, 422),
        ("GET", "/v1/blocks?cursor=garbage", None, None, 422),
        ("GET", "/v1/blocks?limit=0", None, None, 422),
        ("GET", "/v1/blocks?colour=red", None, None, 422),
        ("GET", "/v1/blocks/%FF", None, None, 400),
        ("GET", "/v1/events/abc", None, None, 422),
        ("PUT", "/v1/blocks", good, None, 405),
        ("GET", "/v1/nothing", None, None, 404),
    ]
    for method, path, body, raw, expected in cases:
        status, ctype, problem = await call(port, method, path, WRITE, body, raw)
        assert (status, ctype) == (expected, "application/problem+json"), (method, path, body, problem)
        assert problem["status"] == expected and problem["detail"]
    status, _, problem = await call(port, "POST", "/v1/blocks", WRITE, {**good, "colour": "red"})
    assert problem["errors"][0]["loc"] == "colour"
    assert (await call(port, "POST", "/v1/blocks", WRITE, good, headers="Content-Type: text/csv\r\n"))[0] == 415
    assert await last_event(gateway) == before
    assert gateway.store is not None and await gateway.store.list_blocks() == []


async def test_optout_from_another_channel(make_gateway: GatewayFactory, db_url: str) -> None:
    gateway = await api_gateway(make_gateway, db_url)
    client = await bound_client(gateway)
    body = {"number": "(415) 555-0123", "channel": "voice", "at": 1_700_000_000.0,
            "operator": "call-centre", "reason": "call 8812"}
    status, _, done = await call(gateway.http_port, "POST", "/v1/optouts", WRITE, body)
    assert status == 201 and done["key"] == {"number": MOBILE, "counterpart": "", "scope": "global"}
    assert done["block"]["kind"] == "optout" and done["block"]["source"] == "voice"
    assert await submit_status(client) == st.ESME_RINVDSTADR
    _, _, history = await call(gateway.http_port, "GET", f"/v1/events/{MOBILE}?since=1600000000", READ)
    [event] = history["events"]
    assert (event["op"], event["source"], event["at"], event["block_state"]) == (
        "optout", "voice", 1_700_000_000.0, "blocked")
    assert (event["operator"], event["reason"]) == ("call-centre", "call 8812")
    await client.close()


async def test_optout_enforced_on_every_gateway_of_one_store(make_gateway: GatewayFactory, sim: Simulator) -> None:
    dsn = await pg_dsn_or_skip()
    schema = unique_schema("api2")
    url = f"{dsn}?schema={schema}"
    try:
        first = await api_gateway(make_gateway, url)
        second = await api_gateway(make_gateway, url)
        clients = [await bound_client(first), await bound_client(second)]
        body = {"number": MOBILE, "channel": "email", "counterpart": LONG_CODE}
        status, _, done = await call(first.http_port, "POST", "/v1/optouts", WRITE, body)
        assert status == 201 and done["key"]["scope"] == "number"
        assert await submit_status(clients[0]) == st.ESME_RINVDSTADR
        key = BlockKey(MOBILE, LONG_CODE, "number")
        await clients[1].wait(lambda: key in second.index, timeout=5)  # NOTIFY, or the poll
        assert await submit_status(clients[1]) == st.ESME_RINVDSTADR
        for client in clients:
            await client.close()
    finally:
        for gateway in (locals().get("first"), locals().get("second")):
            if gateway is not None:
                await gateway.stop()
        await drop_schema(dsn, schema)


async def test_config_masked_openapi_and_reload(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token-aaaaaaaaaaaa\n")
    tokens = [*TOKENS, {"name": "ops", "token_file": str(token_file), "role": "write"}]
    gateway = await make_gateway(database_url=f"sqlite:///{tmp_path}/api.db", http={"api_tokens": tokens})
    port = gateway.http_port
    status, _, config = await call(port, "GET", "/v1/config", READ)
    text = json.dumps(config)
    assert status == 200 and config["accounts"][0]["system_id"] == "acme"
    for secret in ("secret", "gwpw", READ, WRITE):
        assert secret not in text
    assert config["http"]["api_tokens"][0]["token"] == "**********"
    status, _, doc = await call(port, "GET", "/openapi.json", None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/v1/blocks", "/v1/blocks/{number}", "/v1/optouts", "/v1/events/{number}",
                                 "/v1/config", "/v1/reload"}
    assert (await call(port, "GET", "/v1/blocks", "file-token-aaaaaaaaaaaa"))[0] == 200
    token_file.write_text("file-token-bbbbbbbbbbbb\n")
    status, _, result = await call(port, "POST", "/v1/reload", WRITE)
    assert status == 200 and result["ok"] is True and result["failed"] == []
    assert "http.api_tokens" not in result["restart_needed"]
    assert (await call(port, "GET", "/v1/blocks", "file-token-aaaaaaaaaaaa"))[0] == 401
    assert (await call(port, "GET", "/v1/blocks", "file-token-bbbbbbbbbbbb"))[0] == 200


async def test_cli_and_api_share_the_operations(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    db = tmp_path / "api.db"
    gateway = await api_gateway(make_gateway, f"sqlite:///{db}")
    code, out, err = await cli(db, "blocks", "add", MOBILE, "--counterpart", LONG_CODE,
                               "--operator", "dave", "--reason", "ticket 7")
    assert (code, err) == (0, "") and "blocked +14155550123" in out
    await call(gateway.http_port, "POST", "/v1/optouts", WRITE, {"number": "+14155550124", "channel": "web"})
    _, _, history = await call(gateway.http_port, "GET", f"/v1/events/{MOBILE}", READ)
    assert [(e["op"], e["operator"], e["reason"]) for e in history["events"]] == [("admin_add", "dave", "ticket 7")]
    code, out, _ = await cli(db, "blocks", "list", "--format", "csv")
    assert code == 0 and "+14155550124,,global,optout,web," in out
    code, out, err = await cli(db, "blocks", "add", "garbage", "--counterpart", LONG_CODE)
    status, _, problem = await call(gateway.http_port, "POST", "/v1/blocks", WRITE,
                                    {"number": "garbage", "counterpart": LONG_CODE, "reason": "r", "operator": "o"})
    assert code == 2 and status == 422 and err.strip() == f"error: {problem['detail']}"  # one validation
