"""Block keys over sockets: MO and MT key the same number the same way, whatever its spelling,
and scope account keys by the account that owns the number."""

from __future__ import annotations

import pytest

from gateway.app import Gateway
from gateway.simulator import Simulator
from gateway.smpp import fields as F
from gateway.smpp import status as st
from tests.integration.conftest import ACCOUNTS, GatewayFactory
from tests.integration.test_mt_enforcement import bound, mts_at_carrier, submit_multi, submit_sm

MOBILE = "14155550123"
UNOWNED = "14155550199"  # a long code no account owns
TWO_DEFAULTS = [*ACCOUNTS, {"system_id": "other2", "password": "pw3"}]


async def test_scope_account_stop_to_unowned_number_blocks_every_sender_of_it(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=TWO_DEFAULTS, optout={"scope": "account"})
    first, second = await bound(gateway, "other", "pw2"), await bound(gateway, "other2", "pw3")
    assert await sim.inject_mo(MOBILE, UNOWNED, "STOP") == 0
    await first.wait(lambda: len(first.delivered) + len(second.delivered) == 1)
    before = len(mts_at_carrier(sim))
    for app in (first, second):  # whichever default account the MO went to
        resp = await app.request(submit_sm(MOBILE, 1, UNOWNED, 1))
        assert resp.command_status == st.ESME_RINVDSTADR
    assert len(mts_at_carrier(sim)) == before
    assert (await first.request(submit_sm(MOBILE, 1, "14155550198", 1))).command_status == 0  # another number
    await first.close()
    await second.close()


async def test_scope_account_stop_to_owned_number_blocks_the_owner(
        make_gateway: GatewayFactory, sim: Simulator) -> None:
    gateway = await make_gateway(accounts=TWO_DEFAULTS, optout={"scope": "account"})
    acme, other = await bound(gateway), await bound(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, "14155550100", "STOP") == 0  # acme's number
    await acme.wait(lambda: len(acme.delivered) == 1)
    assert (await acme.request(submit_sm(MOBILE))).command_status == st.ESME_RINVDSTADR
    assert (await other.request(submit_sm(MOBILE, 1, UNOWNED, 1))).command_status == 0  # not other's block
    await acme.close()
    await other.close()


@pytest.mark.parametrize("form", [("6581234567", 0), ("65 8123 4567", 0), ("6581234567", 3), ("6581234567", 6),
                                  ("+6581234567", 0), ("6581234567", 1)])
async def test_ambiguous_destination_is_refused_when_either_reading_is_blocked(
        gateway: Gateway, sim: Simulator, form: tuple[str, int]) -> None:
    app = await bound(gateway)
    assert await sim.inject_mo("6581234567", "14155550100", "STOP") == 0  # Singapore +65 8123 4567
    await app.wait(lambda: len(app.delivered) == 1)
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) == 1)  # the STOP reply
    addr, ton = form
    assert (await app.request(submit_sm(addr, ton))).command_status == st.ESME_RINVDSTADR
    resp = await app.request(submit_multi([(addr, ton), ("6581234568", 0)]))
    assert [s for _, s in F.parse_submit_multi_resp(resp.raw)[1]] == [st.ESME_RINVDSTADR]
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) == 2)
    assert b"6581234567" not in mts_at_carrier(sim)[-1].raw
    assert (await app.request(submit_sm("6581234568", 0))).command_status == 0  # a neighbour still goes
    await app.close()


async def test_national_reading_still_blocks(gateway: Gateway, sim: Simulator) -> None:
    app = await bound(gateway)
    assert await sim.inject_mo("+14155550123", "14155550100", "STOP") == 0
    await app.wait(lambda: len(app.delivered) == 1)
    assert (await app.request(submit_sm("4155550123", 0))).command_status == st.ESME_RINVDSTADR
    assert (await app.request(submit_sm("4155550123", 3))).command_status == st.ESME_RINVDSTADR
    await app.close()


@pytest.mark.parametrize("business", ["1-415-555-0100", "+1 415 555 0100", "1.415.555.0100"])
async def test_stop_to_business_number_with_separators_blocks(gateway: Gateway, sim: Simulator,
                                                              business: str) -> None:
    app = await bound(gateway)
    assert await sim.inject_mo(MOBILE, business, "STOP") == 0
    await app.wait(lambda: len(app.delivered) == 1)
    await sim.wait_until(lambda: len(mts_at_carrier(sim)) == 1)  # the STOP reply went out
    before = len(mts_at_carrier(sim))
    for src in ("14155550100", business):
        assert (await app.request(submit_sm(MOBILE, 1, src, 1))).command_status == st.ESME_RINVDSTADR, src
    assert len(mts_at_carrier(sim)) == before
    await app.close()


@pytest.mark.parametrize("mo_dest", [("12345", 3), ("+12345", 1)])
async def test_short_code_block_holds_with_a_plus(gateway: Gateway, sim: Simulator,
                                                  mo_dest: tuple[str, int]) -> None:
    app = await bound(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, mo_dest[0], "STOP", dest_ton=mo_dest[1], dest_npi=0) == 0
    await app.wait(lambda: len(app.delivered) == 1)
    before = len(mts_at_carrier(sim))
    for src, ton in (("12345", 3), ("+12345", 1), ("+12345", 0), ("+12 345", 1)):
        assert (await app.request(submit_sm(MOBILE, 1, src, ton))).command_status == st.ESME_RINVDSTADR, src
    assert len(mts_at_carrier(sim)) == before
    assert (await app.request(submit_sm(MOBILE, 1, "012345", 0))).command_status == 0  # another short code
    assert (await app.request(submit_sm(MOBILE, 1, "+012345", 1))).command_status == 0
    await app.close()



@pytest.mark.parametrize("text", ["hello", "STOP"])
async def test_mo_to_an_owned_short_code_spelled_with_a_plus_goes_to_its_owner(
        make_gateway: GatewayFactory, sim: Simulator, text: str) -> None:
    accounts = [*ACCOUNTS, {"system_id": "sc", "password": "pw4", "numbers": ["12345"]}]
    gateway = await make_gateway(accounts=accounts)
    owner, other = await bound(gateway, "sc", "pw4"), await bound(gateway, "other", "pw2")
    assert await sim.inject_mo(MOBILE, "+12345", text, dest_ton=1) == 0
    await owner.wait(lambda: len(owner.delivered) == 1)
    assert not other.delivered
    await owner.close()
    await other.close()
