"""Stage 3b: the provider's IP allowlist, when it has one (fails closed on an unparseable IP)."""

from __future__ import annotations

from gateway.addresses import in_networks, parse_ip
from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext


class Allowlist:
    name = "allowlist"

    async def __call__(self, ctx: RequestContext) -> None:
        assert ctx.provider is not None
        networks = ctx.provider.ip_allowlist
        if not networks:
            return
        addr = parse_ip(ctx.client_ip)
        if addr is None or not in_networks(addr, networks):
            raise Rejection("ip_not_allowed", "this address may not send webhooks for this provider")
