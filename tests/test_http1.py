"""The upstream HTTP/1.1 pool against a raw loopback server that answers exactly what we script."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ProtocolError
from gateway.protocols.http1 import Http1Pool


async def scripted_server(replies: list[bytes]) -> tuple[asyncio.Server, list[int]]:
    """Answers each request it reads with the next scripted bytes; counts connections."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                await reader.readexactly(length)
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
