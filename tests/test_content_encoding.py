"""Content-Encoding: the gateway takes webhook bodies as the provider sent them, unencoded.

Signatures are computed over the bytes the provider sent; no provider in the catalog compresses
its webhooks, and decompressing would let a small request cost a large amount of memory (a
decompression bomb). So a body with a Content-Encoding other than ``identity`` is refused with
415 ``unsupported_encoding`` before it is read, whatever the body holds.
"""

from __future__ import annotations

import gzip
import zlib

import pytest

EVENT = "evt_encoding_1"


async def refused(resp) -> None:
    data = await resp.json()
    assert resp.status == 415, data
    assert data["error"]["code"] == "unsupported_encoding", data
    assert "identity" in data["error"]["message"]


@pytest.mark.parametrize(
    ("encoding", "transform"),
    [
        ("gzip", lambda b: b"this is not gzip at all"),
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", lambda b: b"\x00\x01garbage"),
        ("x-unknown", lambda b: b),
        ("gzip, identity", gzip.compress),
    ],
)
async def test_an_encoded_webhook_body_is_refused_with_415(gateway, kit, encoding, transform):
    body = kit.stripe_body(EVENT)
    headers = {**gateway.sign("stripe", body), "Content-Encoding": encoding}
    resp = await gateway.client.post(gateway.url("stripe"), data=transform(body), headers=headers)
    await refused(resp)
    assert gateway.upstream.events == []
    await gateway.deliver_ok("stripe", body)  # nothing was claimed: the plain delivery goes through


async def test_a_gzip_bomb_is_refused_without_being_inflated(gateway, kit):
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    headers = {**gateway.sign("stripe", bomb), "Content-Encoding": "gzip"}
    resp = await gateway.client.post(gateway.url("stripe"), data=bomb, headers=headers)
    await refused(resp)


@pytest.mark.parametrize("encoding", ["identity", "Identity", ""])
async def test_identity_is_the_body_as_sent(gateway, kit, encoding):
    body = kit.stripe_body(f"evt_identity_{encoding or 'empty'}")
    await gateway.deliver_ok("stripe", body, {"Content-Encoding": encoding})
