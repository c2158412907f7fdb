"""Stage 2: read the body, bounded in size (per provider) and in time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import ClientError, HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext, WebhookRequest
from gateway.providers.spec import ProviderSpec


class Body:
    name = "body"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def __call__(self, ctx: RequestContext) -> None:
        assert ctx.provider is not None
        _refuse_encoded(ctx.request)
        limit = ctx.provider.max_body_bytes
        declared = ctx.request.content_length
        if declared is not None and declared > limit:
            # Refused from the header alone: not one byte of an oversize body is read.
            raise Rejection("body_too_large", f"the body may be at most {limit} bytes")
        content = ctx.request.content
        if declared is not None and content.total_bytes >= declared:
            # The whole body came with the headers (the usual webhook): nothing to wait for.
            ctx.body = await content.readexactly(declared) if declared else b""
            return
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


def _refuse_encoded(request: WebhookRequest) -> None:
    """Only ``identity`` bodies. Providers sign the bytes they send and none compresses webhooks;
    inflating an untrusted body before its signature is checked invites decompression bombs. The
    server hands us the bytes as sent (``GatewayRunner``: ``auto_decompress=False``), so whatever
    an encoded body holds, broken gzip included, the answer is this 415 (see docs/threat-model.md)."""
    for value in request.headers.getall("Content-Encoding", ()):
        if any(token.strip().lower() not in ("", "identity") for token in value.split(",")):
            raise Rejection("unsupported_encoding", "send the body unencoded (Content-Encoding: identity)")


def expect_continue(providers: Mapping[str, ProviderSpec]) -> Callable[[web.Request], Awaitable[None]]:
    """The webhook route's ``Expect: 100-continue`` handler: invite the body only if it may be taken.

    aiohttp's default answers "100 Continue" to everyone, so a client declaring a 10 GiB body
    would be asked to send it just before the 413. A request the pipeline will refuse from its
    headers alone (unknown provider, not POST, declared oversize) gets no 100; the pipeline then
    sends its final answer (RFC 9110 section 10.1.1 allows that), counted and logged as usual.
    """

    async def expect(request: web.Request) -> None:
        if request.version != HttpVersion11 or request.headers.get("Expect", "").lower() != "100-continue":
            return  # an expectation we do not know is ignored rather than answered 417
        provider = providers.get(request.match_info.get("provider", ""))
        declared = request.content_length
        if provider is None or request.method != "POST" or (declared or 0) > provider.max_body_bytes:
            return
        try:
            _refuse_encoded(request)
        except Rejection:
            return
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not part of the response size

    return expect
