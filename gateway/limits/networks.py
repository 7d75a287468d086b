"""Addresses and CIDRs with `ipaddress`: allow lists and exempt lists. A check that errors denies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses ('10.0.0.7', '2001:db8::1') and CIDRs ('10.0.0.0/24'); ValueError naming a bad one.
    A CIDR with host bits set ('10.0.0.7/24') is refused: it is usually a typo."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or CIDR ({exc})") from None
    return tuple(networks)


def address(text: str) -> Address:
    """The peer address as the socket reports it; an IPv4-mapped IPv6 address ('::ffff:10.0.0.7',
    a dual-stack listener) is the IPv4 address, and an IPv6 zone ('%eth0') is dropped."""
    ip = ipaddress.ip_address(text.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def key(text: str) -> str:
    """One spelling per address (for counters keyed by source)."""
    try:
        return str(address(text))
    except ValueError:
        return text


def contains(networks: Iterable[Network], ip: str) -> bool:
    """True when ip lies in one of the networks; False when it does not or cannot be read."""
    try:
        peer = address(ip)
        return any(peer in network for network in networks)
    except Exception:  # noqa: BLE001 - a check that errors denies
        return False
