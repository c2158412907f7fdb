"""Delivery to the upstream over one keep-alive ``ClientSession`` with explicit timeouts.

Outcomes map to what makes the provider retry: the upstream's 2xx is success; its 429/503 and
connection failures are 503, a timeout 504, any other answer 502. Only connection-level
failures are retried here (bounded): a request the upstream answered is never sent twice.
"""

from __future__ import annotations

import time

import aiohttp

from gateway.errors import Rejection
from gateway.metrics import Metrics
from gateway.settings.model import UpstreamSettings

CONTENT_TYPE = "application/cloudevents+json"
# Connection-level failures with no answer: refused, reset (ECONNRESET is a ClientOSError, the
# usual fate of a pooled keep-alive connection the upstream closed), or closed before a status.
_RETRYABLE = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)


class Forwarder:
    def __init__(self, settings: UpstreamSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.session: aiohttp.ClientSession | None = None
        self._headers = {"Content-Type": CONTENT_TYPE, **(settings.headers or {})}
        self.last_success: float | None = None
        self.last_failure: float | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=self.settings.timeout, sock_connect=self.settings.connect_timeout
        )
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(
            timeout=timeout, connector=connector, skip_auto_headers=("User-Agent",), raise_for_status=False
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, provider: str, event: bytes, traceparent: str) -> int:
        """POST ``event``; returns the upstream status on 2xx, else raises a ``Rejection``."""
        assert self.session is not None, "Forwarder.start() was not awaited"
        headers = {**self._headers, "traceparent": traceparent} if traceparent else self._headers
        started = time.perf_counter()
        result = "error"
        try:
            status, retry_after = await self._post(event, headers)
            result = "success" if 200 <= status < 300 else f"http_{status // 100}xx"
        except TimeoutError:
            result = "timeout"
            raise Rejection("upstream_timeout", "the upstream did not answer in time") from None
        except aiohttp.ClientError as exc:
            result = "unreachable"
            raise Rejection("upstream_unavailable", f"the upstream is unreachable ({type(exc).__name__})") from None
        finally:
            self.metrics.forward_seconds.labels(provider, result).observe(time.perf_counter() - started)
            if result == "success":
                self.last_success = time.time()
            else:
                self.last_failure = time.time()
        if 200 <= status < 300:
            return status
        if status in (429, 503):
            hint = {"Retry-After": retry_after} if retry_after else None
            raise Rejection("upstream_unavailable", f"the upstream is busy (HTTP {status})", hint)
        raise Rejection("upstream_error", f"the upstream answered HTTP {status}")

    async def _post(self, event: bytes, headers: dict[str, str]) -> tuple[int, str]:
        assert self.session is not None
        attempt = 0
        while True:
            try:
                async with self.session.post(self.settings.url, data=event, headers=headers) as resp:
                    try:
                        await resp.read()
                    except aiohttp.ClientPayloadError:
                        resp.close()  # the status is the answer; a cut-off body changes nothing
                    return resp.status, resp.headers.get("Retry-After", "")
            except _RETRYABLE:
                if attempt >= self.settings.retries:
                    raise
                attempt += 1
