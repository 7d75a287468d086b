"""The gateway's own PDUs are built with aiosmpplib; this turns our addresses into its type."""

from __future__ import annotations

from aiosmpplib import NPI, TON, PhoneNumber

from gateway.smpp.fields import Address


def phone(address: Address) -> PhoneNumber:
    """aiosmpplib's PhoneNumber for an address we read; TON/NPI outside its enums become unknown."""
    try:
        ton, npi = TON(address.ton), NPI(address.npi)
    except ValueError:
        ton, npi = TON.UNKNOWN, NPI.UNKNOWN
    return PhoneNumber(address.addr.decode("ascii", "ignore")[:20], ton, npi)
