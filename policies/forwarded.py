"""The client's address: the peer's, or the one a trusted proxy reports in X-Forwarded-For.

Like uvicorn's `_TrustedHosts.get_trusted_client_host`: when the peer is a trusted proxy,
walk X-Forwarded-For from the right (the entries proxies appended last) and take the first
address that is not itself a trusted proxy; entries further left are the client's own
words and are never believed. A peer that is not trusted is the client, whatever it sent.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ADDRESS_CHARS = 64  # an entry is only ever used as a counter's name: bounded


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """`server.trusted_proxies` as networks; ValueError names a malformed entry."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str:
    """The address failed authentications are counted against.

    `forwarded_for`: every X-Forwarded-For header value, in the order received.
    """
    if not networks or not _trusted(peer, networks):
        return peer[:MAX_ADDRESS_CHARS]
    entries = [entry.strip() for value in forwarded_for for entry in value.split(",") if entry.strip()]
    for entry in reversed(entries):
        if not _trusted(entry, networks):
            return entry[:MAX_ADDRESS_CHARS]
    return (entries[0] if entries else peer)[:MAX_ADDRESS_CHARS]
