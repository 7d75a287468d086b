"""Compliance over the wire (issue 11): admin-blocked contacts, ambiguous alphabets, deactivations."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiosmpplib.codec import find_codec_info

from gateway.admin_rows import iso
from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey
from tests.integration.conftest import GatewayFactory
from tests.integration.test_optout import LONG_CODE, MOBILE, App, replies_to


async def _events(gateway: Gateway, op: str) -> list[AuditEvent]:
    assert gateway.store is not None
    return [e for e in await gateway.store.events_after(0, 10_000) if e.op == op]


async def _admin_block(gateway: Gateway) -> None:
    assert gateway.store is not None and gateway.sync is not None
    now = time.time()
    key = BlockKey("+" + MOBILE, "", "global")
    await gateway.store.record(AuditEvent(at=now, op="admin_add", source="operator"),
                               BlockChange("add", Block(key, "admin", "operator", now)))
    await gateway.sync.catch_up()


async def test_admin_blocked_mobile_mo_is_dropped_with_an_event(make_gateway: GatewayFactory,
                                                                sim: Simulator) -> None:
    gateway = await make_gateway(optout={"admin_block_drops_mo": True})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "before the block") == 0
    assert len(app.delivered) == 1
    await _admin_block(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "hello again, it's me") == 0  # the carrier gets ESME_ROK
    dropped = await _events(gateway, "admin_dropped")
    assert [(e.number, e.text, e.rule, e.source) for e in dropped] == [
        ("+" + MOBILE, "hello again, it's me", "admin_block", "operator")]
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0  # a STOP still counts, and is not forwarded
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert [e.text for e in await _events(gateway, "stop")] == ["STOP"]
    assert await sim.inject_mo("14155550999", LONG_CODE, "another mobile") == 0  # not blocked: forwarded
    assert len(app.delivered) == 2
    texts = [p.raw for p in app.delivered]
    assert any(b"before the block" in raw for raw in texts) and any(b"another mobile" in raw for raw in texts)
    assert not any(b"hello again" in raw or b"STOP" in raw for raw in texts)
    await app.close()


async def test_admin_block_forwards_mo_by_default(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    await _admin_block(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "hello, still here") == 0
    assert len(app.delivered) == 1
    assert await _events(gateway, "admin_dropped") == []
    await app.close()


ALPHABETS = ["gsm0338", "ascii", "latin-1"]
VARIANTS = ["STOP\t", "{STOP}", "@STOP", "STOP $", "Arrête"]


def _readings(octets: bytes) -> list[str]:
    """The candidates under which octets (data_coding 0) are a STOP keyword, in configured order."""
    from gateway.policy.keywords import KeywordTable
    from gateway.policy.settings import OptoutSettings
    from gateway.policy.text import decode_text

    table = KeywordTable(OptoutSettings())
    out = []
    for alphabet in ALPHABETS:
        text = decode_text(0, 0, octets, alphabet).text
        match = table.classify(text.replace("\x00", ""), "US") if text is not None else None
        if match is not None and match.op == "stop":
            out.append(alphabet)
    return out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sent_as", ALPHABETS)
async def test_data_coding_0_stop_under_every_candidate_alphabet(make_gateway: GatewayFactory, sim: Simulator,
                                                                 variant: str, sent_as: str) -> None:
    """A STOP written in any candidate alphabet counts, and the event says which reading matched."""
    try:
        octets = bytes(find_codec_info(sent_as).encode(variant, "strict")[0])
    except (UnicodeError, ValueError):
        pytest.skip(f"{variant!r} has no {sent_as} encoding")
    readings = _readings(octets)
    assert sent_as in readings  # the text as sent is a keyword in the alphabet it was written in
    gateway = await make_gateway(optout={"smsc_default_alphabets": ALPHABETS})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "", data_coding=0, raw_short_message=octets) == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    stops = await _events(gateway, "stop")
    assert [e.alphabet for e in stops] == [readings[0]]
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_data_coding_0_single_alphabet_misses_an_ascii_stop(gateway: Gateway, sim: Simulator) -> None:
    """The default (GSM 03.38 only) reads an ASCII tab as 'Ç': why the candidates matter."""
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "", data_coding=0, raw_short_message=b"STOP\t") == 0
    assert await _events(gateway, "stop") == []
    assert (await app.submit()).command_status == 0
    await app.close()


# -- deactivated and reassigned numbers ------------------------------------------------------


async def _cli(db: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = f"sqlite:///{db}"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def _refused(gateway: Gateway, reason: str) -> float:
    value = gateway.proxy.metrics.registry.get_sample_value("gateway_mt_rejected_total", {"reason": reason})
    return value or 0.0


async def test_deactivation_import_lifts_old_opt_out_and_refuses_mt(make_gateway: GatewayFactory, sim: Simulator,
                                                                    tmp_path: Path) -> None:
    gateway = await make_gateway(optout={"implicit_reopt_in": True})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0  # the old subscriber
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    csv_file = tmp_path / "deactivated.csv"
    csv_file.write_text(f"number,deactivated_at\n+{MOBILE},{iso(time.time())}\n")
    code, _, err = await _cli(tmp_path / "gateway.db", "deactivations", "import", str(csv_file))
    assert code == 0, err
    assert "epochs ended 1, opt-outs retired 1, already imported 0" in err
    number_key = BlockKey("+" + MOBILE, "+" + LONG_CODE, "number")
    epoch_key = BlockKey("+" + MOBILE, "", "global")
    await _until(lambda: gateway.index.kind_of(epoch_key) == "deactivated")  # the running gateway's index
    assert gateway.index.kind_of(number_key) is None  # the old opt-out is retired
    retired = await _events(gateway, "deactivation_retired")
    assert [(e.number, e.kind, e.block_state) for e in retired] == [("+" + MOBILE, "optout", "unblocked")]
    assert [e.block_state for e in await _events(gateway, "deactivation")] == ["blocked"]
    before = _refused(gateway, "deactivated")
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR  # no consent from the new subscriber
    assert _refused(gateway, "deactivated") == before + 1
    assert await sim.inject_mo(MOBILE, LONG_CODE, "hi, who is this?") == 0  # implicit never crosses an epoch
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE, LONG_CODE, "START") == 0  # the new subscriber's own opt-in
    await replies_to(sim, MOBILE, b"resubscribed")
    assert (await app.submit()).command_status == 0
    code, _, err = await _cli(tmp_path / "gateway.db", "deactivations", "import", str(csv_file))
    assert code == 0 and "epochs ended 0, opt-outs retired 0, already imported 1" in err
    assert (await app.submit()).command_status == 0  # a repeated import never undoes the new opt-in
    await app.close()


async def test_deactivation_allow_lets_mt_through(make_gateway: GatewayFactory, sim: Simulator,
                                                  tmp_path: Path) -> None:
    gateway = await make_gateway(optout={"deactivated_action": "allow"})
    app = await App.bind(gateway)
    csv_file = tmp_path / "deactivated.csv"
    csv_file.write_text(f"+{MOBILE},2020-01-01\n")  # no header row
    code, _, err = await _cli(tmp_path / "gateway.db", "deactivations", "import", str(csv_file))
    assert code == 0, err
    await _until(lambda: gateway.index.kind_of(BlockKey("+" + MOBILE, "", "global")) == "deactivated")
    assert (await app.submit()).command_status == 0
    await app.close()


async def test_malformed_deactivation_file_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    csv_file = tmp_path / "deactivated.csv"
    csv_file.write_text("number,deactivated_at\n+14155550123,2026-01-02\nnot-a-number,2026-01-02\n"
                        "+14155550124,yesterday\n+14155550125\n+14155550126,2999-01-01\n+14155550127,2026-01-03\n")
    code, _, err = await _cli(db, "deactivations", "import", str(csv_file))
    assert code == 2
    lines = err.splitlines()
    assert lines[:4] == [
        "line 3: number 'not-a-number': not an E.164 number",
        "line 4: deactivation date 'yesterday': expected ISO 8601 or unix seconds",
        "line 5: expected 2 fields (number, deactivation date), got 1",
        "line 6: deactivation date 2999-01-01T00:00:00.000Z is in the future",
    ]
    assert "4 invalid rows: nothing applied (--partial applies the valid rows)" in err
    code, out, _ = await _cli(db, "events", "export", "--format", "jsonl")
    assert code == 0 and '"deactivation"' not in out
    code, _, err = await _cli(db, "deactivations", "import", "--partial", str(csv_file))
    assert code == 0 and "epochs ended 2" in err
    code, out, _ = await _cli(db, "blocks", "list", "--format", "csv")
    assert sorted(line.split(",")[0] for line in out.splitlines()[1:]) == ["+14155550123", "+14155550127"]


# -- evidence per number, and the period's report --------------------------------------------


async def _wait_events(gateway: Gateway, condition: Callable[[list[AuditEvent]], bool]) -> list[AuditEvent]:
    assert gateway.store is not None
    async with asyncio.timeout(5):
        while not condition(events := await gateway.store.events_after(0, 10_000)):
            await asyncio.sleep(0.02)
    return events


async def test_evidence_export_and_report_after_real_mos(make_gateway: GatewayFactory, sim: Simulator,
                                                         tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    gateway = await make_gateway()
    app = await App.bind(gateway)
    started = time.time()
    assert await sim.inject_mo(MOBILE, LONG_CODE, "Stop") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    await _wait_events(gateway, lambda es: any(e.op == "reply_receipt" for e in es))  # the confirmation's receipt
    for _ in range(3):
        assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    assert (await app.submit(dst="14155550124")).command_status == 0  # not blocked: no evidence
    assert gateway.optout is not None and gateway.store is not None
    assert not [e for e in await gateway.store.events_after(0, 10_000) if e.op == "mt_refused"]  # no write per MT
    assert await gateway.optout.refusals.flush(gateway.store) == 1  # one summary for (mobile, reason, account)
    assert await sim.inject_mo("14155550999", LONG_CODE, "please stop") == 0  # a possible opt-out, not acted on
    csv_file = tmp_path / "deactivated.csv"
    csv_file.write_text(f"+{MOBILE},{iso(time.time())}\n")
    assert (await _cli(db, "deactivations", "import", str(csv_file)))[0] == 0

    code, out, err = await _cli(db, "events", "export", "--number", "+" + MOBILE, "--format", "jsonl")
    assert code == 0, err
    history = [json.loads(line) for line in out.splitlines()]
    assert {h["number"] for h in history} == {"+" + MOBILE}
    ops = [h["op"] for h in history]
    assert ops == ["stop", "stop_reply", "reply_receipt", "mt_refused", "deactivation_retired", "deactivation"]
    stop, reply, receipt, refused = history[:4]
    assert stop["text"] == "Stop" and stop["block_state"] == "blocked"
    assert "unsubscribed" in reply["reply_text"] and reply["reply_message_id"]
    assert receipt["reply_message_id"] == reply["reply_message_id"] and receipt["rule"] == "DELIVRD"
    assert refused["rule"] == "blocked" and refused["account"] == "acme" and refused["text"].startswith("count=3 ")
    assert "exported 6 events for +14155550123" in err
    assert "mt refused (blocked): 3 from " in err
    code, out, _ = await _cli(db, "events", "export", "--number", "+" + MOBILE)  # the CSV form
    assert code == 0 and len(out.splitlines()) == 7

    code, out, err = await _cli(db, "report", "--since", iso(started - 1))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1] == "stops honoured: 1 (and 0 possible opt-outs acted on)"
    assert lines[2].startswith("stop confirmations sent: 1, median ") and lines[2].endswith("; without one: 0")
    assert lines[3:] == ["mt refused: blocked 3", "possible opt-outs unreviewed: 1",
                         "deactivations: 1 epochs ended, 1 opt-outs retired"]
    code, out, _ = await _cli(db, "report", "--since", iso(started - 1), "--format", "json")
    summary = json.loads(out)
    assert summary["stops_honoured"] == 1 and summary["mt_refused"] == {"blocked": 3}
    assert 0 <= summary["confirmation_median_seconds"] == summary["confirmation_max_seconds"] < 5
    code, _, err = await _cli(db, "events", "export", "--number", "not a number")
    assert code == 2 and err.startswith("error: ")
    await app.close()
