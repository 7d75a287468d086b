"""`gateway run` (uvloop, the real signal handlers) with both legs on TLS, and a SIGHUP swap."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.tls import ServerFiles, build_server_context
from tests.integration.client import submit_sm
from tests.integration.pki import Pki, peer_certificate, tls_connect
from tests.integration.test_cli import _env


async def test_run_with_tls_on_both_legs_and_sighup(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    carrier_files = pki.issue("carrier")
    sim = Simulator(host="127.0.0.1", smpp_port=0, http_port=None,
                    tls=build_server_context(ServerFiles("sim", carrier_files.cert, carrier_files.key)))
    await sim.start()
    listener = pki.issue("listener")
    env = _env(
        GATEWAY_LISTEN__ENABLED="false", GATEWAY_HTTP__PORT="0",
        GATEWAY_LISTEN_TLS__PORT="0", GATEWAY_LISTEN_TLS__CERT_FILE=str(listener.cert),
        GATEWAY_LISTEN_TLS__KEY_FILE=str(listener.key),
        GATEWAY_CARRIER__PORT=str(sim.smpp_port), GATEWAY_CARRIER__TLS="true",
        GATEWAY_CARRIER__TLS_CA_FILE=str(pki.ca_file), GATEWAY_CARRIER__TLS_SERVER_NAME="localhost",
        GATEWAY_ACCOUNTS=json.dumps([{"system_id": "acme", "password": "secret"}]),
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/gw.db",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []

    async def until_event(event: str) -> dict[str, object]:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stderr.readline()).decode()  # type: ignore[union-attr]
                lines.append(line)
                if f'"{event}"' in line:
                    return dict(json.loads(line))

    try:
        started = await until_event("gateway_started")
        port = int(str(started["smpp_tls_port"]))
        assert started["smpp_port"] == 0
        await sim.wait_until(lambda: sim.bound_count >= 1, timeout=20)
        old = await tls_connect(port, pki.client_context())
        assert (await old.bind()).command_status == st.ESME_ROK
        assert (await old.request(submit_sm(text="both legs"))).command_status == st.ESME_ROK
        await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and b"both legs" in p.raw)
        before = peer_certificate(old)

        listener.write(pki.ca.issue_cert("localhost", "127.0.0.1", common_name="renewed"))
        proc.send_signal(signal.SIGHUP)
        reloaded = await until_event("reloaded")
        assert reloaded["failed"] == "[]"
        new = await tls_connect(port, pki.client_context())
        assert peer_certificate(new) != before
        assert (await new.bind()).command_status == st.ESME_ROK
        assert (await old.request(P.encode(P.ENQUIRE_LINK, 0, 1))).command_status == st.ESME_ROK
        await new.close()
        proc.send_signal(signal.SIGTERM)
        unbind = await old.read(lambda p: p.command_id == P.UNBIND, timeout=10)
        old.respond(unbind, body=b"")
        assert await old.closed()
        await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, "".join(lines)[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sim.stop()
