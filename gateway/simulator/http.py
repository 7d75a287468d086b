"""The simulator's tiny HTTP endpoint (asyncio streams, no framework), one request a connection.

    POST /mo        {"from", "to", "text"[, "data_coding"]} -> 200 {"status": deliver_sm_resp status}
                    503 no receiver bound, 504 no answer in time, 400 bad input
    GET  /messages  the submissions received so far, as JSON summaries
    GET  /healthz   {"status": "ok", "sessions": n, "bound": n}

Every connection is closed after its response; garbage gets a 4xx, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from gateway.simulator.session import NoReceiverError, ResponseTimeoutError, SessionClosedError

if TYPE_CHECKING:
    from gateway.simulator.smsc import Simulator

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 5.0
BODY_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_BODY = 64 * 1024
MO_TIMEOUT = 5.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class HttpError(Exception):
    """A request we answer with a 4xx/5xx and a JSON {"error": reason}."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def handle_http(
    sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one request on this connection, then close it."""
    try:
        status, payload = await _respond(sim, reader)
    except HttpError as exc:
        status, payload = exc.status, {"error": exc.reason}
    except TimeoutError:
        status, payload = 408, {"error": "request not received in time"}
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        status, payload = 400, {"error": "malformed request"}
    except OSError:
        writer.transport.abort()
        return
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    except Exception:
        log.exception("http_failed")
        status, payload = 500, {"error": "internal error"}
    await _reply(writer, status, payload)


async def _reply(writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    try:
        writer.write(head.encode() + body)
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()
        writer.close()
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


async def _respond(sim: Simulator, reader: asyncio.StreamReader) -> tuple[int, Any]:
    async with asyncio.timeout(HEAD_TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, path = parts[0], parts[1].split("?", 1)[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(400, "bad header line")
            headers[name.strip().lower()] = value.strip()
    if path == "/healthz":
        _allow(method, "GET")
        return 200, {"status": "ok", "sessions": sim.sessions, "bound": sim.bound_count}
    if path == "/messages":
        _allow(method, "GET")
        return 200, [s.summary() for s in sim.submissions]
    if path == "/mo":
        _allow(method, "POST")
        body = await _read_body(reader, headers)
        return await _post_mo(sim, body)
    raise HttpError(404, f"no such path: {path[:100]}")


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise HttpError(405, f"use {allowed}")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        raise HttpError(411, "send a Content-Length, not chunked")
    length_text = headers.get("content-length")
    if length_text is None:
        raise HttpError(411, "Content-Length required")
    if not length_text.isdigit():
        raise HttpError(400, "bad Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise HttpError(413, f"body over {MAX_BODY} bytes")
    async with asyncio.timeout(BODY_TIMEOUT):
        return await reader.readexactly(length)


async def _post_mo(sim: Simulator, body: bytes) -> tuple[int, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise HttpError(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, 'body must be a JSON object {"from", "to", "text"}')
    for key in ("from", "to", "text"):
        if not isinstance(data.get(key), str):
            raise HttpError(400, f"missing or non-string field {key!r}")
    data_coding = data.get("data_coding")
    if data_coding is not None and (
        type(data_coding) is not int or not 0 <= data_coding <= 255
    ):
        raise HttpError(400, "data_coding must be an integer 0-255")
    try:
        status = await sim.inject_mo(
            data["from"], data["to"], data["text"], data_coding=data_coding, timeout=MO_TIMEOUT
        )
    except NoReceiverError as exc:
        raise HttpError(503, str(exc)) from None
    except ResponseTimeoutError as exc:
        raise HttpError(504, str(exc)) from None
    except SessionClosedError as exc:
        raise HttpError(502, str(exc)) from None
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    return 200, {"status": status}
