"""What the simulator keeps of each message submission, and how it reads one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.simulator.codec import decode_text
from gateway.smpp.fields import (
    Address,
    DataSm,
    ShortMessage,
    parse_data_sm,
    parse_short_message,
    submit_multi_dests,
)
from gateway.smpp.pdu import (
    DATA_SM,
    SUBMIT_MULTI,
    Pdu,
    command_name,
)

MAX_ADDRESS = 20  # deliver_sm source/destination: C-Octet String of at most 21 octets


@dataclass(slots=True)
class Submission:
    """A submit_sm / data_sm / submit_multi as the simulator took it."""

    pdu: Pdu
    message: ShortMessage | DataSm
    destinations: list[Address]
    message_id: str | None  # None when swallowed or refused
    status: int | None  # None when swallowed (respond=False)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def summary(self) -> dict[str, Any]:
        message = self.message
        return {
            "sequence": self.pdu.sequence_number,
            "command": command_name(self.pdu.command_id),
            "source": message.source.text,
            "destination": ",".join(d.text for d in self.destinations),
            "text": decode_text(message.data_coding, message.payload, message.esm_class),
            "data_coding": message.data_coding,
            "registered_delivery": message.registered_delivery,
            "message_id": self.message_id,
            "status": self.status,
        }



def address_octets(value: str) -> bytes:
    octets = value.encode("ascii")  # UnicodeEncodeError is a ValueError
    if not 0 < len(octets) <= MAX_ADDRESS or b"\x00" in octets:
        raise ValueError(f"address must be 1-{MAX_ADDRESS} characters: {value!r}")
    return octets


def parse_submission(pdu: Pdu) -> tuple[ShortMessage | DataSm, list[Address]]:
    """The message fields and SME destinations; MalformedPduError when unreadable."""
    raw = pdu.raw
    if pdu.command_id == DATA_SM:
        data = parse_data_sm(raw)
        return data, [data.destination]
    if pdu.command_id == SUBMIT_MULTI:
        dests, count_at, end = submit_multi_dests(raw)
        # After the destinations the layout is submit_sm's: splice in an empty destination.
        message = parse_short_message(raw[:count_at] + b"\x00\x00\x00" + raw[end:])
        return message, [d.address for d in dests if d.address is not None]
    message = parse_short_message(raw)
    return message, [message.destination]
