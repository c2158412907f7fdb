"""``gateway.providers.signer.sign`` (used by ``webhook-gateway sign``/``send`` and the admin's
test-webhook action) must sign exactly as each provider does: its headers equal the provider
oracle's, and the verifier accepts them with the chosen secret."""

from __future__ import annotations

import json

import pytest

from gateway.providers.signer import sample_event, sign


def test_signer_writes_what_the_provider_writes(preset, pv):
    provider = pv.provider(preset.name, preset.secrets)
    for index in (0, 1):
        ours = sign(provider, pv.BODY, pv.URL, now=pv.NOW, secret_index=index, headers={"webhook-id": "msg_9"})
        theirs = preset.sign(secret_index=index, msg_id="msg_9")
        for name, value in theirs.items():
            assert ours[name] == value, (preset.name, name)


def test_signer_round_trips_through_the_verifier(preset, pv):
    provider = pv.provider(preset.name, preset.secrets)
    for index in (0, 1):
        headers = sign(provider, pv.BODY, pv.URL, now=pv.NOW, secret_index=index)
        assert pv.outcome(provider, headers) == f"accepted:{index}"


def test_catalog_samples_verify(preset, pv):
    """Each catalog ``sample`` (what ``webhook-gateway send`` delivers) signs and verifies."""
    provider = pv.provider(preset.name)
    body, extra = sample_event(provider)
    json.loads(body)
    headers = sign(provider, body, pv.URL, now=pv.NOW, headers=extra)
    assert pv.outcome(provider, headers, body) == "accepted:0"


CUSTOM = {
    "signature": {
        "algorithm": "hmac-sha512", "header": "X-Sig", "style": "list", "item_separator": ";",
        "kv_separator": ":", "signature_keys": ["s1", "s2"], "encoding": "base64url",
        "payload": "{url}|{header:X-Request-Id}|{timestamp}|{body}",
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "example"),
    [("unix", "1700000000"), ("unix_ms", "1700000000000"), ("iso8601", "2023-11-14T22:13:20Z")],
)
def test_custom_scheme_round_trips_in_every_timestamp_format(pv, fmt, example):
    provider = pv.provider(
        "custom", ["k1", "k2"], **CUSTOM, timestamp={"from": "header", "header": "X-Ts", "format": fmt, "tolerance": 60}
    )
    headers = sign(provider, pv.BODY, pv.URL, now=pv.NOW, secret_index=1, headers={"x-request-id": "r-1"})
    assert headers["X-Ts"] == example
    assert pv.outcome(provider, headers) == "accepted:1"
    assert pv.outcome(provider, {**headers, "x-request-id": "r-2"}) == "invalid_signature"
    assert pv.outcome(provider, headers, now=pv.NOW + 61) == "stale_timestamp"
    assert pv.outcome(provider, {**headers, "X-Ts": "2023-11-14T22:13:20"}) == "invalid_signature"  # no zone
    assert pv.outcome(provider, {k: v for k, v in headers.items() if k != "x-request-id"}) == "missing_signature"


def test_custom_base64url_accepts_padded_and_unpadded(pv):
    provider = pv.provider("custom", ["k1"], **CUSTOM, timestamp={"from": "header", "header": "X-Ts"})
    headers = sign(provider, pv.BODY, pv.URL, now=pv.NOW, headers={"X-Request-Id": "r-1"})
    sig = headers["X-Sig"].removeprefix("s1:")
    assert "=" not in sig
    for value in (f"s1:{sig}", f"s2:{sig}==", f"s9:x;s1:{sig}"):
        assert pv.outcome(provider, {**headers, "X-Sig": value}) == "accepted:0", value
    standard_alphabet = sig.replace("-", "+").replace("_", "/")
    for value in (f"s1:{sig}=", f"s1:{standard_alphabet}", f"s1:{sig[:-1]}", f"s3:{sig}", f"s1={sig}"):
        if value == f"s1:{sig}":
            continue  # this signature happens to have no - or _
        assert pv.outcome(provider, {**headers, "X-Sig": value}) == "invalid_signature", value


def test_url_is_signed(pv):
    provider = pv.provider("custom", ["k1"], **CUSTOM, timestamp={"from": "header", "header": "X-Ts"})
    headers = sign(provider, pv.BODY, pv.URL, now=pv.NOW, headers={"X-Request-Id": "r-1"})
    assert pv.outcome(provider, headers) == "accepted:0"
    other = sign(provider, pv.BODY, pv.URL + "?x=1", now=pv.NOW, headers={"X-Request-Id": "r-1"})
    assert pv.outcome(provider, other) == "invalid_signature"  # pv.outcome verifies against pv.URL
