"""Runs the stages in order for one request; owns timing, metrics, logs and error responses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway import jsonutil
from gateway.app_state import Services
from gateway.errors import Rejection
from gateway.observe import Observed
from gateway.outcomes import ACCEPTED, EventStatus, Outcome
from gateway.pipeline.context import RequestContext, WebhookRequest
from gateway.pipeline.record import record_from
from gateway.pipeline.stage import Stage
from gateway.responses import error_document, error_response, json_response
from gateway.tracing import current_traceparent, new_traceparent

log = logging.getLogger("gateway.webhook")
# Members bound once: reading ``Outcome.X`` costs an enum lookup each time on Python 3.11.
_FORWARDED, _QUEUED, _DUPLICATE = Outcome.FORWARDED, Outcome.QUEUED, Outcome.DUPLICATE
_DELIVERED = EventStatus.DELIVERED


@dataclass(slots=True)
class Answer:
    """What the pipeline decided for one request, and what :meth:`Pipeline.finish` records."""

    ctx: RequestContext
    error: Rejection | None
    accepted: bool

    def json(self) -> tuple[int, bytes, Mapping[str, str] | None] | None:
        """Status, JSON body and extra headers; None for a reply that is not JSON (a handshake's)."""
        if self.error is not None:
            rej = self.error
            return rej.status, jsonutil.dumps(error_document(rej)), rej.headers or None
        reply = self.ctx.reply
        assert reply is not None
        if reply.raw is not None:
            return None
        return reply.status, jsonutil.dumps(reply.body), reply.headers

    def response(self) -> web.Response:
        if self.error is not None:
            return error_response(self.error)
        reply = self.ctx.reply
        assert reply is not None
        if reply.raw is not None:
            body = reply.raw or None  # a 204 has no body at all
            return web.Response(body=body, status=reply.status, headers=reply.headers, content_type=reply.content_type)
        return json_response(reply.status, reply.body, reply.headers)


class Pipeline:
    """The webhook handler: ``await pipeline.handle(request)``."""

    def __init__(self, services: Services, stages: Sequence[Stage]) -> None:
        self.services = services
        self.stages = tuple(stages)
        self.metrics = services.metrics
        self.feed = services.feed

    async def handle(self, request: WebhookRequest) -> web.Response:
        """aiohttp's route handler: the answer, recorded before it is returned."""
        answer = await self.answer(request)
        self.finish(answer)
        return answer.response()

    async def answer(self, request: WebhookRequest) -> Answer:
        """Run the stages and settle the dedup claims; metrics, stats, the audit record and the log
        line wait for :meth:`finish`, which the lean server path calls once the answer is sent."""
        ctx = RequestContext(request=request, started=time.perf_counter())
        error: Rejection | None = None
        cancelled = False
        self.metrics.in_flight_now += 1
        try:
            if self.services.tracer is not None:
                await self._run_traced(ctx)
            else:
                ctx.traceparent = new_traceparent()
                await self._run(ctx)
            if ctx.reply is None:
                raise RuntimeError("the pipeline ended without an answer")
        except Rejection as rej:
            error = _detached(rej)
        except asyncio.CancelledError:
            error = Rejection("shutting_down", "the gateway stopped before the event was delivered")
            cancelled = True
            raise
        except Exception:
            log.exception("pipeline failure", extra={"provider": ctx.provider_name})
            error = Rejection("internal_error", "the gateway failed to process this webhook")
        finally:
            outcome = ctx.reply.outcome if error is None and ctx.reply is not None else ""
            accepted = outcome in ACCEPTED
            # A claim is committed when the event is known to be accepted: newly, or found already
            # stored downstream (queue mode's "duplicate"); released otherwise, so a retry can pass.
            for cleanup in reversed(ctx.cleanups):
                # Not shielded: a task per request costs more than it saves. A cancelled handler
                # still runs this once; a second cancel could only cut a release short, and the
                # lease then expires by itself.
                await cleanup(ctx, accepted or outcome == _DUPLICATE)
            self.metrics.in_flight_now -= 1
            if cancelled:  # no answer will be sent: record now
                self._record(ctx, error, accepted)
        return Answer(ctx, error, accepted)

    def finish(self, answer: Answer) -> None:
        """Count, log and audit an answered webhook (after it is sent, on the lean path)."""
        self._record(answer.ctx, answer.error, answer.accepted)
        if self.metrics.shared:
            self.metrics.flush_soon()

    async def _run(self, ctx: RequestContext) -> None:
        for stage in self.stages:
            await stage(ctx)
            if ctx.reply is not None:
                return

    async def _run_traced(self, ctx: RequestContext) -> None:
        from opentelemetry.trace import SpanKind

        tracer = self.services.tracer
        with tracer.start_as_current_span("webhook", kind=SpanKind.SERVER) as span:
            ctx.traceparent = current_traceparent()
            try:
                for stage in self.stages:
                    with tracer.start_as_current_span(f"stage.{stage.name}"):
                        await stage(ctx)
                    if ctx.reply is not None:
                        return
            finally:
                span.set_attribute("webhook.provider", ctx.provider_name)
                span.set_attribute("webhook.event_id", ctx.event_id)

    def _audit(self, ctx: RequestContext, outcome: str) -> None:
        """The event store's copy: the delivered event (sync mode; queue mode stored it already),
        or one more in the folded count of rejections and duplicates."""
        if outcome == _FORWARDED:
            patterns = self.services.settings.events.redact_headers
            record = record_from(ctx, _DELIVERED, redact_envelope=True, redact_headers=patterns)
            self.services.events.submit(record)
        elif outcome != _QUEUED:
            self.services.events.record_rejection(ctx.provider_name, ctx.client_ip or ctx.request.remote or "", outcome)

    def _record(self, ctx: RequestContext, error: Rejection | None, accepted: bool) -> None:
        seconds = time.perf_counter() - ctx.started
        provider = ctx.provider_name
        outcome = error.code if error else ctx.reply.outcome if ctx.reply else "internal_error"
        self.metrics.child(self.metrics.requests, provider, outcome).inc()
        self.metrics.child(self.metrics.request_seconds, provider).observe(seconds)
        self.services.stats.record(provider, outcome, seconds)
        self._audit(ctx, outcome)
        if accepted:
            now = time.time()
            self.services.last_event[provider] = now
            self.metrics.child(self.metrics.last_event, provider).set(now)
        if self.feed.subscribers:  # someone watches (webhook-gateway dev, a live tail): else no cost
            self.feed.publish(_observed(ctx, error, outcome, seconds))
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "webhook",
            extra={
                "provider": provider,
                "outcome": outcome,
                "status": error.status if error else ctx.reply.status if ctx.reply else 500,
                "event_id": ctx.event_id or None,
                "event_type": ctx.event_type or None,
                "client_ip": ctx.client_ip or ctx.request.remote,
                "latency_ms": round(seconds * 1000, 3),
                "trace_id": ctx.traceparent[3:35] or None,
                "reason": error.message if error else None,
            },
        )


def _detached(rej: Rejection) -> Rejection:
    """The rejection without its traceback and chained exceptions, which hold the frames of the
    stages it passed through and so the request context: kept, they form a cycle (this frame ->
    rejection -> traceback -> this frame) that only the cyclic collector frees, holding every
    rejected body (up to 1 MiB each) until a full collection (issue 13)."""
    rej.__traceback__ = rej.__context__ = rej.__cause__ = None
    return rej


def _observed(ctx: RequestContext, error: Rejection | None, outcome: str, seconds: float) -> Observed:
    signed = ctx.provider is None or ctx.provider.signature is not None
    return Observed(
        at=time.time(),
        provider=ctx.provider_name,
        event_type=ctx.event_type,
        event_id=ctx.event_id,
        outcome=outcome,
        status=error.status if error else ctx.reply.status if ctx.reply else 500,
        latency_ms=round(seconds * 1000, 3),
        verified=ctx.secret_index >= 0 if signed else None,
        upstream_status=ctx.upstream_status or None,
        reason=error.message if error else "",
        event=ctx.event if outcome in ACCEPTED else b"",
    )


PIPELINE = web.AppKey("pipeline", Pipeline)
