"""The verifier faces untrusted input: whatever the headers and body, it answers ``Rejection``
with a code from the closed set (a 4xx), never another exception (a 500), and never accepts
anything it was not given signed.

Deterministic (seeded) random inputs, shaped like each scheme so they get past the first checks:
header values from random text, random bytes as aiohttp decodes them (``surrogateescape``), any
code point (lone surrogates included), scheme-like fragments with random lengths; headers dropped
or repeated; bodies replaced by random bytes or random JSON.
"""

from __future__ import annotations

import base64
import json
import random
import string

import pytest

from gateway.errors import ERROR_STATUS, Rejection
from gateway.providers.schemes.nowpayments import sorted_json
from gateway.providers.verifier import verify

ROUNDS = 300
FRAGMENTS = ["t=", "v1=", "v0=", "v1,", "sha256=", "=", ",", " ", "\t", ";", ":", "1700000000", "whsec_", "\x00"]


def _random_text(rng: random.Random) -> str:
    kind = rng.randrange(7)
    size = rng.choice([0, 1, 2, 31, 32, 43, 44, 63, 64, 65, 88, 128, 129, 300, 9000])
    if kind == 0:
        return "".join(rng.choice(string.printable) for _ in range(size))
    if kind == 1:
        return rng.randbytes(size).decode("utf-8", "surrogateescape")  # as aiohttp hands bytes over
    if kind == 2:
        return "".join(chr(rng.randrange(0x110000)) for _ in range(min(size, 300)))
    if kind == 3:
        return rng.randbytes(size // 2).hex()
    if kind == 4:
        return base64.b64encode(rng.randbytes(size // 2)).decode()
    if kind == 5:
        return "".join(rng.choice(FRAGMENTS) + rng.randbytes(rng.choice([0, 16, 32, 64])).hex() for _ in range(4))
    return rng.choice(FRAGMENTS) * rng.randrange(1, 50)


def _random_json(rng: random.Random, depth: int = 0) -> object:
    roll = rng.randrange(9 if depth < 4 else 5)
    if roll == 0:
        return rng.randrange(-(2**70), 2**70)
    if roll == 1:
        edge = [0.1, 25.5, 1e-7, 1e21, -0.0, 5e-324, 1.7976931348623157e308]
        return rng.choice([*edge, rng.random() * 10 ** rng.randrange(-30, 30)])
    if roll == 2:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(8)))
    if roll == 3:
        return rng.choice([None, True, False])
    if roll == 4:
        return str(rng.randrange(20))
    if roll in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [rng.choice(["a", "b", "10", "9", "\u00e9", "\U0001f600", "fee", "payment_id", ""]) for _ in range(4)]
    return {k: _random_json(rng, depth + 1) for k in keys}


def _random_body(rng: random.Random, body: bytes) -> bytes:
    roll = rng.randrange(4)
    if roll == 0:
        return rng.randbytes(rng.randrange(200))
    if roll == 1:
        return json.dumps(_random_json(rng), ensure_ascii=rng.random() < 0.5).encode()
    if roll == 2:
        i = rng.randrange(len(body))
        return body[:i] + rng.randbytes(1) + body[i + 1 :]
    return body[: rng.randrange(len(body))]


def test_only_rejections_come_out(preset, pv):
    rng = random.Random(f"fuzz-{preset.name}")
    provider = pv.provider(preset.name, preset.secrets)
    for _ in range(ROUNDS):
        headers = list(preset.sign(secret_index=rng.randrange(2)).items())
        body = pv.BODY
        changed = False
        for i, (name, _value) in enumerate(list(headers)):
            roll = rng.random()
            if roll < 0.5:
                headers[i] = (name, _random_text(rng))
                changed = True
            elif roll < 0.6:
                headers.append((name.upper(), _random_text(rng)))  # repeated
                changed = True
            elif roll < 0.7:
                headers[i] = (name, "")
                changed = True
        if rng.random() < 0.3:
            body = _random_body(rng, pv.BODY)
            changed = changed or body != pv.BODY
        if not changed:
            continue
        source = pv.multi(*headers) if rng.random() < 0.5 else dict(headers)
        try:
            verify(provider, source, body, pv.URL, pv.NOW + rng.choice([0, 1, -1000, 10**9]))
        except Rejection as exc:
            assert exc.code in ERROR_STATUS
            assert exc.code in ("missing_signature", "invalid_signature", "stale_timestamp", "invalid_json"), exc.code
        else:
            pytest.fail(f"{preset.name} accepted a fuzzed request: {headers!r:.200} body={body[:60]!r}")


def test_random_json_canonicalizes_or_raises_value_error():
    rng = random.Random("canonical")
    for _ in range(2000):
        value = _random_json(rng)
        raw = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        try:
            forms = sorted_json(raw)
        except ValueError:
            assert not isinstance(value, dict)
            continue
        assert forms and all(isinstance(f, bytes) for f in forms)
        assert len(set(forms)) == len(forms)
        json.loads(forms[0])  # what the signer signs is JSON
