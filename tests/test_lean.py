"""The lean server path (``gateway.lean``) answers byte for byte what aiohttp's path answers.

Every script of raw bytes is sent to two gateways built from the same settings, one served by
``LeanRunner`` (production's server) and one by ``GatewayRunner`` (aiohttp's path with the same
connection limits, parser refusals as JSON); the answers
must be equal except for the ``Date`` header. ``handoffs`` tells which path served: the lean
path takes plain webhook requests; everything else goes to aiohttp on the same connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from gateway.app import build_app
from gateway.app_state import SERVICES
from gateway.connections import GatewayRunner
from gateway.lean.runner import LeanRunner, LeanServer
from gateway.server import connection_limits
from gateway.settings.model import Settings

URL = b"/payments/api/webhooks/stripe/"
HALF_CLOSE = b""  # an exchange() part: shut down the writing side (the request is complete)
DATE = re.compile(rb"\r\nDate: [^\r]+\r\n")


class Pair:
    def __init__(self, lean: web.AppRunner, plain: web.AppRunner) -> None:
        self.lean, self.plain = lean, plain

    @property
    def server(self) -> LeanServer:
        assert isinstance(self.lean.server, LeanServer)
        return self.lean.server

    async def both(self, parts: list[bytes | float], answers: int = 1) -> tuple[list[bytes], list[bytes]]:
        got = await asyncio.gather(exchange(self.lean, parts, answers), exchange(self.plain, parts, answers))
        return got[0], got[1]


async def _serve(runner: web.AppRunner) -> web.AppRunner:
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.fixture
async def pair(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., object]]:
    runners: list[web.AppRunner] = []

    async def make(**overrides: object) -> Pair:
        lean_app, plain_app = build_app(make_settings(**overrides)), build_app(make_settings(**overrides))
        lean = await _serve(LeanRunner(lean_app, connection_limits(lean_app[SERVICES]), access_log=None))
        plain = await _serve(GatewayRunner(plain_app, connection_limits(plain_app[SERVICES]), access_log=None))
        runners.extend((lean, plain))
        return Pair(lean, plain)

    yield make
    for r in runners:
        await r.cleanup()


async def exchange(runner: web.AppRunner, parts: list[bytes | float], answers: int) -> list[bytes]:
    """Send ``parts`` (bytes, or seconds to pause; ``HALF_CLOSE`` ends the client's side) on one
    connection; read ``answers`` responses."""
    host, port = runner.addresses[0][:2]
    reader, writer = await asyncio.open_connection(host, port)
    out = []
    try:
        async with asyncio.timeout(5):
            for part in parts:
                if part is HALF_CLOSE:
                    writer.write_eof()
                elif isinstance(part, bytes):
                    writer.write(part)
                    await writer.drain()
                else:
                    await asyncio.sleep(part)
            for _ in range(answers):
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
                body = await reader.readexactly(int(m[1])) if m else b""
                out.append(DATE.sub(b"\r\nDate: -\r\n", head) + body)
    finally:
        writer.close()
    return out


def post(body: bytes = b"{}", *headers: bytes, target: bytes = URL, version: bytes = b"1.1") -> bytes:
    fields = b"".join(h + b"\r\n" for h in (b"Host: x", *headers))
    if not any(h.lower().startswith((b"content-length", b"transfer-encoding")) for h in headers):
        fields += b"Content-Length: %d\r\n" % len(body)
    return b"POST " + target + b" HTTP/" + version + b"\r\n" + fields + b"\r\n" + body


BAD_SIG = b"Stripe-Signature: t=1,v1=00"
LEAN_CASES = {
    "missing signature": [post()],
    "bad signature": [post(b'{"id":"evt_1"}', BAD_SIG)],
    "no trailing slash, a query": [post(b"{}", BAD_SIG, target=URL.rstrip(b"/") + b"?a=b")],
    "head, then the body later": [post(b'{"id":"evt_2"}', BAD_SIG)[:-5], 0.05, b't_2"}'],
    "empty body": [post(b"")],
}
AIOHTTP_CASES = {
    "unknown provider": [post(target=b"/payments/api/webhooks/nope/")],
    "GET on a webhook URL": [b"GET " + URL + b" HTTP/1.1\r\nHost: x\r\n\r\n"],
    "management path": [b"GET /payments/api/webhooks/providers/ HTTP/1.1\r\nHost: x\r\n\r\n"],
    "HTTP/1.0": [post(version=b"1.0")],
    "chunked": [post(b"", b"Transfer-Encoding: chunked") + b"2\r\n{}\r\n0\r\n\r\n"],
    "declared oversize": [post(b"", b"Content-Length: 99999999")],
    "two Content-Length": [post(b"{}", b"Content-Length: 2", b"Content-Length: 2")],
    "control byte in a header": [post(b"{}", b"X-Api-Key: abc\x01")],
    "obs-fold": [post(b"{}", b"X-A: 1", b" folded")],
    "non-ASCII header value": [post(b"{}", b"X-A: caf\xc3\xa9", BAD_SIG)],
    "Connection: close": [post(b"{}", b"Connection: close")],
    "head split across writes": [post()[:20], 0.05, post()[20:]],
    "bad request line": [b"POST /payments/api/webhooks/stripe/ HTTP/1.1 x\r\n\r\n"],
}


@pytest.mark.parametrize("case", sorted(LEAN_CASES))
async def test_the_lean_path_answers_as_aiohttp_does(pair, case):
    p = await pair()
    lean, plain = await p.both(LEAN_CASES[case])
    assert lean == plain
    assert p.server.handoffs == 0


@pytest.mark.parametrize("case", sorted(AIOHTTP_CASES))
async def test_other_requests_go_to_aiohttp_with_the_same_answer(pair, case):
    p = await pair()
    lean, plain = await p.both(AIOHTTP_CASES[case])
    assert lean == plain
    assert p.server.handoffs == 1


async def test_pipelined_requests_are_answered_in_order_then_handed_on(pair):
    p = await pair()
    script = [post(b"1", BAD_SIG) + post(b"22") + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + post(b"333")]
    lean, plain = await p.both(script, answers=4)
    assert lean == plain
    assert [a.split(b" ", 2)[1] for a in lean] == [b"401", b"401", b"200", b"401"]
    assert p.server.handoffs == 1  # at the GET: the last webhook is aiohttp's too


async def test_a_stalled_body_is_a_408_and_the_connection_closes(pair):
    p = await pair(limits={"body_timeout": 0.2})
    lean, plain = await p.both([post(b'{"id":"evt_3"}', BAD_SIG)[:-3]])
    assert lean == plain
    assert b'"body_timeout"' in lean[0]
    assert p.server.handoffs == 0


async def test_a_client_that_never_reads_its_answers_cannot_grow_the_buffer(pair):
    """Pipelined requests from a client that reads no answer: once writing pauses, reading must
    pause too, with the backlog bounded by PAUSE_AT (it grew without bound: 22 MB in 2 s)."""
    from gateway.lean.protocol import PAUSE_AT

    p = await pair()
    host, port = p.lean.addresses[0][:2]
    _reader, writer = await asyncio.open_connection(host, port)
    writer.transport.set_write_buffer_limits(high=1 << 30)  # never stop this side on our account
    burst = post(b"{}") * 20_000  # 2 MB a burst, 20,000 401s each (their answers fill the socket)
    try:
        async with asyncio.timeout(20):
            while not any(conn._paused for conn in p.server.lean_connections):
                writer.write(burst)
                await asyncio.sleep(0.05)
        [conn] = p.server.lean_connections
        await asyncio.sleep(0.2)  # more bytes sent meanwhile stay in the kernel's buffers
        assert len(conn._buf) <= PAUSE_AT + 2 * 1024 * 1024
    finally:
        writer.close()


async def test_a_chunked_body_that_stalls_is_answered_and_its_connection_closed(pair):
    """aiohttp's path: the body's later bytes (a malformed chunk) never reach the body stage,
    which answers 408 at its deadline. aiohttp then reads on, for the client to see the answer
    rather than a reset, before it closes: for `LINGER` (2 s), not its default 10 s."""
    p = await pair(limits={"body_timeout": 0.2})
    host, port = p.plain.addresses[0][:2]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(post(b"", b"Transfer-Encoding: chunked") + b"2\r\n{}\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"zz\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read(65536)
            assert answer.startswith(b"HTTP/1.1 408 ") and b'"body_timeout"' in answer
            while chunk := await reader.read(65536):  # then the server closes: EOF, not a hang
                answer += chunk
    finally:
        writer.close()


async def test_a_request_then_a_half_close_still_gets_its_answer(pair):
    # The answer is made in one loop turn and written at the end of it (``coalesce.py``); the EOF
    # read meanwhile closes the transport, so the held answer must go out first. (aiohttp's own
    # path drops the answer here: the lean path does better, so this is not a byte-for-byte case.)
    p = await pair()
    answers = await exchange(p.lean, [post(b'{"id":"evt_4"}', BAD_SIG), HALF_CLOSE], 1)
    assert answers[0].startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert answers[0].endswith(b'"Stripe-Signature has no valid v1 signature"}}')


async def test_a_signed_webhook_is_forwarded_on_the_lean_path(gateway, kit):
    body = kit.stripe_body("evt_lean_1")
    data = await gateway.deliver_ok("stripe", body)
    assert data["event_id"] == "evt_lean_1"
    server = gateway.client.server.runner.server
    assert isinstance(server, LeanServer)
    assert server.handoffs == 0


async def test_shutdown_waits_for_a_webhook_being_answered(make_gateway, kit):
    gw = await make_gateway()
    gw.upstream.then(("slow", 0.3))
    body = kit.stripe_body("evt_lean_drain")
    sent = asyncio.ensure_future(gw.post("stripe", body))
    server = gw.client.server.runner.server
    while not any(conn.busy for conn in server.lean_connections):
        await asyncio.sleep(0.01)
    await gw.client.server.runner.cleanup()
    resp = await sent
    assert resp.status == 200, await resp.text()
    assert gw.upstream.ids() == ["evt_lean_drain"]
