"""`gateway send` over real sockets: against the simulator directly, and through a running gateway."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from gateway import send as S
from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.simulator.codec import decode_text
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.tls import ServerFiles, build_server_context
from tests.integration.pki import Pki
from tests.integration.test_cli import _env
from tests.integration.test_mt_enforcement import LONG_CODE, MOBILE, stopped

GSM_LONG = "The quick brown fox jumps over the lazy dog. " * 5  # 225 GSM characters: two segments
UCS2_TEXT = "Grüße aus Köln, 東京"


async def gateway_send(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "send", *args, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def at(port: int, *rest: str, system_id: str = "acme", password: str = "secret") -> list[str]:
    return ["--port", str(port), "--system-id", system_id, "--password", password,
            "--from", "+" + LONG_CODE, "--to", "+" + MOBILE, *rest]


def submits(sim: Simulator) -> list[P.Pdu]:
    return [p for p in sim.received if p.command_id == P.SUBMIT_SM]


# --- against the simulator ------------------------------------------------------------------


async def test_send_with_receipt_against_the_simulator(sim: Simulator) -> None:
    code, out, err = await gateway_send(*at(sim.smpp_port, "--wait-receipt", "hello there"))
    assert code == S.EXIT_OK, err
    lines = out.splitlines()
    assert lines[0] == "bound: acme to simulator"
    assert lines[1].startswith("submit_sm_resp: ESME_ROK (0x00000000) message_id=")
    message_id = lines[1].rsplit("=", 1)[1]
    assert lines[2].startswith(f"receipt: id:{message_id} ") and "stat:DELIVRD" in lines[2]
    sub = sim.submissions[0]
    assert sub.message.registered_delivery == 1 and sub.message.short_message == b"hello there"
    await sim.wait_until(lambda: any(p.command_id == P.UNBIND for p in sim.received))  # unbound cleanly


async def test_long_and_ucs2_text_in_segments(sim: Simulator) -> None:
    req = S.SendRequest("127.0.0.1", sim.smpp_port, "x", "y", "Acme", "+" + MOBILE, GSM_LONG + UCS2_TEXT,
                        wait_receipt=True)
    said: list[str] = []
    assert await S.send(req, said.append) == S.EXIT_OK
    parts = [s.message for s in sim.submissions]
    assert len(parts) == 4  # 244 characters in UCS-2: 134 octets (67 characters) a part
    assert {m.data_coding for m in parts} == {0x08} and all(m.esm_class & P.ESM_UDHI for m in parts)
    assert "".join(decode_text(m.data_coding, m.short_message, m.esm_class) for m in parts) == GSM_LONG + UCS2_TEXT
    assert parts[0].source.ton == 5 and parts[0].source.addr == b"Acme"  # alphanumeric sender
    assert [line.split(":")[0] for line in said] == [
        "bound", *[f"submit_sm_resp {n}/4" for n in range(1, 5)], *["receipt"] * 4]


async def test_gsm_text_in_gsm_segments(sim: Simulator) -> None:
    req = S.SendRequest("127.0.0.1", sim.smpp_port, "x", "y", "+" + LONG_CODE, "+" + MOBILE, GSM_LONG)
    assert await S.send(req, lambda _: None) == S.EXIT_OK
    parts = [s.message for s in sim.submissions]
    assert len(parts) == 2 and {m.data_coding for m in parts} == {0}
    assert all(m.registered_delivery == 0 for m in parts)
    assert "".join(decode_text(0, m.short_message, m.esm_class) for m in parts) == GSM_LONG


async def test_refused_submit_prints_the_status_and_exits_non_zero(sim: Simulator) -> None:
    sim.submit_status = st.ESME_RTHROTTLED
    code, out, _ = await gateway_send(*at(sim.smpp_port, "hi"))
    assert code == S.EXIT_REFUSED
    assert out.splitlines()[-1] == "submit_sm_resp: ESME_RTHROTTLED (0x00000058)"


async def test_bind_refused() -> None:
    async with Simulator(system_id="gw", password="right") as smsc:
        code, out, err = await gateway_send(*at(smsc.smpp_port, "hi", system_id="gw", password="wrong"))
        assert code == S.EXIT_BIND
        assert out.strip() == "bind_transceiver_resp: ESME_RBINDFAIL (0x0000000D)"
        assert err.strip() == "error: bind refused: ESME_RBINDFAIL (0x0000000D)"
        assert not smsc.submissions


async def test_receipt_timeout(sim: Simulator) -> None:
    sim.receipt_delay = 60.0
    code, out, err = await gateway_send(*at(sim.smpp_port, "--wait-receipt", "--timeout", "0.5", "hi"))
    assert code == S.EXIT_NO_RECEIPT
    assert "message_id=" in out and err.strip() == "error: no delivery receipt within 0.5 s"


async def test_connection_lost_while_waiting_for_the_receipt(sim: Simulator) -> None:
    sim.receipt_delay = 60.0
    req = S.SendRequest("127.0.0.1", sim.smpp_port, "x", "y", "+" + LONG_CODE, "+" + MOBILE, "hi",
                        wait_receipt=True, timeout=30)
    said: list[str] = []
    task = asyncio.create_task(S.send(req, said.append))
    await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM)  # answered by the time we resume
    sim.drop_all()  # an SMSC crash: no unbind
    with pytest.raises(S.SendError) as err:
        await asyncio.wait_for(task, 10)
    assert err.value.exit_code == S.EXIT_NO_RECEIPT
    assert str(err.value) == "connection closed by the peer before the receipt arrived"
    assert [line.split(":")[0] for line in said] == ["bound", "submit_sm_resp"]


async def test_no_answer_is_a_timeout(sim: Simulator) -> None:
    sim.respond = False
    code, _, err = await gateway_send(*at(sim.smpp_port, "--timeout", "0.5", "hi"))
    assert code == S.EXIT_CONNECT and err.strip() == "error: no answer to submit_sm within 0.5 s"


async def test_connection_refused_is_one_line() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = await gateway_send(*at(port, "hi"))
    assert code == S.EXIT_CONNECT and out == ""
    assert err == f"error: cannot connect to 127.0.0.1:{port}: connection refused\n"


async def test_password_file_and_tls(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    (tmp_path / "pw").write_text("secret\n")
    files = pki.issue("carrier")
    tls = build_server_context(ServerFiles("simulator", files.cert, files.key))
    async with Simulator(http_port=None, system_id="gw", password="secret", tls=tls) as smsc:
        base = ["--tls-server-name", "localhost", "--port", str(smsc.smpp_port), "--system-id", "gw",
                "--password-file", str(tmp_path / "pw"), "--from", "+1", "--to", "+" + MOBILE, "hi"]
        code, out, err = await gateway_send("--tls", "--tls-ca", str(pki.ca_file), *base)
        assert code == S.EXIT_OK, err
        assert "ESME_ROK" in out
        code, _, err = await gateway_send("--tls", *base)  # the system trust store knows no test CA
        assert code == S.EXIT_CONNECT
        assert err.startswith(f"error: TLS to 127.0.0.1:{smsc.smpp_port}: certificate rejected: ")
        code, _, err = await gateway_send("--tls-ca", str(pki.ca_file), *base)
        assert code == S.EXIT_USAGE and err.strip() == "error: the --tls-* options need --tls"


# --- through a running gateway --------------------------------------------------------------


async def test_send_through_the_gateway_with_receipt(gateway: Gateway, sim: Simulator) -> None:
    code, out, err = await gateway_send(*at(gateway.smpp_port, "--wait-receipt", "hello"))
    assert code == S.EXIT_OK, err
    assert "submit_sm_resp: ESME_ROK (0x00000000) message_id=" in out
    assert "stat:DELIVRD" in out.splitlines()[-1]
    assert submits(sim)[-1].raw[16:].endswith(b"hello")


async def test_blocked_destination_prints_the_refusal(gateway: Gateway, sim: Simulator) -> None:
    app = await stopped(gateway, sim)
    before = len(submits(sim))
    code, out, _ = await gateway_send(*at(gateway.smpp_port, "hello again"))
    assert code == S.EXIT_REFUSED
    assert out.splitlines()[-1] == "submit_sm_resp: ESME_RINVDSTADR (0x0000000B)"
    assert len(submits(sim)) == before  # never reached the carrier
    await app.close()


async def test_wrong_password_at_the_gateway(gateway: Gateway) -> None:
    code, out, _ = await gateway_send(*at(gateway.smpp_port, "hi", password="nope"))
    assert code == S.EXIT_BIND and out.startswith("bind_transceiver_resp: ESME_RINVPASWD (0x0000000E)")


def test_status_text() -> None:
    assert S.status_text(0) == "ESME_ROK (0x00000000)"
    assert S.status_text(0x0B) == "ESME_RINVDSTADR (0x0000000B)"
    assert S.status_text(0x400) == "vendor-specific (0x00000400)"


def test_receipt_fields() -> None:
    text = "id:7 sub:001 dlvrd:001 submit date:2612011156 done date:2612011157 stat:UNDELIV err:005 text:a b:c"
    fields = S.receipt_fields(text)
    assert fields["id"] == "7" and fields["stat"] == "UNDELIV" and fields["done_date"] == "2612011157"
    assert "b" not in fields
