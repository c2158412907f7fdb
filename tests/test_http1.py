"""The upstream HTTP/1.1 pool against a raw loopback server that answers exactly what we script."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ProtocolError
from gateway.protocols.http1 import Http1Pool


async def read_request(reader: asyncio.StreamReader) -> None:
    """Read one request the pool sent: its head, then the Content-Length bytes of its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    fields = (line.partition(b":") for line in head.split(b"\r\n"))
    await reader.readexactly(int(next(v for k, _, v in fields if k.lower() == b"content-length")))


async def scripted_server(replies: list[bytes]) -> tuple[asyncio.Server, list[int]]:
    """Answers each request it reads with the next scripted bytes; counts connections."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while replies:
                await read_request(reader)
                writer.write(replies.pop(0))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, connections


async def test_a_chunked_reply_with_bytes_after_it_is_not_reused():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    server, connections = await scripted_server([chunked + b"HTTP/1.1 204 No", b"HTTP/1.1 204 No Content\r\n\r\n"])
    port = server.sockets[0].getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}/events")
    try:
        first = await pool.post(b"{}")
        assert (first.status, first.body) == (200, b"ok")
        second = await pool.post(b"{}")  # on a new connection: the old one was out of step
        assert second.status == 204
        assert len(connections) == 2
    finally:
        await pool.close()
        server.close()


async def test_chunk_data_must_end_with_crlf():
    server, _ = await scripted_server([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n"])
    port = server.sockets[0].getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}/events")
    try:
        with pytest.raises(ProtocolError):
            await pool.post(b"{}")
    finally:
        await pool.close()
        server.close()


async def test_keep_alive_reuses_one_connection():
    server, connections = await scripted_server([b"HTTP/1.1 204 No Content\r\n\r\n"] * 3)
    port = server.sockets[0].getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}/events")
    try:
        for _ in range(3):
            assert (await pool.post(b"{}")).status == 204
        assert len(connections) == 1
    finally:
        await pool.close()
        server.close()


async def gated_server(gate: asyncio.Event) -> tuple[asyncio.Server, list[int]]:
    """Answers 204 to every request once ``gate`` is set; ``open_now[0]`` counts requests being held."""
    held = [0, 0]  # now, most at once

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                held[0] += 1
                held[1] = max(held)
                await gate.wait()
                held[0] -= 1
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), held


async def test_the_pool_holds_at_most_limit_requests_and_a_cancelled_waiter_frees_nothing_twice():
    gate = asyncio.Event()
    server, held = await gated_server(gate)
    port = server.sockets[0].getsockname()[1]
    pool = Http1Pool(f"http://127.0.0.1:{port}/events", limit=2)
    try:
        posts = [asyncio.create_task(pool.post(b"{}")) for _ in range(5)]
        async with asyncio.timeout(5):
            while held[0] < 2:
                await asyncio.sleep(0.001)
        assert held[1] == 2  # three wait for a slot
        posts[3].cancel()  # a waiter gives up: its place is not a slot
        await asyncio.gather(posts[3], return_exceptions=True)
        assert held[1] == 2 and pool._busy == 2
        gate.set()
        done = await asyncio.gather(*posts, return_exceptions=True)
        assert [getattr(r, "status", "cancelled") for r in done] == [204, 204, 204, "cancelled", 204]
        assert held[1] == 2 and pool._busy == 0
        assert (await pool.post(b"{}")).status == 204  # every slot came back
    finally:
        await pool.close()
        server.close()
