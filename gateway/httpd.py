"""A very small HTTP/1.1 server on asyncio streams (GET/POST, Content-Length bodies, close after reply).

Shared by the gateway's /metrics /healthz /readyz and the simulator's MO endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 503: "Service Unavailable", 500: "Internal Server Error"}

Response = tuple[int, str, bytes]  # status, content type, body
Handler = Callable[[str, str, bytes], Awaitable[Response]]  # method, path, body


def json_response(status: int, payload: object) -> Response:
    return status, "application/json", json.dumps(payload).encode()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes] | Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return json_response(400, {"error": "bad request line"})
    method, target, _ = parts
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            if not value.strip().isdigit():
                return json_response(400, {"error": "bad content-length"})
            length = int(value)
    if length > MAX_BODY:
        return json_response(413, {"error": "body too large"})
    body = await reader.readexactly(length) if length else b""
    return method, target.split("?", 1)[0], body


async def _serve(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(10):
            request = await _read_request(reader)
            if isinstance(request, tuple) and len(request) == 3 and isinstance(request[0], str):
                method, path, body = request
                status, ctype, payload = await handler(method, path, body)
            else:
                status, ctype, payload = request
            head = (
                f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        pass
    except Exception:
        log.exception("http_handler_failed")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def start_http(host: str, port: int, handler: Handler) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: _serve(handler, r, w), host, port, reuse_address=True)
