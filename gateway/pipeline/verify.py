"""Stage 5: signature and timestamp, through the one generic verifier.

The URL a provider signed (Twilio, Square) is the public one: ``public_url`` plus the request's
path and query, or, for a provider with ``url_from_forwarded_headers``, the scheme and host a
trusted proxy reports in X-Forwarded-Proto and X-Forwarded-Host (never when the peer is not a
trusted proxy: anyone can send those headers).

Shadow mode (``shadow: true``): a failed check is counted and logged, and the request goes on,
unverified (``ctx.secret_index`` stays -1: the envelope says ``verified: false``, and no
handshake is answered for it).
"""

from __future__ import annotations

import logging
import re
import time

from gateway.addresses import Network, in_networks, parse_ip
from gateway.errors import Rejection
from gateway.metrics import Metrics
from gateway.pipeline.context import RequestContext
from gateway.providers.certificates import CertificateCache
from gateway.providers.request import getall, single_header
from gateway.providers.schemes import scheme_of
from gateway.providers.spec import ProviderSpec, PublicKey
from gateway.providers.verifier import verify

log = logging.getLogger("gateway.webhook")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


class Verify:
    name = "verify"

    def __init__(
        self,
        public_url: str,
        metrics: Metrics,
        trusted_proxies: tuple[Network, ...] = (),
        certificates: CertificateCache | None = None,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.metrics = metrics
        self.trusted_proxies = trusted_proxies
        self.certificates = certificates or CertificateCache()

    async def __call__(self, ctx: RequestContext) -> None:
        provider = ctx.provider
        assert provider is not None
        now = time.time()
        try:
            keys = await self._fetched_keys(ctx, provider) if _fetches_key(provider) else None
            url = self.url(ctx) if _signs_url(provider) else ""  # only Twilio-, Square-like schemes
            result = verify(provider, ctx.request.headers, ctx.body, url, now, keys)
        except Rejection as rej:
            if not provider.shadow:
                raise
            self.metrics.child(self.metrics.shadow_rejections, provider.name, rej.code).inc()
            log.warning(
                "shadow mode: verification failed, forwarding anyway",
                extra={"provider": provider.name, "code": rej.code, "reason": rej.message},
            )
            return
        ctx.secret_index = result.secret_index
        ctx.timestamp = result.timestamp
        ctx.signed_body = result.signed_body
        ctx.signed_payloads = result.signed_payloads
        if result.document is not None:
            ctx.document = result.document  # parsed for its timestamp: not parsed again
        if result.secret_index >= 0:
            self.metrics.child(self.metrics.secret_matches, provider.name, str(result.secret_index)).inc()
        if result.timestamp is not None:
            self.metrics.child(self.metrics.skew, provider.name).observe(abs(now - result.timestamp))

    async def _fetched_keys(self, ctx: RequestContext, provider: ProviderSpec) -> tuple[PublicKey, ...]:
        """PayPal: the certificate the request names (only when :func:`_fetches_key`)."""
        spec = provider.signature
        assert spec is not None
        single_header(ctx.request.headers, spec.header)  # no signature: nothing worth a fetch
        url = single_header(ctx.request.headers, spec.certificate_header)
        return (await self.certificates.key(url, spec.certificate_hosts, spec.public_algorithm),)

    def url(self, ctx: RequestContext) -> str:
        path = ctx.request.rel_url.raw_path_qs
        assert ctx.provider is not None
        if ctx.provider.url_from_forwarded_headers and self._from_trusted_proxy(ctx):
            headers = ctx.request.headers
            proto = _last(getall(headers, "X-Forwarded-Proto")).lower()
            host = _last(getall(headers, "X-Forwarded-Host"))
            base_scheme, _, rest = self.public_url.partition("://")
            base_host, slash, prefix = rest.partition("/")
            scheme = proto if proto in ("http", "https") else base_scheme
            netloc = host if host and _HOST_RE.match(host) else base_host
            return f"{scheme}://{netloc}{slash}{prefix}{path}"
        return f"{self.public_url}{path}"

    def _from_trusted_proxy(self, ctx: RequestContext) -> bool:
        addr = parse_ip(ctx.request.remote or "")
        return addr is not None and in_networks(addr, self.trusted_proxies)


def _fetches_key(provider: ProviderSpec) -> bool:
    """The key comes from a certificate the request names (PayPal), unless one is configured
    (offline). Checked before the call: most providers never await a fetch."""
    sig = provider.signature
    return sig is not None and bool(sig.certificate_header) and not sig.public_keys


def _signs_url(provider: ProviderSpec) -> bool:
    sig = provider.signature
    if sig is None:
        return False
    return scheme_of(sig).signs_url or sig.payload.signs_url


def _last(values: list[str]) -> str:
    """The hop our trusted proxy wrote: the last of a comma-separated list (as X-Forwarded-For)."""
    return values[-1].split(",")[-1].strip() if values else ""
