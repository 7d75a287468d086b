"""A very small HTTP/1.1 server on asyncio streams: one request a connection, Content-Length
bodies only, every step under a deadline, garbage answered with a 4xx and never an exception.

Shared by the gateway's /metrics /healthz /readyz and the simulator's MO endpoint: a handler
takes (method, path, body) and returns (status, content type, body) or raises HttpError.
A Mount (the admin API) takes the paths it claims whole, as a Request with its query and
headers, and words every error on them itself (problem JSON), a body too large included.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 5.0
BODY_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_BODY = 64 * 1024
REASONS = {
    200: "OK", 201: "Created", 400: "Bad Request", 403: "Forbidden", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    401: "Unauthorized",
    411: "Length Required", 413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

Response = tuple[int, str, bytes]  # status, content type, body
Headers = tuple[tuple[str, str], ...]
Reply = tuple[int, str, bytes, Headers]  # a Mount's: with headers of its own (Allow, WWW-Authenticate)
Handler = Callable[[str, str, bytes], Awaitable[Response]]  # method, path (no query), body
Guard = Callable[[str, dict[str, str]], Response | None]  # path, headers -> a refusal, or None to go on


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query, still percent-encoded
    query: str  # after '?', still percent-encoded
    headers: dict[str, str]  # names in lower case
    body: bytes


class Mount(Protocol):
    """Serves the paths it claims (claims() is asked before the body is read)."""

    def claims(self, path: str) -> bool: ...

    def error(self, status: int, reason: str) -> Reply: ...

    async def handle(self, request: Request) -> Reply: ...


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


class BearerToken:
    """`Authorization: Bearer <token>` for some paths; the token from the settings or a file
    (re-read by `reload()`), compared in constant time. No token configured: everything passes."""

    def __init__(self, token: str | None, token_file: Path | None, paths: frozenset[str]) -> None:
        self.token_file = token_file
        self.paths = paths
        self.token = token.encode() if token is not None else _read_token(token_file)

    def prepare(self, token: str | None, token_file: Path | None) -> Callable[[], None]:
        """The token from the (new) settings, the file read again; OSError/ValueError: the old one stays."""
        fresh = token.encode() if token is not None else _read_token(token_file)

        def commit() -> None:
            self.token, self.token_file = fresh, token_file

        return commit

    def __call__(self, path: str, headers: dict[str, str]) -> Response | None:
        if self.token is None or path not in self.paths:
            return None
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), self.token):
            return None
        return json_response(401, {"error": "bearer token required"})


def _read_token(token_file: Path | None) -> bytes | None:
    if token_file is None:
        return None
    text = token_file.read_text().strip()  # OSError: the caller keeps the old token
    if not text:
        raise ValueError(f"{token_file}: empty token file")
    return text.encode()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    method, path, _, body = await read_request_headers(reader)
    return method, path, body


async def read_request_headers(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    method, target, headers = await read_head(reader)
    body = await _read_body(reader, headers, required=method in ("POST", "PUT"))
    return method, target.split("?", 1)[0], headers, body


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    """(method, request target with its query, headers) of the next request."""
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
    return parts[0], parts[1], headers


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


def _error(status: int, reason: str) -> Reply:
    return (*json_response(status, {"error": reason}), ())


async def serve(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                guard: Guard | None = None, mount: Mount | None = None) -> None:
    """Serve one request on this connection, then close it."""
    error = _error
    response: Reply
    try:
        method, target, headers = await read_head(reader)
        path, _, query = target.partition("?")
        if mount is not None and mount.claims(path):
            error = mount.error
            body = await _read_body(reader, headers, required=method in ("POST", "PUT"))
            response = await mount.handle(Request(method, path, query, headers, body))
        else:
            body = await _read_body(reader, headers, required=method in ("POST", "PUT"))
            refused = guard(path, headers) if guard is not None else None
            response = (*(refused or await handler(method, path, body)), ())
    except HttpError as exc:
        response = error(exc.status, exc.reason)
    except TimeoutError:
        response = error(408, "request not received in time")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        response = error(400, "malformed request")
    except OSError:
        writer.transport.abort()
        return
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    except Exception:
        log.exception("http_handler_failed")
        response = error(500, "internal error")
    await _reply(writer, response)


async def _reply(writer: asyncio.StreamWriter, response: Reply) -> None:
    status, ctype, body, extra = response
    more = "".join(f"{name}: {value}\r\n" for name, value in extra)
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n{more}Connection: close\r\n\r\n"
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


async def start_http(host: str, port: int, handler: Handler, guard: Guard | None = None,
                     tls: ssl.SSLContext | None = None, mount: Mount | None = None) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: serve(handler, r, w, guard, mount), host, port,
                                      reuse_address=True, limit=MAX_BODY, ssl=tls,
                                      ssl_handshake_timeout=HEAD_TIMEOUT if tls is not None else None)
