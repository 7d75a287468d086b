"""`gateway run` for the soak, with one test-only fault the soak's checker must catch.

    SOAK_DROP_MO_EVERY=100 python -m bench.soakgw run

With the variable set, every 100th MO (receipts aside) is answered ESME_ROK to the carrier and
never handed to an application: a deliberately broken gateway (tests/integration/test_soak.py).
The hook is installed here, outside `gateway/`, so the gateway itself has no such switch.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from gateway import proxy as gateway_proxy
from gateway.smpp import fields as F
from gateway.smpp import status as st


def install_drop_mo(every: int) -> None:
    deliver = gateway_proxy.Proxy.deliver
    seen = 0

    def dropping(self: gateway_proxy.Proxy, state: Any, pdu: Any, raw: bytes, on_status: Any) -> None:
        nonlocal seen
        if not F.parse_any_sm(pdu).is_receipt:
            seen += 1
            if seen % every == 0:
                on_status(st.ESME_ROK, None)  # "delivered": the carrier is told so, nobody got it
                return
        deliver(self, state, pdu, raw, on_status)

    gateway_proxy.Proxy.deliver = dropping  # type: ignore[method-assign]


def main() -> int:
    every = int(os.environ.get("SOAK_DROP_MO_EVERY") or 0)
    if every > 0:
        install_drop_mo(every)
    from gateway.cli import main as gateway_main

    return gateway_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
