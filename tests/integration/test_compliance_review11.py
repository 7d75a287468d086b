"""Issue 11 review: revoke-all clarification, program keywords, evidence (real sockets, clock injected)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from gateway.simulator import Simulator
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey
from tests.integration.conftest import GatewayFactory
from tests.integration.test_compliance_programs import mo
from tests.integration.test_mt_enforcement import bound, submit_sm

A, B, C = "14155550100", "14155550101", "14155550102"  # alerts, promo, in no program
OTHER_NUMBER = "14155550199"
MOBILE = "14155550123"
ON = dt.datetime(2027, 2, 1, 20, 0, tzinfo=dt.UTC).timestamp()  # revoke-all in force, 12:00 PST
CLARIFY = "Unsubscribed from all Acme msgs. Reply ALERTS to keep alerts."
KEYWORDS = {"keywords": [{"program": "promo", "stop": ["PROMO OFF"], "start": ["PROMO"]},
                         {"program": "alerts", "start": ["ALERTS"]}]}


def accounts() -> list[dict[str, Any]]:
    return [{"system_id": "acme", "password": "secret", "numbers": [f"+{A}", f"+{B}", f"+{C}"],
             "programs": [{"name": "alerts", "category": "transactional", "numbers": [f"+{A}"]},
                          {"name": "promo", "category": "marketing", "numbers": [f"+{B}"]}]},
            {"system_id": "other", "password": "pw2", "numbers": [f"+{OTHER_NUMBER}"]}]


async def _gateway(make_gateway: GatewayFactory, **optout: Any) -> Any:
    g = await make_gateway(accounts=accounts(), optout={"programs": KEYWORDS, **optout})
    assert g.optout is not None
    g.optout.clock = lambda: ON
    return g


async def status(app: Any, src: str, mobile: str = MOBILE) -> int:
    return int((await app.request(submit_sm(mobile, src=src))).command_status)


async def test_clarification_keeps_numbers_outside_programs_revoked(make_gateway: GatewayFactory,
                                                                    sim: Simulator) -> None:
    g = await _gateway(make_gateway, revoke_all={"clarify_reply": CLARIFY})
    app = await bound(g)
    await mo(sim, app, MOBILE, B, "STOP")
    await mo(sim, app, MOBILE, B, "ALERTS")  # keep alerts, only alerts
    assert await status(app, A) == 0
    assert await status(app, B) == st.ESME_RINVDSTADR
    assert await status(app, C) == st.ESME_RINVDSTADR  # in no program: stays revoked
    await app.close()


async def test_clarification_to_a_number_outside_programs_keeps_it_revoked(make_gateway: GatewayFactory,
                                                                           sim: Simulator) -> None:
    g = await _gateway(make_gateway, revoke_all={"clarify_reply": CLARIFY})
    app = await bound(g)
    await mo(sim, app, MOBILE, C, "STOP")
    await mo(sim, app, MOBILE, C, "ALERTS")
    assert [await status(app, n) for n in (A, B, C)] == [0, st.ESME_RINVDSTADR, st.ESME_RINVDSTADR]
    await app.close()


async def test_clarification_never_lifts_a_global_block(make_gateway: GatewayFactory, sim: Simulator) -> None:
    g = await _gateway(make_gateway, scope="global", revoke_all={"clarify_reply": CLARIFY})
    app, other = await bound(g), await bound(g, "other", "pw2")
    await mo(sim, app, MOBILE, B, "STOP")
    assert await status(other, OTHER_NUMBER) == st.ESME_RINVDSTADR
    await mo(sim, app, MOBILE, B, "ALERTS")  # no choice was offered under scope global
    assert await status(other, OTHER_NUMBER) == st.ESME_RINVDSTADR
    assert await status(app, C) == st.ESME_RINVDSTADR
    assert await status(app, A) == st.ESME_RINVDSTADR  # the global block stands for every sender
    reply = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_SM and MOBILE.encode() in p.raw)
    assert b"Reply ALERTS" not in reply.raw  # the ordinary STOP reply: no choice offered
    await app.close()
    await other.close()


async def test_admin_blocked_program_keyword_is_not_forwarded(make_gateway: GatewayFactory, sim: Simulator) -> None:
    g = await _gateway(make_gateway, admin_block_drops_mo=True)
    now = time.time()
    key = BlockKey("+" + MOBILE, "", "global")
    await g.store.record(AuditEvent(at=now, op="admin_add", source="operator"),
                         BlockChange("add", Block(key, "admin", "operator", now)))
    await g.sync.catch_up()
    app = await bound(g)
    assert await sim.inject_mo(MOBILE, A, "PROMO OFF") == 0  # acted on, never forwarded
    await mo(sim, app, "14155550999", A, "another mobile")  # forwarded after it on the same session
    assert [b"PROMO OFF" in p.raw for p in app.delivered] == [False]
    assert [e.op for e in await g.store.events_after(0, 1000) if e.number == "+" + MOBILE][-1] == "program_stop"
    await app.close()


async def test_program_and_quiet_hours_refusals_are_evidence(make_gateway: GatewayFactory, sim: Simulator) -> None:
    night = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC).timestamp()  # 22:00 in California
    accts = accounts()
    accts[0]["programs"][1]["quiet_hours"] = "reject"
    g = await make_gateway(accounts=accts, optout={"programs": KEYWORDS})
    g.optout.clock = lambda: night
    app = await bound(g)
    assert await status(app, B) == 0x45  # quiet hours
    g.optout.clock = lambda: ON
    await mo(sim, app, MOBILE, A, "PROMO OFF")
    assert await status(app, B) == st.ESME_RINVDSTADR  # the program's opt-out
    assert await g.optout.refusals.flush(g.store) == 2
    refused = sorted((e.number, e.rule, e.account) for e in await g.store.events_after(0, 1000) if e.op == "mt_refused")
    assert refused == [("+" + MOBILE, "program", "acme/promo"), ("+" + MOBILE, "quiet_hours", "acme/promo")]
    await app.close()


async def _deactivate(g: Any) -> None:
    from gateway.admin_deactivations import end_epoch

    await end_epoch(g.store, "+" + MOBILE, time.time() - 10, time.time())
    await g.sync.catch_up()


async def test_deactivated_marketing_refuses_only_marketing(make_gateway: GatewayFactory, sim: Simulator) -> None:
    g = await _gateway(make_gateway, deactivated_action="marketing")
    app = await bound(g)
    await _deactivate(g)
    assert await status(app, A) == 0  # transactional
    assert await status(app, B) == st.ESME_RINVDSTADR  # marketing
    assert await status(app, C) == st.ESME_RINVDSTADR  # no program claims it: refused
    await app.close()


async def test_deactivated_marketing_without_programs_refuses_all(make_gateway: GatewayFactory,
                                                                  sim: Simulator) -> None:
    g = await make_gateway(accounts=[{"system_id": "acme", "password": "secret", "numbers": [f"+{A}"]}],
                           optout={"deactivated_action": "marketing"})
    app = await bound(g)
    await _deactivate(g)
    assert await status(app, A) == st.ESME_RINVDSTADR
    await app.close()
