"""Stage 2: read the body, bounded in size (per provider) and in time."""

from __future__ import annotations

import asyncio

from aiohttp import ClientError
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext


class Body:
    name = "body"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def __call__(self, ctx: RequestContext) -> None:
        assert ctx.provider is not None
        limit = ctx.provider.max_body_bytes
        declared = ctx.request.content_length
        if declared is not None and declared > limit:
            # Refused from the header alone: not one byte of an oversize body is read.
            raise Rejection("body_too_large", f"the body may be at most {limit} bytes")
        try:
            async with asyncio.timeout(self.timeout):
                ctx.body = await self._read(ctx, declared, limit)
        except TimeoutError:
            raise Rejection("body_timeout", f"the body did not arrive within {self.timeout:g}s") from None
        except (asyncio.IncompleteReadError, ClientError, HttpProcessingError, OSError):
            raise Rejection("truncated_body", "the connection ended before the whole body arrived") from None

    @staticmethod
    async def _read(ctx: RequestContext, declared: int | None, limit: int) -> bytes:
        content = ctx.request.content
        if declared is not None:
            return await content.readexactly(declared) if declared else b""
        buf = bytearray()  # chunked: count as we go
        while chunk := await content.readany():
            buf += chunk
            if len(buf) > limit:
                raise Rejection("body_too_large", f"the body may be at most {limit} bytes")
        return bytes(buf)
