"""Stage 1: find the provider named in the URL; only POST is a webhook."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext
from gateway.providers.spec import ProviderSpec


class Route:
    name = "route"

    def __init__(self, providers: Mapping[str, ProviderSpec]) -> None:
        self.providers = providers

    async def __call__(self, ctx: RequestContext) -> None:
        name = ctx.request.match_info.get("provider", "")
        provider = self.providers.get(name)
        if provider is None:
            raise Rejection("unknown_provider", "no provider is configured under this name")
        ctx.provider = provider
        if ctx.request.method != "POST":
            raise Rejection("method_not_allowed", "webhooks are delivered with POST", {"Allow": "POST"})
