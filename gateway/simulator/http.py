"""The simulator's HTTP routes, served by gateway.httpd (one request a connection).

    POST /mo        {"from", "to", "text"[, "data_coding"]} -> 200 {"status": deliver_sm_resp status}
                    503 no receiver bound, 504 no answer in time, 400 bad input
    GET  /messages  the submissions received so far, as JSON summaries
    GET  /healthz   {"status": "ok", "sessions": n, "bound": n}
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gateway.httpd import Handler, HttpError, Response, allow, json_response
from gateway.simulator.session import NoReceiverError, ResponseTimeoutError, SessionClosedError

if TYPE_CHECKING:
    from gateway.simulator.smsc import Simulator

MO_TIMEOUT = 5.0


def routes(sim: Simulator) -> Handler:
    async def handle(method: str, path: str, body: bytes) -> Response:
        if path == "/healthz":
            allow(method, "GET")
            return json_response(200, {"status": "ok", "sessions": sim.sessions, "bound": sim.bound_count})
        if path == "/messages":
            allow(method, "GET")
            return json_response(200, [s.summary() for s in sim.submissions])
        if path == "/mo":
            allow(method, "POST")
            return json_response(*await _post_mo(sim, body))
        raise HttpError(404, f"no such path: {path[:100]}")

    return handle


async def _post_mo(sim: Simulator, body: bytes) -> tuple[int, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
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
