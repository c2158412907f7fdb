"""Connection limits over raw sockets on loopback: a deadline for the request head (408 and
close), a cap on open connections (503 and close), a request the HTTP parser refuses (400 JSON
that quotes no header, and close), all counted; normal clients unaffected."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time

from gateway.connections import BAD_REQUEST_MESSAGE

HEAD_TIMEOUT = 0.6


def dropped(gateway, reason: str) -> str:
    prefix = f'webhook_gateway_connections_dropped_total{{reason="{reason}"}} '
    lines = [line for line in gateway.metrics_text().splitlines() if line.startswith(prefix)]
    return lines[0].removeprefix(prefix) if lines else "absent"


def limits(gateway):
    return gateway.client.server.runner.limits


async def read_answer_then_eof(reader: asyncio.StreamReader, within: float) -> tuple[int, dict, bytes]:
    """The whole response up to the server's close (EOF), read within ``within`` seconds."""
    async with asyncio.timeout(within):
        raw = await reader.read()  # until EOF: the server closed the connection
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def request(gateway, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {gateway.url('stripe')} HTTP/1.1", f"Host: {gateway.host}:{gateway.port}"]
    lines += [f"{k}: {v}" for k, v in {**headers, "Content-Length": str(len(body))}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def open_conn(gateway):
    return await asyncio.open_connection(gateway.host, gateway.port)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_slow_headers_get_408_and_the_connection_is_closed(make_gateway, kit):
    gateway = await make_gateway(limits={"header_timeout": HEAD_TIMEOUT})
    reader, writer = await open_conn(gateway)
    started = time.monotonic()
    writer.write(f"POST {gateway.url('stripe')} HTTP/1.1\r\n".encode())

    async def trickle() -> None:  # one header line every 0.2 s, never the blank line
        with contextlib.suppress(OSError):
            for n in range(50):
                writer.write(f"X-Slow-{n}: {n}\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.2)

    sender = asyncio.create_task(trickle())
    try:
        status, headers, body = await read_answer_then_eof(reader, 5.0)
    finally:
        sender.cancel()
        await close(writer)
    elapsed = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "header_timeout"
    assert HEAD_TIMEOUT * 0.9 <= elapsed < HEAD_TIMEOUT + 2, elapsed
    assert dropped(gateway, "header_timeout") == "1.0"
    assert gateway.upstream.events == []
    await gateway.deliver_ok("stripe", kit.stripe_body("evt_after_slowloris"))


async def test_a_silent_connection_is_closed_after_the_head_deadline(make_gateway):
    gateway = await make_gateway(limits={"header_timeout": HEAD_TIMEOUT})
    reader, writer = await open_conn(gateway)
    try:
        status, _, body = await read_answer_then_eof(reader, 5.0)
    finally:
        await close(writer)
    assert status == 408 and json.loads(body)["error"]["code"] == "header_timeout"


async def test_many_slow_clients_are_all_dropped(make_gateway):
    gateway = await make_gateway(limits={"header_timeout": HEAD_TIMEOUT})
    conns = [await open_conn(gateway) for _ in range(200)]
    for _, writer in conns:
        writer.write(b"POST /payments/api/webhooks/stripe/ HTTP/1.1\r\nX-A: 1\r\n")
    try:
        answers = await asyncio.gather(*(read_answer_then_eof(r, 5.0) for r, _ in conns))
    finally:
        for _, writer in conns:
            await close(writer)
    assert {status for status, _, _ in answers} == {408}
    assert dropped(gateway, "header_timeout") == "200.0"
    assert limits(gateway).open == 0


async def test_a_keep_alive_client_idle_longer_than_the_deadline_is_unaffected(make_gateway, kit):
    gateway = await make_gateway(limits={"header_timeout": HEAD_TIMEOUT})
    reader, writer = await open_conn(gateway)
    try:
        for n in range(3):
            body = kit.stripe_body(f"evt_keepalive_{n}")
            # The head in two parts, well within the deadline, and the body slower than the head
            # deadline: the deadline covers only the head.
            wire = request(gateway, body, gateway.sign("stripe", body))
            cut = wire.index(b"\r\n\r\n") + 4
            writer.write(wire[:20])
            await asyncio.sleep(HEAD_TIMEOUT / 4)
            writer.write(wire[20:cut] + body[:10])
            await asyncio.sleep(HEAD_TIMEOUT * 1.5)
            writer.write(body[10:])
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                answer = json.loads(await reader.readexactly(length))
            assert head.startswith(b"HTTP/1.1 200"), head
            assert answer["status"] == "forwarded"
            await asyncio.sleep(HEAD_TIMEOUT * 1.5)  # idle between requests: longer than the head deadline
    finally:
        await close(writer)
    assert len(gateway.upstream.events) == 3
    assert dropped(gateway, "header_timeout") == "0.0"  # the series exists from the start, at 0


async def wait_open(gateway, count: int) -> None:
    deadline = time.monotonic() + 5
    while limits(gateway).open != count:
        assert time.monotonic() < deadline, limits(gateway).open
        await asyncio.sleep(0.01)


async def test_connections_over_the_cap_get_503_and_are_closed(make_gateway, kit):
    gateway = await make_gateway(limits={"max_connections": 3, "header_timeout": 30})
    held = [await open_conn(gateway) for _ in range(3)]
    await wait_open(gateway, 3)
    reader, writer = await open_conn(gateway)
    try:
        status, headers, body = await read_answer_then_eof(reader, 5.0)
    finally:
        await close(writer)
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["error"]["code"] == "too_many_connections"
    assert dropped(gateway, "connection_limit") == "1.0"
    await wait_open(gateway, 3)
    await close(held.pop()[1])  # one slot frees up: the next connection is served
    await wait_open(gateway, 2)
    body = kit.stripe_body("evt_after_cap")
    status, _, answer = await kit.raw_exchange(
        gateway.host, gateway.port, [request(gateway, body, gateway.sign("stripe", body))]
    )
    assert status == 200, answer
    for _, w in held:
        await close(w)


def parser_refusals(gateway, value: bytes) -> dict[str, bytes]:
    """Requests aiohttp's HTTP parser refuses, each carrying ``value`` in its refused line."""
    path = gateway.url("stripe")
    head = f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n".encode()
    return {
        "control byte": head + b"Stripe-Signature: t=1,v1=" + value + b"\x01\r\n\r\n{}",
        "delete byte": head + b"Authorization: Bearer " + value + b"\x7f\r\n\r\n{}",
        "line too long": head + b"Authorization: Bearer " + value + b"A" * 9000 + b"\r\n\r\n{}",
        "bad request line": b"POST " + path.encode() + value + b"\x01 HTTP/1.1\r\nHost: gw\r\n\r\n",
        "no colon": head + value + b"\r\n\r\n{}",
    }


def windows(value: bytes, size: int = 6) -> set[bytes]:
    return {value[i : i + size] for i in range(len(value) - size + 1)}


async def test_parser_refusals_answer_json_quote_no_header_and_close(make_gateway, kit):
    gateway = await make_gateway()
    value = b"sk_live_" + secrets.token_urlsafe(24).encode()
    cases = parser_refusals(gateway, value)
    for name, wire in cases.items():
        reader, writer = await open_conn(gateway)
        try:
            writer.write(wire)
            status, headers, body = await read_answer_then_eof(reader, 5.0)  # EOF: closed
        finally:
            await close(writer)
        assert status == 400 and headers["connection"] == "close", (name, status, body)
        assert headers["content-type"].startswith("application/json"), (name, headers)
        assert json.loads(body) == {
            "success": False,
            "error": {"code": "invalid_request", "message": BAD_REQUEST_MESSAGE},
        }, name
        answer = b"\r\n".join(f"{k}: {v}".encode() for k, v in headers.items()) + body
        assert not [w for w in windows(value) if w in answer], (name, answer)  # not one 6-byte run of it
    assert dropped(gateway, "bad_request") == f"{float(len(cases))}"
    assert gateway.upstream.events == []
    await wait_open(gateway, 0)


async def test_a_keep_alive_client_is_unaffected_by_parser_refusals(make_gateway, kit):
    gateway = await make_gateway()
    assert dropped(gateway, "bad_request") == "0.0"  # the series exists from the start, at 0
    refusals = list(parser_refusals(gateway, b"k3y").values())
    reader, writer = await open_conn(gateway)
    try:
        for n, wire in enumerate(refusals):
            body = kit.stripe_body(f"evt_beside_refusal_{n}")
            writer.write(request(gateway, body, gateway.sign("stripe", body)))  # same connection each time
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                answer = json.loads(await reader.readexactly(length))
            assert head.startswith(b"HTTP/1.1 200") and answer["status"] == "forwarded", head
            status, _, _ = await kit.raw_exchange(gateway.host, gateway.port, [wire])  # another connection
            assert status == 400
    finally:
        await close(writer)
    assert len(gateway.upstream.events) == len(refusals)
    assert dropped(gateway, "bad_request") == f"{float(len(refusals))}"
