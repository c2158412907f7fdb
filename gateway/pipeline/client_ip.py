"""Stage 3: the client's address, trusting X-Forwarded-For only from configured proxies.

SECURITY: the left end of X-Forwarded-For is whatever the client wrote. Only hops appended by
proxies we trust are believed, so the client is the rightmost hop that is not a trusted proxy
(as uvicorn's ``ProxyHeadersMiddleware`` and nginx ``real_ip_recursive`` do).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext
from gateway.providers.spec import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


class ClientIP:
    name = "client_ip"

    def __init__(self, trusted: tuple[Network, ...]) -> None:
        self.trusted = trusted

    async def __call__(self, ctx: RequestContext) -> None:
        peer = ctx.request.remote or ""
        ctx.client_ip = peer
        if not self.trusted:
            return
        addr = parse_ip(peer)
        if addr is None or not in_networks(addr, self.trusted):
            return  # the header is ignored: anyone can send it
        hops = [h.strip() for v in ctx.request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
        for hop in reversed(hops):
            hop_addr = parse_ip(hop)
            if hop_addr is None:
                raise Rejection("invalid_forwarded_for", "X-Forwarded-For holds a hop that is not an IP address")
            ctx.client_ip = str(hop_addr)
            if not in_networks(hop_addr, self.trusted):
                return
