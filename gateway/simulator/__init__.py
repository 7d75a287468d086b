"""Bundled carrier SMSC simulator: SMPP 3.4 server, delivery receipts, MO injection over HTTP.

    async with Simulator() as sim:          # ports 0: see sim.smpp_port / sim.http_port
        ...
        status = await sim.inject_mo("15551230000", "15550001111", "STOP")

`serve()` runs one until cancelled, for `gateway simulate-carrier`.
"""

from gateway.simulator.records import Submission
from gateway.simulator.serve import serve
from gateway.simulator.session import (
    NoReceiverError,
    ResponseTimeoutError,
    SessionClosedError,
    SimulatorError,
)
from gateway.simulator.smsc import Simulator

__all__ = [
    "NoReceiverError",
    "ResponseTimeoutError",
    "SessionClosedError",
    "Simulator",
    "SimulatorError",
    "Submission",
    "serve",
]
