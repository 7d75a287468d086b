"""The audit event for an outbox row that expired undelivered: what the evidence needs only.

The row's raw PDU is not kept (it would sit in the audit log for the whole retention period):
the event holds the mobile and the business number (E.164 when they parse), the decoded text,
data_coding, and for a delivery receipt the carrier message id it refers to. A NUL, which
PostgreSQL text refuses, is written as U+2400.
"""

from __future__ import annotations

import struct
import time

from gateway.errors import MalformedPduError
from gateway.policy.numbers import e164
from gateway.policy.text import decode_text
from gateway.smpp import fields as F
from gateway.smpp import pdu as P
from gateway.store.base import AuditEvent, OutboxItem

NUL_SHOWN = "\u2400"


def expiry_event(item: OutboxItem, region: str, alphabet: str = "gsm0338") -> AuditEvent:
    event = AuditEvent(at=time.time(), op="outbox_expired", account=item.account, source="gateway")
    try:
        command_id = P.HEADER.unpack_from(item.raw)[1]
        sm = F.parse_data_sm(item.raw) if command_id == P.DATA_SM else F.parse_short_message(item.raw)
    except (MalformedPduError, struct.error):  # an unreadable row still leaves its event
        return event
    decoded = decode_text(sm.data_coding, sm.esm_class, sm.payload, alphabet)
    receipt = F.receipt_message_id(sm) if sm.is_receipt else None
    return AuditEvent(
        at=event.at, op=event.op, account=item.account, source="gateway",
        number=_number(sm.source, region), counterpart=_number(sm.destination, region),
        text=(decoded.text or "").replace("\x00", NUL_SHOWN), data_coding=sm.data_coding,
        carrier_message_id=receipt.decode("latin-1") if receipt else "",
    )


def _number(address: F.Address, region: str) -> str:
    return e164(address.ton, address.addr, region) or address.text.replace("\x00", NUL_SHOWN)
