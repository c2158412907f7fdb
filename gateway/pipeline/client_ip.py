"""Stage 3: the client's address, trusting X-Forwarded-For only from configured proxies
(``gateway/addresses.py``: the rightmost hop that is not a trusted proxy)."""

from __future__ import annotations

from gateway.addresses import Network, client_address
from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext


class ClientIP:
    name = "client_ip"

    def __init__(self, trusted: tuple[Network, ...]) -> None:
        self.trusted = trusted

    async def __call__(self, ctx: RequestContext) -> None:
        peer = ctx.request.remote or ""
        if not self.trusted:
            ctx.client_ip = peer
            return
        try:
            ctx.client_ip = client_address(peer, ctx.request.headers.getall("X-Forwarded-For", ()), self.trusted)
        except ValueError as exc:
            raise Rejection("invalid_forwarded_for", str(exc)) from None
