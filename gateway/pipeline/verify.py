"""Stage 5: signature and timestamp, through the one generic verifier."""

from __future__ import annotations

import time

from gateway.metrics import Metrics
from gateway.pipeline.context import RequestContext
from gateway.providers.verifier import verify


class Verify:
    name = "verify"

    def __init__(self, public_url: str, metrics: Metrics) -> None:
        self.public_url = public_url.rstrip("/")
        self.metrics = metrics

    async def __call__(self, ctx: RequestContext) -> None:
        provider = ctx.provider
        assert provider is not None
        now = time.time()
        url = f"{self.public_url}{ctx.request.rel_url.raw_path_qs}"
        result = verify(provider, ctx.request.headers, ctx.body, url, now)
        ctx.secret_index = result.secret_index
        ctx.timestamp = result.timestamp
        if result.secret_index >= 0:
            self.metrics.secret_matches.labels(provider.name, str(result.secret_index)).inc()
        if result.timestamp is not None:
            self.metrics.skew.labels(provider.name).observe(abs(now - result.timestamp))
