"""Sans-IO session rules: bind states, which PDUs each state allows, sequence numbers."""

from __future__ import annotations

from enum import IntEnum

from gateway.smpp import pdu as P
from gateway.smpp import status as st


class BindState(IntEnum):
    OPEN = 0
    BOUND_TX = 1
    BOUND_RX = 2
    BOUND_TRX = 3
    UNBOUND = 4  # unbind sent or received; closing


BIND_STATE_FOR = {
    P.BIND_TRANSMITTER: BindState.BOUND_TX,
    P.BIND_RECEIVER: BindState.BOUND_RX,
    P.BIND_TRANSCEIVER: BindState.BOUND_TRX,
}
CAN_SUBMIT = frozenset({BindState.BOUND_TX, BindState.BOUND_TRX})
CAN_RECEIVE = frozenset({BindState.BOUND_RX, BindState.BOUND_TRX})
BOUND = frozenset({BindState.BOUND_TX, BindState.BOUND_RX, BindState.BOUND_TRX})

# Requests an application may send that the gateway forwards to the carrier.
FORWARDED = frozenset({P.SUBMIT_SM, P.DATA_SM, P.SUBMIT_MULTI, P.QUERY_SM, P.CANCEL_SM, P.REPLACE_SM})
# Requests the carrier sends that are handed to an application.
DELIVERED = frozenset({P.DELIVER_SM, P.DATA_SM})


def esme_request_status(state: BindState, command_id: int) -> int | None:
    """None when an application may send command_id in `state`, else the status to refuse it with.

    SMPP 3.4 section 2.3: before a bind only bind and enquire_link are allowed; a receiver
    may not submit.
    """
    if command_id == P.ENQUIRE_LINK:
        return None
    if command_id in P.BIND_COMMANDS:
        return st.ESME_RALYBND if state in BOUND else (None if state == BindState.OPEN else st.ESME_RINVBNDSTS)
    if state not in BOUND:
        return st.ESME_RINVBNDSTS
    if command_id == P.UNBIND:
        return None
    if command_id in FORWARDED:
        return None if state in CAN_SUBMIT else st.ESME_RINVBNDSTS
    return None


class Sequencer:
    """sequence_number 1..0x7FFFFFFF, wrapping (5.1.4). `value` is the next one (gateway/hotpath.py
    reads it inline)."""

    __slots__ = ("value",)

    def __init__(self, start: int = 1) -> None:
        self.value = start

    def next(self) -> int:
        n = self.value
        self.value = 1 if n >= P.MAX_SEQUENCE else n + 1
        return n
