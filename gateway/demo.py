"""`make run`: the carrier simulator and the gateway in one process, account demo/demo."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from gateway import logs
from gateway.app import Gateway, install_uvloop, wait_for_signal
from gateway.config import load_settings
from gateway.errors import ConfigError

SIM_PORT = 2776
SIM_HTTP_PORT = 2780

BANNER = """
  SMPP opt-out gateway demo
  -------------------------
  bind any SMPP client to 127.0.0.1:{port} as system_id=demo password=demo
  send an MO from a mobile to your number (the simulator delivers it to your bind):
    curl -s -X POST http://127.0.0.1:{sim_http}/mo -d '{{"from":"+14155550123","to":"+14155550100","text":"STOP"}}'
  what reached the carrier:  curl -s http://127.0.0.1:{sim_http}/messages
  metrics:                   curl -s http://127.0.0.1:{http}/metrics
  Ctrl-C stops both.
"""


async def main() -> int:
    from gateway.simulator import Simulator

    os.environ.setdefault("GATEWAY_ACCOUNTS", json.dumps([{"system_id": "demo", "password": "demo"}]))
    try:
        settings = load_settings(None, carrier={"port": SIM_PORT, "system_id": "gateway", "password": "gateway"})
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    sim = Simulator(host="127.0.0.1", smpp_port=SIM_PORT, http_port=SIM_HTTP_PORT)
    await sim.start()
    gateway = Gateway(settings)
    await gateway.start()
    print(BANNER.format(port=gateway.smpp_port, sim_http=SIM_HTTP_PORT, http=gateway.http_port), flush=True)
    await wait_for_signal()
    await gateway.stop()
    await sim.stop()
    return 0


if __name__ == "__main__":
    install_uvloop()
    raise SystemExit(asyncio.run(main()))
