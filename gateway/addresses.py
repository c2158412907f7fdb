"""Client addresses: parsing, network membership, and who the client is behind trusted proxies.

SECURITY: the left end of X-Forwarded-For is whatever the client wrote. Only hops appended by
proxies we trust are believed, so the client is the rightmost hop that is not a trusted proxy
(as uvicorn's ``ProxyHeadersMiddleware`` and nginx ``real_ip_recursive`` do). The webhook
pipeline (``pipeline/client_ip.py``) and the dashboard's login throttle both ask here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)
def parse_ip(text: str) -> IPAddress | None:
    """The address, with IPv4-mapped IPv6 (``::ffff:1.2.3.4``) folded to IPv4; None if invalid."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def in_networks(addr: IPAddress, networks: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def client_address(peer: str, forwarded: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The client: ``peer`` unless it is a trusted proxy, then the rightmost hop of every
    ``X-Forwarded-For`` value (``forwarded``, in order) that is not one. ``ValueError`` for a hop
    that is not an address (a trusted proxy would not write one)."""
    addr = parse_ip(peer) if trusted else None
    if addr is None or not in_networks(addr, trusted):
        return peer  # the header is ignored: anyone can send it
    client = peer
    hops = [h.strip() for value in forwarded for h in value.split(",")]
    for hop in reversed(hops):
        hop_addr = parse_ip(hop)
        if hop_addr is None:
            raise ValueError("X-Forwarded-For holds a hop that is not an IP address")
        client = str(hop_addr)
        if not in_networks(hop_addr, trusted):
            break
    return client
