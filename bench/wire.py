"""The SMPP 3.4 bytes the sink and the load generator need: headers, binds, submit_sm.

Deliberately independent of `gateway.smpp` so that the bench measures the gateway
against code it did not write, and so that neither helper pays for its imports.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!IIII")
HEADER_SIZE = 16
RESPONSE_BIT = 0x80000000

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
BINDS = frozenset({BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER})

ESME_RINVCMDID = 0x03


def pdu(command_id: int, status: int, seq: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_SIZE + len(body), command_id, status, seq) + body


def cstr(value: str) -> bytes:
    return value.encode("latin-1") + b"\x00"


def bind(command_id: int, system_id: str, password: str, seq: int = 1) -> bytes:
    body = cstr(system_id) + cstr(password) + cstr("bench") + bytes([0x34, 0, 0]) + cstr("")
    return pdu(command_id, 0, seq, body)


def bind_resp(command_id: int, seq: int, system_id: str = "sink") -> bytes:
    return pdu(command_id | RESPONSE_BIT, 0, seq, cstr(system_id))


def submit_sm(source: str, destination: str, text: bytes, registered_delivery: int = 0, seq: int = 0) -> bytes:
    """submit_sm (4.4.1): international TON/ISDN NPI addresses, GSM default coding."""
    body = (
        cstr("")  # service_type
        + bytes([1, 1]) + cstr(source)
        + bytes([1, 1]) + cstr(destination)
        + bytes([0, 0, 0])  # esm_class, protocol_id, priority_flag
        + cstr("") + cstr("")  # schedule_delivery_time, validity_period
        + bytes([registered_delivery, 0, 0, 0, len(text)])  # ..., replace, data_coding, default_msg_id, sm_length
        + text
    )
    return pdu(SUBMIT_SM, 0, seq, body)
