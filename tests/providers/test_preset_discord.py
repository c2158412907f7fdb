"""Discord: ``X-Signature-Ed25519: <hex Ed25519 signature of timestamp + body>`` with
``X-Signature-Timestamp``, verified with the application's public key (hex, from the Developer
Portal).

Discord publishes no Python SDK (its docs' Python example uses PyNaCl, not an official package):
the signatures here are made with ``cryptography``'s Ed25519, an implementation independent of
the gateway's verifier; the docs' PyNaCl example is reproduced with ``cryptography`` below.
"""

from __future__ import annotations

import json
import time

import pytest
from asymmetric import ed25519_key, ed25519_public_raw, public_pv, sample_body
from cryptography.hazmat.primitives.asymmetric import ed25519
from preset_contract import NOW, URL, PresetContract, Scheme, make_provider, outcome

from gateway.errors import ConfigError
from gateway.providers.signer import sign
from gateway.settings.loader import build_settings, load_catalog

SEED, ROTATED = "discord-application-key", "discord-rotated-key"
INTERACTION = {
    "id": "1200000000000000042", "application_id": "1100000000000000000", "type": 2, "version": 1,
    "token": "aW50ZXJhY3Rpb24", "data": {"id": "1100000000000000001", "name": "pay", "type": 1,
    "options": [{"name": "amount", "type": 4, "value": 4200}]}, "locale": "fr", "note": "café ✓",
}  # fmt: skip


def event(ts: int) -> bytes:
    return json.dumps(INTERACTION, ensure_ascii=False).encode()


def discord_sign(seed: str, body: bytes, ts: int) -> dict[str, str]:
    signature = ed25519_key(seed).sign(str(ts).encode() + body).hex()
    return {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": str(ts)}


def public_hex(seed: str) -> str:
    return ed25519_public_raw(seed).hex()


SCHEME = Scheme(
    name="discord",
    secrets=(SEED, ROTATED),
    oracle=discord_sign,
    event=event,
    signature_header="X-Signature-Ed25519",
    extra_headers=("X-Signature-Timestamp",),
    tolerance=300,
    expect_id="1200000000000000042",
    expect_type="pay",
)


@pytest.fixture
def pv(pv):
    return public_pv(pv, public_hex)


class TestContract(PresetContract):
    scheme = SCHEME

    def test_signer_writes_what_the_oracle_writes(self, pv):
        """Only Discord holds the private key: our signer refuses, it cannot sign."""
        with pytest.raises(ValueError, match="private key"):
            sign(make_provider(pv, SCHEME), event(NOW), URL, now=NOW)

    def test_catalog_sample_signs_and_verifies(self, pv):
        provider = make_provider(pv, SCHEME)
        body, _ = sample_body(provider)
        assert outcome(provider, discord_sign(SEED, body, NOW), body) == "accepted:0"

    async def test_delivery_through_the_gateway(self, make_gateway):
        gateway = await make_gateway(providers={"discord": {"public_keys": [public_hex(SEED)]}})
        body = event(0)
        headers = {"Content-Type": "application/json", **discord_sign(SEED, body, int(time.time()))}
        resp = await gateway.client.post(gateway.url("discord"), data=body, headers=headers)
        answer = await resp.json()
        assert (resp.status, answer["status"], answer["event_id"]) == (200, "forwarded", "1200000000000000042")
        data = gateway.upstream.events[-1].event["data"]
        assert (data["event_type"], data["verified"], data["payment"]) == ("pay", True, None)
        again = await gateway.client.post(gateway.url("discord"), data=body, headers=headers)
        assert (await again.json())["status"] == "duplicate"

    async def test_catalog_sample_through_the_gateway(self, make_gateway):
        gateway = await make_gateway(providers={"discord": {"public_keys": [public_hex(SEED)]}})
        body, _ = sample_body(gateway.settings.providers["discord"])
        headers = {"Content-Type": "application/json", **discord_sign(SEED, body, int(time.time()))}
        resp = await gateway.client.post(gateway.url("discord"), data=body, headers=headers)
        assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")


def configured(**entry):
    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"discord": entry}}
    return build_settings("t.yaml", data, load_catalog(), {}).providers["discord"]


def test_docs_pynacl_example_reproduced():
    """The docs' example, ``VerifyKey(bytes.fromhex(PUBLIC_KEY)).verify(f'{timestamp}{body}'.encode(),
    bytes.fromhex(signature))``, run with cryptography's Ed25519 on a fresh key pair."""
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw().hex()
    body = b'{"type":1}'
    signature = private.sign(f"{NOW}{body.decode()}".encode()).hex()
    ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(
        bytes.fromhex(signature), f"{NOW}{body.decode()}".encode()
    )
    headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": str(NOW)}
    assert outcome(configured(public_keys=[public]), headers, body) == "accepted:0"


@pytest.mark.parametrize(
    "key",
    [
        "zz" * 32,
        "ab" * 31,
        "ab" * 33,
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
        "file:/nonexistent/key",
    ],
)
def test_bad_public_keys_are_config_errors(key):
    with pytest.raises(ConfigError, match=r"public_keys\[0\]"):
        configured(public_keys=[key])


def test_public_key_from_a_file(tmp_path):
    path = tmp_path / "discord.pub"
    path.write_text(public_hex(SEED) + "\n")
    body = event(NOW)
    assert outcome(configured(public_keys=[f"file:{path}"]), discord_sign(SEED, body, NOW), body) == "accepted:0"


def test_a_secret_instead_of_a_public_key_is_a_config_error():
    with pytest.raises(ConfigError, match="public_keys, not secrets"):
        configured(secrets=["x"])
    with pytest.raises(ConfigError, match="no public key configured"):
        configured()


def test_upper_case_hex_signature_is_refused(pv):
    """Discord writes lowercase hex; one spelling per signature (no malleable encodings)."""
    provider = make_provider(pv, SCHEME)
    body = event(NOW)
    headers = discord_sign(SEED, body, NOW)
    assert outcome(provider, {**headers, "X-Signature-Ed25519": headers["X-Signature-Ed25519"].upper()}, body) == (
        "invalid_signature"
    )
