"""The opt-out engine end to end: mobile -> simulator -> gateway -> application, and back."""

from __future__ import annotations

import asyncio

import pytest

from gateway.app import Gateway
from gateway.policy.text import decode_text
from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.smpp import status as st
from tests.integration.client import RawClient, submit_sm
from tests.integration.conftest import GatewayFactory

MOBILE = "14155550123"
LONG_CODE = "14155550100"  # owned by account acme
TOLL_FREE = "18005550100"


class App:
    """An application bound as transceiver that answers every deliver_sm with ESME_ROK."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        client.auto_ack = True
        self.delivered = client.delivered

    @classmethod
    async def bind(cls, gateway: Gateway, system_id: str = "acme", password: str = "secret") -> App:
        client = await RawClient.connect(gateway.smpp_port)
        assert (await client.bind(system_id, password)).command_status == 0
        return cls(client)

    async def submit(self, dst: str = MOBILE, src: str = LONG_CODE) -> P.Pdu:
        return await self.client.request(submit_sm(dst=dst, src=src))

    async def close(self) -> None:
        await self.client.close()


async def replies_to(sim: Simulator, mobile: str, fragment: bytes, timeout: float = 5) -> P.Pdu:
    return await sim.wait_for(
        lambda p: p.command_id == P.SUBMIT_SM and mobile.encode() + b"\x00" in p.raw and fragment in p.raw,
        timeout=timeout,
    )


def submits_to(sim: Simulator, mobile: str) -> list[P.Pdu]:
    return [p for p in sim.received if p.command_id == P.SUBMIT_SM and F.submit_addresses(p.raw)[1].text == mobile]


@pytest.mark.parametrize("keyword", ["STOP", " stop. ", "Stop all", "ＳＴＯＰ", "unsubscribe!", "Arrête"])
async def test_stop_blocks_replies_and_forwards(gateway: Gateway, sim: Simulator, keyword: str) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, keyword) == 0
    reply = await replies_to(sim, MOBILE, b"unsubscribed")
    src, dst = F.submit_addresses(reply.raw)
    assert (src.text, dst.text) == (LONG_CODE, MOBILE) and (src.ton, dst.ton) == (1, 1)
    assert len(app.delivered) == 1  # the MO itself still reaches the application, as sent
    sm = F.parse_short_message(app.delivered[0].raw)
    assert decode_text(sm.data_coding, sm.esm_class, sm.payload).text == keyword
    before = len(sim.received)
    resp = await app.submit()
    assert resp.command_status == st.ESME_RINVDSTADR
    assert len(sim.received) == before  # never reached the carrier
    assert (await app.submit(dst="14155550124")).command_status == 0  # others unaffected
    await app.close()


async def test_start_lifts_with_reply_and_help_changes_nothing(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert await sim.inject_mo(MOBILE, LONG_CODE, "help") == 0
    await replies_to(sim, MOBILE, b"Msg&data")
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE, LONG_CODE, "Start") == 0
    await replies_to(sim, MOBILE, b"resubscribed")
    assert (await app.submit()).command_status == 0
    assert len(app.delivered) == 3  # every keyword MO still reaches the application
    await app.close()


@pytest.mark.parametrize("text", ["please don't stop", "NETWORK MSG: You replied with the word \"stop\"",
                                  "STOP PLEASE"])
async def test_not_keywords(gateway: Gateway, sim: Simulator, text: str) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, text) == 0
    assert (await app.submit()).command_status == 0
    assert not [p for p in submits_to(sim, MOBILE) if b"unsubscribed" in p.raw]
    assert len(app.delivered) == 1 and text.encode()[:10] in app.delivered[0].raw
    await app.close()


async def test_toll_free_mirrors_carrier_block_without_reply(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "STOP") == 0
    assert (await app.submit(src=TOLL_FREE)).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "YES") == 0  # the network ignores YES: still blocked
    assert (await app.submit(src=TOLL_FREE)).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "UNSTOP") == 0
    assert (await app.submit(src=TOLL_FREE)).command_status == 0
    replies = [p for p in submits_to(sim, MOBILE) if b"subscribed" in p.raw]
    assert replies == []  # the network sends its own NETWORK MSG; we send nothing
    assert len(app.delivered) == 3
    await app.close()


async def test_block_survives_restart(make_gateway: GatewayFactory, sim: Simulator) -> None:
    first = await make_gateway()
    app = await App.bind(first)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await app.close()
    await first.stop()
    second = await make_gateway()
    app = await App.bind(second)
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_redelivered_stop_replies_once(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    assert len(app.delivered) == 2
    assert len([p for p in submits_to(sim, MOBILE) if b"unsubscribed" in p.raw]) == 1
    await app.close()


async def test_auto_reply_receipt_goes_to_nobody(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "HELP") == 0
    reply = await replies_to(sim, MOBILE, b"Msg&data")
    submission = next(s for s in sim.submissions if s.pdu is reply)
    assert submission.message_id
    result = await sim.wait_for_result(lambda r: b"id:" + submission.message_id.encode() in r[0])
    assert result[1] == 0  # the gateway acked its own receipt
    assert len(app.delivered) == 1  # the application saw the HELP, not the receipt
    await app.close()


async def test_store_failure_asks_carrier_to_retry(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert gateway.store is not None
    await gateway.store.close()  # the store now fails every write
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == st.ESME_RX_T_APPN
    assert (await app.submit()).command_status == 0  # nothing half-applied
    assert not [p for p in submits_to(sim, MOBILE) if b"unsubscribed" in p.raw]
    await app.close()


async def test_submit_multi_reports_blocked_destinations(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    body = (b"\x00" + b"\x01\x01" + LONG_CODE.encode() + b"\x00" + b"\x02"
            + b"\x01\x01\x01" + MOBILE.encode() + b"\x00" + b"\x01\x01\x0114155550124\x00"
            + b"\x00\x00\x00" + b"\x00\x00" + b"\x00\x00" + b"\x00\x00" + b"\x02hi")
    resp = await app.client.request(P.encode(P.SUBMIT_MULTI, 0, 1, body))
    assert resp.command_id == P.SUBMIT_MULTI_RESP and resp.command_status == 0
    _, unsuccess = F.parse_submit_multi_resp(resp.raw)
    assert [(a.text, s) for a, s in unsuccess] == [(MOBILE, st.ESME_RINVDSTADR)]
    forwarded = await sim.wait_for(lambda p: p.command_id == P.SUBMIT_MULTI)
    dests, _, _ = F.submit_multi_dests(forwarded.raw)
    assert [d.address.text for d in dests if d.address] == ["14155550124"]
    await app.close()


async def test_receipt_mode_accepts_and_reports_rejected(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(optout={"block_mode": "receipt"})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    resp = await app.client.request(submit_sm(dst=MOBILE, src=LONG_CODE, registered_delivery=1))
    assert resp.command_status == 0
    message_id = F.response_message_id(resp.raw)
    await app.client.wait(lambda: any(b"stat:REJECTD" in p.raw for p in app.delivered))
    receipt = next(p for p in app.delivered if b"stat:REJECTD" in p.raw)
    assert b"id:" + message_id in receipt.raw
    assert not submits_to(sim, MOBILE)[1:]  # only the STOP reply went to the carrier
    await app.close()


async def test_custom_op_annotation_and_drop(make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(optout={
        "custom_ops": [{"name": "nopromo", "keywords": ["NOPROMO"],
                        "reply": "You will get no more promotions from us."}],
        "annotate_tlv": 0x1501,
        "forward": {"help": "drop"},
    })
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "nopromo") == 0
    await replies_to(sim, MOBILE, b"no more promotions")
    assert (await app.submit()).command_status == 0  # a custom op changes no block
    await app.client.wait(lambda: len(app.delivered) == 1)
    tlvs = F.parse_short_message(app.delivered[0].raw).tlvs
    assert tlvs[0x1501] == b"NOPROMO"  # the op travels with the forwarded MO
    assert await sim.inject_mo(MOBILE, LONG_CODE, "HELP") == 0  # acked by the gateway itself
    await replies_to(sim, MOBILE, b"Msg&data")
    assert await sim.inject_mo(MOBILE, LONG_CODE, "plain text") == 0
    await app.client.wait(lambda: len(app.delivered) == 2)
    assert b"plain text" in app.delivered[1].raw  # HELP was dropped, not forwarded
    assert 0x1501 not in F.parse_short_message(app.delivered[1].raw).tlvs
    await app.close()


async def test_alphanumeric_originator_is_never_answered(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo("ACME", LONG_CODE, "STOP", source_ton=5, source_npi=0) == 0
    assert await sim.inject_mo("12345", LONG_CODE, "STOP", source_ton=3, source_npi=0) == 0
    await app.client.wait(lambda: len(app.delivered) == 2)
    assert not [p for p in sim.received if p.command_id == P.SUBMIT_SM]
    await app.close()


async def test_possible_optout_is_counted_not_acted_on(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "stop texting me") == 0
    assert (await app.submit()).command_status == 0
    assert gateway.store is not None
    async with asyncio.timeout(5):
        while not [e for e in await gateway.store.events_after(0) if e.op == "possible_optout"]:
            await asyncio.sleep(0.01)
    await app.close()


async def test_audit_event_has_the_compliance_record(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "Stop.") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert gateway.store is not None
    async with asyncio.timeout(5):
        while not [e for e in await gateway.store.events_after(0) if e.op == "stop_reply"]:
            await asyncio.sleep(0.01)
    events = {e.op: e for e in await gateway.store.events_after(0)}
    stop = events["stop"]
    assert (stop.number, stop.counterpart, stop.account) == ("+" + MOBILE, "+" + LONG_CODE, "acme")
    assert (stop.text, stop.data_coding, stop.rule, stop.source) == ("Stop.", 0, "stop:STOP", "keyword")
    assert stop.config_version and stop.block_state == "blocked" and stop.reply_text.startswith("You have")
    assert events["stop_reply"].reply_message_id
    await app.close()


LONG_REPLY = "Acme: you are unsubscribed from all messages. " * 6  # 282 characters: two segments


@pytest.mark.parametrize("mode", ["concatenate", "payload"])
async def test_long_reply_segments_or_payload(make_gateway: GatewayFactory, sim: Simulator, mode: str) -> None:
    gateway = await make_gateway(optout={"replies": {"stop": LONG_REPLY.strip()}, "reply_long": mode})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    expected = 2 if mode == "concatenate" else 1
    await sim.wait_until(lambda: len(submits_to(sim, MOBILE)) == expected)
    parts = [F.parse_short_message(p.raw) for p in submits_to(sim, MOBILE)]
    if mode == "concatenate":
        assert all(sm.esm_class & P.ESM_UDHI for sm in parts)
        texts = [decode_text(sm.data_coding, sm.esm_class, sm.payload) for sm in parts]
        assert all(t.is_segment for t in texts)
        assert "".join(t.text or "" for t in texts) == LONG_REPLY.strip()
    else:
        assert P.TAG_MESSAGE_PAYLOAD in parts[0].tlvs
        assert decode_text(parts[0].data_coding, 0, parts[0].payload).text == LONG_REPLY.strip()
    await app.close()


async def test_reply_outside_gsm_goes_as_ucs2(make_gateway: GatewayFactory, sim: Simulator) -> None:
    reply = "Désabonné·e ✓ — vous ne recevrez plus de messages. Répondez START."
    gateway = await make_gateway(optout={"replies": {"stop": reply}})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await sim.wait_until(lambda: len(submits_to(sim, MOBILE)) == 1)
    sm = F.parse_short_message(submits_to(sim, MOBILE)[0].raw)
    assert sm.data_coding == 8 and sm.short_message.decode("utf-16-be") == reply
    await app.close()


async def test_short_code_stop_blocks_and_replies(gateway: Gateway, sim: Simulator) -> None:
    app = await App.bind(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, "12345", "STOP", dest_ton=3, dest_npi=0) == 0
    reply = await replies_to(sim, MOBILE, b"unsubscribed")
    assert F.submit_addresses(reply.raw)[0].text == "12345"
    assert (await app.submit(src="12345")).command_status == st.ESME_RINVDSTADR
    assert (await app.submit(src="12346")).command_status == 0
    await app.close()


async def test_account_scope_without_an_owner_blocks_the_number(make_gateway: GatewayFactory,
                                                                 sim: Simulator) -> None:
    """No account owns the number: the block is the number's own, whichever account got the MO."""
    accounts = [{"system_id": "a", "password": "pa"}, {"system_id": "b", "password": "pb"}]
    gateway = await make_gateway(accounts=accounts, optout={"scope": "account"})
    apps = [await App.bind(gateway, "a", "pa"), await App.bind(gateway, "b", "pb")]
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    for app in apps:
        assert (await app.submit()).command_status == st.ESME_RINVDSTADR
        assert (await app.submit(src="14155550177")).command_status == 0  # another number still goes
    for app in apps:
        await app.close()


async def test_toll_free_carrier_block_is_per_number_in_any_scope(make_gateway: GatewayFactory,
                                                                  sim: Simulator) -> None:
    gateway = await make_gateway(optout={"scope": "global"})
    app = await App.bind(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "STOP") == 0  # the network blocks this number only
    assert (await app.submit(src=TOLL_FREE)).command_status == st.ESME_RINVDSTADR
    assert (await app.submit(src="14155550177")).command_status == 0
    await app.close()


async def test_store_failure_answers_the_configured_temporary_status(make_gateway: GatewayFactory,
                                                                     sim: Simulator) -> None:
    gateway = await make_gateway(routing={"unbound_status": 0x58})
    app = await App.bind(gateway)
    assert gateway.store is not None
    await gateway.store.close()
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0x58
    await app.close()


async def test_stop_again_after_an_operator_lift_is_a_new_stop(gateway: Gateway, sim: Simulator) -> None:
    import time as _time

    from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey

    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert gateway.store is not None and gateway.sync is not None
    key = BlockKey("+" + MOBILE, "+" + LONG_CODE, "number")
    await gateway.store.record(AuditEvent(at=_time.time(), op="admin_remove", source="operator"),
                               BlockChange("remove", Block(key, "optout", "operator", _time.time())))
    await gateway.sync.catch_up()
    assert (await app.submit()).command_status == 0
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0  # the same text, a new request
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_start_lifts_opt_outs_in_every_scope(make_gateway: GatewayFactory, sim: Simulator) -> None:
    import time as _time

    from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey

    gateway = await make_gateway(optout={"scope": "account"})
    app = await App.bind(gateway)
    assert gateway.store is not None and gateway.sync is not None
    key = BlockKey("+" + MOBILE, "+" + LONG_CODE, "number")  # an opt-out from before a scope change
    await gateway.store.record(AuditEvent(at=_time.time(), op="stop", source="keyword"),
                               BlockChange("add", Block(key, "optout", "keyword", _time.time())))
    await gateway.sync.catch_up()
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE, LONG_CODE, "START") == 0
    await replies_to(sim, MOBILE, b"resubscribed")
    assert (await app.submit()).command_status == 0
    await app.close()


async def test_toll_free_start_lifts_mirror_and_opt_out_in_account_scope(make_gateway: GatewayFactory,
                                                                         sim: Simulator) -> None:
    gateway = await make_gateway(optout={"scope": "account"})
    app = await App.bind(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "UNSUBSCRIBE") == 0  # ours, in account scope
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "STOP") == 0  # the network's, per number
    assert (await app.submit(src=TOLL_FREE)).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "YES") == 0  # the network still blocks: stays
    assert (await app.submit(src=TOLL_FREE)).command_status == st.ESME_RINVDSTADR
    assert await sim.inject_mo(MOBILE, TOLL_FREE, "START") == 0
    assert (await app.submit(src=TOLL_FREE)).command_status == 0
    await app.close()


@pytest.mark.parametrize("mo_addr, mo_ton, mt_dst", [
    ("5215512345678", 1, "5215512345678"),  # Mexico's legacy mobile 1: phonenumbers would drop it
    ("4407911123456", 1, "4407911123456"),
    ("4155550199", 2, "14155550199"),  # national in, international out: one mobile
])
async def test_mo_and_mt_agree_on_the_mobile_key(gateway: Gateway, sim: Simulator, mo_addr: str, mo_ton: int,
                                                  mt_dst: str) -> None:
    app = await App.bind(gateway)
    assert await sim.inject_mo(mo_addr, LONG_CODE, "STOP", source_ton=mo_ton) == 0
    await app.client.wait(lambda: len(app.delivered) == 1)
    assert (await app.submit(dst=mt_dst)).command_status == st.ESME_RINVDSTADR
    await app.close()


async def test_account_scope_without_owner_still_blocks_the_pair(make_gateway: GatewayFactory,
                                                                 sim: Simulator) -> None:
    accounts = [{"system_id": "acme", "password": "secret", "numbers": ["+14155550100"]}]
    gateway = await make_gateway(accounts=accounts, optout={"scope": "account"})
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, "14155550199", "STOP") in (0, st.ESME_RX_T_APPN)  # nobody owns it
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert gateway.index.is_blocked(int(MOBILE), "+14155550199", "acme")  # the reply was true
    assert (await app.submit(src="14155550199")).command_status == st.ESME_RINVSRCADR  # not acme's number
    await app.close()


async def test_start_under_an_operator_block_lifts_the_opt_out_silently(gateway: Gateway, sim: Simulator) -> None:
    import time as _time

    from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey

    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    assert gateway.store is not None and gateway.sync is not None
    admin = BlockKey("+" + MOBILE, "", "global")
    now = _time.time()
    await gateway.store.record(AuditEvent(at=now, op="admin_add", source="operator"),
                               BlockChange("add", Block(admin, "admin", "operator", now)))
    await gateway.sync.catch_up()
    assert await sim.inject_mo(MOBILE, LONG_CODE, "START") == 0
    assert not [p for p in submits_to(sim, MOBILE) if b"resubscribed" in p.raw]  # still blocked: no claim
    await gateway.store.remove_block(admin)
    await gateway.sync.catch_up()
    assert (await app.submit()).command_status == 0  # the user's START had lifted their own opt-out
    await app.close()


async def test_stop_for_a_block_the_store_has_but_the_index_not_yet_is_enforced_at_once(
        gateway: Gateway, sim: Simulator) -> None:
    """Found by the chaos soak: the other gateway's STOP was in the store while this gateway's log
    follower was still reconnecting after a store outage; the mobile's next STOP here was answered
    ESME_ROK, the store said "no change" (already blocked), and the index was left to the follower:
    MT to the pair went to the carrier for seconds after this gateway had acked the STOP."""
    import time as _time

    from gateway.store.base import AuditEvent, Block, BlockChange, BlockKey

    assert gateway.store is not None and gateway.sync is not None
    await gateway.sync.stop()  # the follower is behind: it will not bring the block in
    key = BlockKey("+" + MOBILE, "+" + LONG_CODE, "number")
    await gateway.store.record(AuditEvent(at=_time.time(), op="stop", number=key.number, counterpart=key.counterpart,
                                          source="keyword", scope="number", kind="optout"),
                               BlockChange("add", Block(key, "optout", "keyword", _time.time())))
    app = await App.bind(gateway)
    assert (await app.submit()).command_status == 0  # this gateway does not know yet
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    before = len(submits_to(sim, MOBILE))
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    assert len(submits_to(sim, MOBILE)) == before
    await app.close()


async def test_a_stop_taken_as_a_redelivery_still_brings_the_stores_block_into_the_index(
        gateway: Gateway, sim: Simulator) -> None:
    """The soak's case in full: the other gateway's STOP (same text, moments ago) is in the store, so
    this STOP is a redelivery (no event, no reply); the index this gateway has lacks the block."""
    from gateway.store.base import BlockKey

    assert gateway.store is not None and gateway.sync is not None
    app = await App.bind(gateway)
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0
    await replies_to(sim, MOBILE, b"unsubscribed")
    await gateway.sync.stop()
    key = BlockKey("+" + MOBILE, "+" + LONG_CODE, "number")
    assert gateway.index.remove(key)  # as an index that has not caught up with the store
    assert (await app.submit()).command_status == 0
    assert await sim.inject_mo(MOBILE, LONG_CODE, "STOP") == 0  # within the redelivery window
    assert (await app.submit()).command_status == st.ESME_RINVDSTADR
    assert len(app.delivered) == 2  # both MO reach the application
    await app.close()
