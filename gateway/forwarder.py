"""Delivery to the upstream over a keep-alive connection pool with explicit timeouts.

Outcomes map to what makes the provider retry: the upstream's 2xx is success; its 429/503 and
connection failures are 503, a timeout 504, any other answer (or a garbled one) 502. Only
connection-level failures where no answer came back are retried here, a bounded number of times
(a pooled keep-alive connection the upstream closed while idle is the usual case).
"""

from __future__ import annotations

import asyncio
import time

from gateway.errors import ProtocolError, Rejection
from gateway.events.attempts import Tries
from gateway.metrics import Metrics
from gateway.protocols.http1 import Http1Pool
from gateway.settings.model import UpstreamSettings

CONTENT_TYPE = "application/cloudevents+json"


class Forwarder:
    def __init__(self, settings: UpstreamSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pool: Http1Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # once: get_running_loop() is a syscall on 3.11
        self._headers = {"Content-Type": CONTENT_TYPE, **(settings.headers or {})}
        self.last_success: float | None = None
        self.last_failure: float | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.pool = Http1Pool(
            self.settings.url, limit=256, connect_timeout=self.settings.connect_timeout, headers=self._headers
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def send(self, provider: str, event: bytes, traceparent: str, tries: Tries | None = None) -> int:
        """POST ``event``; returns the upstream status on 2xx, else raises a ``Rejection``.
        ``tries``, when given, gets one :class:`~gateway.events.attempts.Attempt` per POST."""
        headers = {"traceparent": traceparent} if traceparent else None
        started = time.perf_counter()
        result = "error"
        tries = tries if tries is not None else Tries()
        try:
            deadline = (self._loop or asyncio.get_running_loop()).time() + self.settings.timeout
            status, retry_after = await self._post(event, headers, tries, deadline)
            result = "success" if 200 <= status < 300 else f"http_{status // 100}xx"
        except TimeoutError:
            result = "timeout"
            tries.timeout(f"upstream_timeout: no answer within {self.settings.timeout:g} s")
            raise Rejection("upstream_timeout", "the upstream did not answer in time") from None
        except ProtocolError as exc:
            result = "invalid_response"
            raise Rejection("upstream_error", f"the upstream's answer is not valid HTTP ({exc})") from None
        except OSError as exc:
            result = "unreachable"
            raise Rejection("upstream_unavailable", f"the upstream is unreachable ({type(exc).__name__})") from None
        finally:
            tries.failed("error", "the delivery was interrupted")  # a try still open: cancelled, or a bug
            self.metrics.child(self.metrics.forward_seconds, provider, result).observe(time.perf_counter() - started)
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

    async def _post(
        self, event: bytes, headers: dict[str, str] | None, tries: Tries, deadline: float
    ) -> tuple[int, str]:
        assert self.pool is not None, "Forwarder.start() was not awaited"
        attempt = 0
        while True:
            tries.begin()
            try:
                response = await self.pool.post(event, headers, deadline)
            except ProtocolError as exc:
                tries.failed("invalid_response", f"upstream_error: not valid HTTP ({exc})")
                raise  # it answered, badly: sending again would not help
            except TimeoutError:
                raise  # the time is up (an OSError too: not retried); send() records the try
            except OSError as exc:
                tries.failed("unreachable", f"upstream_unavailable: {type(exc).__name__}")
                if attempt >= self.settings.retries:
                    raise
                attempt += 1
                continue
            tries.answered(response.status, response.body)
            return response.status, response.headers.get("retry-after", "")
