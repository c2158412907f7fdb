"""Signing certificates named by the request (PayPal's ``PAYPAL-CERT-URL``), fetched safely.

SECURITY: the URL comes from the request, so anyone can name any URL. It is fetched only over
https, only from a host the provider's ``certificate_hosts`` lists (exact match: no suffix, no
port, no userinfo), never following redirects, with a size and time limit; anything else is
refused before a connection is made. A certificate is cached by URL (PayPal names a new URL when
it rotates its key), and one fetch serves all the requests that wait for the same URL.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from gateway.errors import Rejection
from gateway.providers.keys import check_key
from gateway.providers.spec import PublicKey

Fetch = Callable[[str], Awaitable[bytes]]
MAX_BYTES = 64 * 1024
TIMEOUT = 5.0
MAX_CACHED = 64
FAILURE_TTL = 60.0  # a URL that failed is not asked for again this soon (no fetch per forged request)


def allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """https, an allowed host exactly, the default port, no credentials in the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname in hosts
        and parts.netloc == parts.hostname  # no port, no userinfo, no upper case or trailing dot
        and port is None
        and not any(c.isspace() or ord(c) < 0x21 for c in url)
    )


async def fetch_https(url: str) -> bytes:
    """GET ``url`` with certificate verification, no redirects, bounded in size and time."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, allow_redirects=False) as resp:
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")
        data = await _read_capped(resp.content)
    if len(data) > MAX_BYTES:
        raise OSError("the certificate is too large")
    return data


async def _read_capped(stream: Any) -> bytes:
    """The body up to ``MAX_BYTES + 1`` bytes. ``read(n)`` returns what one chunk holds, not ``n``
    bytes: one call let a large body through, truncated to its first chunk (found by
    tests/providers/test_paypal_certificate_fetch.py)."""
    data = b""
    while len(data) <= MAX_BYTES:
        chunk = await stream.read(MAX_BYTES + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return data


class CertificateCache:
    """Public keys of certificates fetched by URL; ``fetch`` is injectable for tests."""

    def __init__(self, fetch: Fetch = fetch_https, max_entries: int = MAX_CACHED) -> None:
        self.fetch = fetch
        self.max_entries = max_entries
        self._keys: OrderedDict[str, tuple[PublicKey, datetime]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[PublicKey]] = {}
        self._failed: OrderedDict[str, tuple[float, Rejection]] = OrderedDict()
        self.fetches = 0

    async def key(self, url: str, hosts: tuple[str, ...], algorithm: str) -> PublicKey:
        """The certificate's key, or a 401 ``Rejection`` (a disallowed URL is never requested)."""
        if not allowed(url, hosts):
            raise Rejection("invalid_signature", "the certificate URL is not an allowed https host")
        cached = self._keys.get(url)
        if cached is not None and cached[0].algorithm == algorithm:
            if cached[1] < datetime.fromtimestamp(time.time(), UTC):
                raise Rejection("invalid_signature", "the signing certificate has expired")
            self._keys.move_to_end(url)
            return cached[0]
        failed = self._failed.get(url)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_TTL:
            raise Rejection("invalid_signature", failed[1].message)
        task = self._pending.get(url)
        if task is None:
            task = asyncio.ensure_future(self._load(url, algorithm))
            self._pending[url] = task
            task.add_done_callback(lambda _: self._pending.pop(url, None))
        return await asyncio.shield(task)

    async def _load(self, url: str, algorithm: str) -> PublicKey:
        try:
            return await self._fetch_key(url, algorithm)
        except Rejection as rej:
            self._failed[url] = (time.monotonic(), rej)
            while len(self._failed) > self.max_entries:
                self._failed.popitem(last=False)
            raise

    async def _fetch_key(self, url: str, algorithm: str) -> PublicKey:
        self.fetches += 1
        try:
            pem = await self.fetch(url)
            cert = x509.load_pem_x509_certificate(pem)
            key = check_key(cert.public_key(), algorithm)
        except (TimeoutError, OSError, ValueError) as exc:
            raise Rejection("invalid_signature", f"the signing certificate could not be used: {exc}"[:200]) from None
        except Exception as exc:  # aiohttp.ClientError and the like: the certificate is unavailable
            message = f"the signing certificate could not be fetched: {type(exc).__name__}"
            raise Rejection("invalid_signature", message) from None
        now = datetime.fromtimestamp(time.time(), UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Rejection("invalid_signature", "the signing certificate is expired or not yet valid")
        public = PublicKey(algorithm, key, url)
        self._keys[url] = (public, cert.not_valid_after_utc)
        while len(self._keys) > self.max_entries:
            self._keys.popitem(last=False)
        return public
