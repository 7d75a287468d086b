"""A very small HTTP/1.1 server on asyncio streams: one request a connection, Content-Length
bodies only, every step under a deadline, garbage answered with a 4xx and never an exception.

Shared by the gateway's /metrics /healthz /readyz and the simulator's MO endpoint: a handler
takes (method, path, body) and returns (status, content type, body) or raises HttpError.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 5.0
BODY_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_BODY = 64 * 1024
REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

Response = tuple[int, str, bytes]  # status, content type, body
Handler = Callable[[str, str, bytes], Awaitable[Response]]  # method, path (no query), body


class HttpError(Exception):
    """A request answered with a 4xx/5xx and a JSON {"error": reason}."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def json_response(status: int, payload: object) -> Response:
    return status, "application/json", json.dumps(payload).encode()


def allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise HttpError(405, f"use {allowed}")


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    async with asyncio.timeout(HEAD_TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(400, "bad header line")
            headers[name.strip().lower()] = value.strip()
    method = parts[0]
    body = await _read_body(reader, headers, required=method in ("POST", "PUT"))
    return method, parts[1].split("?", 1)[0], body


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], required: bool) -> bytes:
    if "transfer-encoding" in headers:
        raise HttpError(411, "send a Content-Length, not chunked")
    length_text = headers.get("content-length")
    if length_text is None:
        if required:
            raise HttpError(411, "Content-Length required")
        return b""
    if not length_text.isdigit():
        raise HttpError(400, "bad Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise HttpError(413, f"body over {MAX_BODY} bytes")
    async with asyncio.timeout(BODY_TIMEOUT):
        return await reader.readexactly(length)


async def serve(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve one request on this connection, then close it."""
    try:
        response = await handler(*await read_request(reader))
    except HttpError as exc:
        response = json_response(exc.status, {"error": exc.reason})
    except TimeoutError:
        response = json_response(408, {"error": "request not received in time"})
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        response = json_response(400, {"error": "malformed request"})
    except OSError:
        writer.transport.abort()
        return
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    except Exception:
        log.exception("http_handler_failed")
        response = json_response(500, {"error": "internal error"})
    await _reply(writer, response)


async def _reply(writer: asyncio.StreamWriter, response: Response) -> None:
    status, ctype, body = response
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
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


async def start_http(host: str, port: int, handler: Handler) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: serve(handler, r, w), host, port,
                                      reuse_address=True, limit=MAX_BODY)
