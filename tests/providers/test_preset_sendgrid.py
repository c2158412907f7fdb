"""SendGrid Event Webhook: ``X-Twilio-Email-Event-Webhook-Signature: <base64 DER ECDSA P-256
SHA-256 signature of timestamp + body>`` and ``X-Twilio-Email-Event-Webhook-Timestamp``, verified
with the base64 verification key shown under Mail Settings.

Oracles: the official ``sendgrid`` SDK's ``EventWebhook`` verifies (it cannot sign: only SendGrid
holds the private key); signatures are made with ``cryptography``'s ECDSA, as SendGrid signs, and
every one is checked by the SDK too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from asymmetric import ec_key, ec_public_b64, public_pv, sample_body
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from preset_contract import NOW, URL, PresetContract, Scheme, make_provider, outcome
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from gateway.errors import ConfigError
from gateway.providers.signer import sign
from gateway.settings.loader import build_settings, load_catalog

SEED, ROTATED = "sendgrid-signing-key", "sendgrid-rotated-key"
SIG = EventWebhookHeader.SIGNATURE
TS = EventWebhookHeader.TIMESTAMP
EVENTS = [
    {"email": "jane@example.com", "timestamp": 1700000000, "event": "delivered", "sg_event_id": "ZGVsaXZlcmVk",
     "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "smtp-id": "<4200@example.com>",
     "category": ["café ✓"]},
    {"email": "jane@example.com", "timestamp": 1700000001, "event": "open", "sg_event_id": "b3BlbmVk"},
]  # fmt: skip


def event(ts: int) -> bytes:
    return json.dumps(EVENTS, ensure_ascii=False).encode()


def sendgrid_sign(seed: str, body: bytes, ts: int) -> dict[str, str]:
    der = ec_key(seed).sign(str(ts).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIG: base64.b64encode(der).decode(), TS: str(ts)}


def sdk_accepts(seed: str, body: bytes, headers, now: float) -> bool:
    """``EventWebhook.verify_signature`` (the SDK checks no clock, nor headers sent twice)."""
    try:
        hook = EventWebhook(ec_public_b64(seed))
        return bool(hook.verify_signature(body.decode("utf-8"), headers[SIG], headers[TS]))
    except Exception:  # the SDK raises on undecodable input; that is a refusal
        return False


SCHEME = Scheme(
    name="sendgrid",
    secrets=(SEED, ROTATED),
    oracle=sendgrid_sign,
    event=event,
    signature_header=SIG,
    extra_headers=(TS,),
    tolerance=600,
    sdk_accepts=sdk_accepts,
    expect_id=None,  # a batch: the body's SHA-256
    expect_type=None,
)


@pytest.fixture
def pv(pv):
    return public_pv(pv, ec_public_b64)


class TestContract(PresetContract):
    scheme = SCHEME

    def test_signer_writes_what_the_oracle_writes(self, pv):
        with pytest.raises(ValueError, match="private key"):
            sign(make_provider(pv, SCHEME), event(NOW), URL, now=NOW)

    def test_sdk_accepts_our_signer(self, pv):
        """No signer of ours: instead, the SDK accepts every oracle signature we accept."""
        for seed in SCHEME.secrets:
            body, headers = SCHEME.delivery(secret_index=SCHEME.secrets.index(seed))
            assert sdk_accepts(seed, body, headers, NOW)
            assert not sdk_accepts(SEED if seed != SEED else ROTATED, body, headers, NOW)

    def test_catalog_sample_signs_and_verifies(self, pv):
        provider = make_provider(pv, SCHEME)
        body, _ = sample_body(provider)
        assert outcome(provider, sendgrid_sign(SEED, body, NOW), body) == "accepted:0"

    async def test_delivery_through_the_gateway(self, make_gateway):
        gateway = await make_gateway(providers={"sendgrid": {"public_keys": [ec_public_b64(SEED)]}})
        body = event(0)
        headers = {"Content-Type": "application/json", **sendgrid_sign(SEED, body, int(time.time()))}
        resp = await gateway.client.post(gateway.url("sendgrid"), data=body, headers=headers)
        answer = await resp.json()
        assert (resp.status, answer["status"], answer["event_id"]) == (
            200,
            "forwarded",
            hashlib.sha256(body).hexdigest(),
        )
        again = await gateway.client.post(gateway.url("sendgrid"), data=body, headers=headers)
        assert (await again.json())["status"] == "duplicate"

    async def test_catalog_sample_through_the_gateway(self, make_gateway):
        gateway = await make_gateway(providers={"sendgrid": {"public_keys": [ec_public_b64(SEED)]}})
        body, _ = sample_body(gateway.settings.providers["sendgrid"])
        headers = {"Content-Type": "application/json", **sendgrid_sign(SEED, body, int(time.time()))}
        resp = await gateway.client.post(gateway.url("sendgrid"), data=body, headers=headers)
        assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")


def test_verdicts_agree_with_the_sdk_on_mutated_signatures(pv):
    """Each one-character change of the base64 signature: we accept exactly what the SDK
    accepts, except spellings the SDK's lenient base64 decoder takes and we refuse."""
    provider = make_provider(pv, SCHEME)
    body, headers = SCHEME.delivery()
    value = headers[SIG]
    for i in range(len(value)):
        for new in "AQg+/=z":
            mutated = value[:i] + new + value[i + 1 :]
            if mutated == value:
                continue
            ours = outcome(provider, {**headers, SIG: mutated}, body).startswith("accepted")
            canonical = (
                base64.b64encode(base64.b64decode(mutated + "==")).decode() == mutated if _b64(mutated) else False
            )
            assert ours == (sdk_accepts(SEED, body, {**headers, SIG: mutated}, NOW) and canonical), (i, new)


def _b64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def configured(public_key: str):
    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"sendgrid": {"public_keys": [public_key]}}}
    return build_settings("t.yaml", data, load_catalog(), {}).providers["sendgrid"]


def test_the_public_key_as_pem_is_accepted_too():
    pem = (
        ec_key(SEED)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    provider = configured(pem.decode())
    body, headers = SCHEME.delivery()
    assert outcome(provider, headers, body) == "accepted:0"


def test_a_p384_key_is_a_config_error():
    public = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError, match="not P-256"):
        configured(base64.b64encode(der).decode())
