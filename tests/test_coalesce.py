"""Writes held to the end of the loop turn (``gateway.protocols.coalesce``), over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.protocols.coalesce import coalescer


class Peer:
    """A loopback server that keeps what each accepted connection receives, until EOF."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []
        self.closed: list[asyncio.Event] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got, eof = bytearray(), asyncio.Event()
        self.received.append(got)
        self.closed.append(eof)
        while chunk := await reader.read(65536):
            got += chunk
        eof.set()
        writer.close()

    async def connect(self) -> asyncio.Transport:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        accepted = len(self.received)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        while len(self.received) == accepted:  # until the server's side of it is reading
            await asyncio.sleep(0.001)
        return transport


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    p.server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
    yield p
    p.server.close()
    await p.server.wait_closed()


async def test_writes_of_one_turn_leave_together_at_its_end_in_order(peer):
    first, second = await peer.connect(), await peer.connect()
    writes = coalescer(asyncio.get_running_loop())
    writes.write(first, b"a1 ")
    writes.write(second, b"b1 ")
    writes.write(first, b"a2")
    assert first.get_write_buffer_size() == 0 and second.get_write_buffer_size() == 0  # nothing handed over yet
    writes.write(second, b"b2", close=True)
    await asyncio.wait_for(peer.closed[1].wait(), 5)  # written, then closed: the peer reads it all, then EOF
    assert bytes(peer.received[1]) == b"b1 b2"
    assert second.is_closing()
    first.close()
    await asyncio.wait_for(peer.closed[0].wait(), 5)
    assert bytes(peer.received[0]) == b"a1 a2"


async def test_flush_writes_at_once_and_a_transport_closed_meanwhile_gets_nothing(peer):
    kept, dropped = await peer.connect(), await peer.connect()
    writes = coalescer(asyncio.get_running_loop())
    writes.write(dropped, b"never")
    writes.write(kept, b"now")
    dropped.close()
    writes.flush()  # no error for the closed one; the other is written before this turn ends
    await asyncio.wait_for(peer.closed[1].wait(), 5)
    assert bytes(peer.received[1]) == b""
    kept.close()
    await asyncio.wait_for(peer.closed[0].wait(), 5)
    assert bytes(peer.received[0]) == b"now"


async def test_one_coalescer_per_loop():
    loop = asyncio.get_running_loop()
    assert coalescer(loop) is coalescer(loop)
    other = asyncio.new_event_loop()
    try:
        assert coalescer(other) is not coalescer(loop)
    finally:
        other.close()


async def test_a_write_that_fails_closes_its_transport_and_spares_the_others(peer, caplog):
    broken, kept = await peer.connect(), await peer.connect()
    writes = coalescer(asyncio.get_running_loop())
    writes.write(broken, "not bytes")  # type: ignore[arg-type]  # the transport refuses it
    writes.write(kept, b"still sent")
    writes.flush()
    assert broken.is_closing()
    assert "a held write failed" in caplog.text
    await asyncio.wait_for(peer.closed[0].wait(), 5)
    kept.close()
    await asyncio.wait_for(peer.closed[1].wait(), 5)
    assert bytes(peer.received[1]) == b"still sent"
