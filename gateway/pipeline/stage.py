"""The Stage protocol and ``default_stages``: the pipeline is one explicit ordered list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.app_state import Services
    from gateway.pipeline.context import RequestContext


class Stage(Protocol):
    """One step of the webhook pipeline.

    A stage is one async call. It continues by returning, rejects by raising
    :class:`gateway.errors.Rejection`, or ends the chain early with a success by setting
    ``ctx.reply``. It may register ``ctx.cleanups`` to run after the answer is known. The runner,
    not the stage, owns timing, metrics, logging and the mapping of errors to responses.
    """

    name: str

    async def __call__(self, ctx: RequestContext) -> None: ...


def default_stages(services: Services) -> list[Stage]:
    """The pipeline, in order. Cheap checks run before expensive ones, and trust is earned first:

    1. ``route``: an unknown provider costs a dict lookup and gets 404.
    2. ``body``: a declared oversize body is refused from its header before a byte is read; the
       read itself is bounded in size and time, so slow or truncated uploads cannot pin a worker.
    3. ``client_ip`` and ``allowlist``: the client's address (trusting only configured proxies)
       decides before any crypto whether the source may talk to this provider at all.
    4. ``source_rate``: a per-source budget shields the verifier from floods of unsigned junk.
    5. ``verify``: signature and timestamp over the raw bytes; nothing below runs for a forgery.
       ``handshake`` right after: a provider checking the endpoint (Slack's url_verification,
       Zoom's url_validation, Twitch's callback verification, Discord's PING) is answered here,
       only once its request verified, and is never rate-limited, deduplicated or forwarded.
    6. ``identify`` reads the event id and type (a JSON provider's invalid JSON is a 400 here),
       then ``provider_rate``: only verified traffic spends the upstream's budget.
    7. ``dedup``: after verification, so an unsigned request cannot burn an event id; it claims
       the id and commits it only after the event is accepted downstream. With a remote store
       (Redis) ``admit`` replaces ``provider_rate`` + ``dedup``: the same two checks in the same
       order, in one Lua call (one round trip instead of two).
    8. ``normalize``: the CloudEvents envelope, built once for a verified, unique event.
    9. ``forward`` (sync mode): the provider hears 2xx only once the upstream accepted the event;
       ``enqueue`` (queue mode): 202 only once the event is committed to the PostgreSQL outbox.
    """
    from gateway.pipeline import (
        admit,
        allowlist,
        body,
        client_ip,
        dedup,
        handshake,
        identify,
        normalize,
        ratelimit,
        route,
        verify,
    )

    settings, store, metrics = services.settings, services.store, services.metrics
    rate_policy, dedup_policy = settings.state.rate_limit_on_error, settings.state.dedup_on_error
    return [
        route.Route(settings.providers),
        body.Body(settings.body_timeout),
        client_ip.ClientIP(settings.trusted_proxies),
        allowlist.Allowlist(),
        ratelimit.SourceRate(store, settings.per_source_limit, metrics, rate_policy),
        verify.Verify(settings.public_url, metrics, settings.trusted_proxies),
        handshake.Handshake(),
        identify.Identify(),
        *(
            [admit.Admit(store, settings.dedup, metrics, dedup_policy, rate_policy)]
            if store.remote
            else [
                ratelimit.ProviderRate(store, metrics, rate_policy),
                dedup.Dedup(store, settings.dedup, metrics, dedup_policy),
            ]
        ),
        normalize.Normalize(),
        _delivery_stage(services),
    ]


def _delivery_stage(services: Services) -> Stage:
    """Stage 9: ``sync`` forwards and waits for the upstream; ``queue`` commits to the outbox."""
    if services.delivery is not None:
        from gateway.pipeline.enqueue import Enqueue

        return Enqueue(services.events, services.delivery, services.settings.events.redact_headers)
    from gateway.pipeline.forward import Forward

    return Forward(services.forwarder)
