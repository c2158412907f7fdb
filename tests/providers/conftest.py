"""Shared by the provider conformance tests: the six catalog presets and their signing oracles.

Each preset has two signers: ``sdk``, the provider's official SDK from PyPI where one exists
(stripe, standardwebhooks, slack_sdk), and ``doc``, an independent implementation of the
algorithm as the provider documents it (used where no SDK exists, and for bodies an SDK cannot
take, such as bytes that are not UTF-8). Neither is ``gateway.providers.signer``: our own signer
is checked separately, against these oracles.

Fixtures (named so they never clash with ``tests/conftest.py``):

- ``preset``: parametrized over every catalog preset; ``timed_preset``, ``untimed_preset`` and
  ``sdk_preset`` over those with a signed timestamp, without one, and with an official SDK;
- ``pv``: constants and helpers: ``provider()`` builds a ``ProviderSpec`` through the real config
  loader, ``outcome()`` runs the verifier and answers ``"accepted:<secret index>"`` or the
  rejection code, ``multi()`` builds a ``CIMultiDictProxy`` that can repeat a header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import stripe
from multidict import CIMultiDict, CIMultiDictProxy
from slack_sdk.signature import SignatureVerifier

from gateway.errors import ERROR_STATUS, Rejection
from gateway.providers.spec import ProviderSpec
from gateway.providers.verifier import verify
from gateway.settings.loader import build_settings, load_catalog

NOW = 1_700_000_000
URL = "https://gateway.example/payments/api/webhooks/test/"
#: A typical JSON body: non-ASCII text, and "4200" for the tamper tests to change.
BODY = '{"id":"evt_42","type":"payment_intent.succeeded","amount":4200,"note":"café ✓"}'.encode()
#: Not UTF-8 at all: the verifier signs bytes; JSON validity is checked later in the pipeline.
NON_UTF8_BODY = b'{"id":"evt_42","amount":4200,"note":"\xff\xfe caf\xe9"}'
CATALOG = load_catalog()

Signer = Callable[[str, bytes, int, str], dict[str, str]]


def _mac(key: bytes, payload: bytes, digest: Any = hashlib.sha256) -> bytes:
    return hmac.new(key, payload, digest).digest()


# --- Stripe: https://docs.stripe.com/webhooks#verify-manually ------------------------------------


def stripe_sdk(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode("utf-8"), secret, timestamp=ts)
    return {"Stripe-Signature": header}


def stripe_doc(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    sig = _mac(secret.encode(), f"{ts}.".encode() + body).hex()
    return {"Stripe-Signature": f"t={ts},v1={sig}"}


# --- GitHub: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries ----


def github_doc(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + _mac(secret.encode(), body).hex()}


# --- NOWPayments: keys sorted, JSON.stringify, HMAC-SHA512 hex -----------------------------------


def nowpayments_doc(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    """Valid for bodies whose numbers Python and JavaScript print alike (ints, strings): the
    number-formatting cases are tested against the docs' own Node code in the NOWPayments file."""
    canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"x-nowpayments-sig": _mac(secret.encode(), canonical.encode(), hashlib.sha512).hex()}


# --- Standard Webhooks: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md


def standard_sdk(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    signature = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode("utf-8"))
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def standard_doc(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    sig = base64.b64encode(_mac(key, f"{msg_id}.{ts}.".encode() + body)).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{sig}"}


# --- Shopify: https://shopify.dev/docs/apps/build/webhooks/subscribe/https (verify the webhook) ---


def shopify_doc(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(_mac(secret.encode(), body)).decode()}


# --- Slack: https://api.slack.com/authentication/verifying-requests-from-slack ------------------


def slack_sdk(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(ts), body=body.decode("utf-8"))
    assert signature is not None
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": str(ts)}


def slack_doc(secret: str, body: bytes, ts: int, msg_id: str) -> dict[str, str]:
    sig = _mac(secret.encode(), f"v0:{ts}:".encode() + body).hex()
    return {"X-Slack-Signature": f"v0={sig}", "X-Slack-Request-Timestamp": str(ts)}


@dataclass(frozen=True)
class Preset:
    """One catalog preset as its provider signs it."""

    name: str
    secrets: tuple[str, str]  # (current, rotated-in)
    signature_header: str
    doc: Signer
    sdk: Signer | None = None
    timestamped: bool = False
    extra_headers: tuple[str, ...] = ()  # other headers that must be present (timestamp, id)

    def sign(
        self, body: bytes = BODY, secret_index: int = 0, ts: int = NOW, msg_id: str = "msg_2Yx8"
    ) -> dict[str, str]:
        """Headers from the official SDK when there is one and it can take ``body``."""
        signer = self.sdk if self.sdk is not None and _is_utf8(body) else self.doc
        return signer(self.secrets[secret_index], body, ts, msg_id)

    @property
    def required_headers(self) -> tuple[str, ...]:
        return (self.signature_header, *self.extra_headers)


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


ROTATED_WHSEC = "whsec_" + base64.b64encode(b"rotated-in-signing-key-32-bytes!").decode()
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("stripe", ("whsec_0ldStr1peSecret", "whsec_n3wStr1peSecret"), "Stripe-Signature",
               stripe_doc, stripe_sdk, timestamped=True),
        Preset("github", ("It's a Secret to Everybody", "rotated github secret"), "X-Hub-Signature-256",
               github_doc),
        Preset("nowpayments", ("np-ipn-secret-0ld", "np-ipn-secret-n3w"), "x-nowpayments-sig", nowpayments_doc),
        Preset("standard-webhooks",
               ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ROTATED_WHSEC),
               "webhook-signature", standard_doc, standard_sdk, timestamped=True,
               extra_headers=("webhook-timestamp", "webhook-id")),
        Preset("shopify", ("shpss_0ld_app_secret", "shpss_n3w_app_secret"), "X-Shopify-Hmac-Sha256", shopify_doc),
        Preset("slack", ("8f742231b10e8888abcd99yyyzzz85a5", "rotated slack signing secret"), "X-Slack-Signature",
               slack_doc, slack_sdk, timestamped=True, extra_headers=("X-Slack-Request-Timestamp",)),
    )
}  # fmt: skip


def make_provider(name: str, secrets: tuple[str, ...] | list[str] | None = None, **overrides: Any) -> ProviderSpec:
    """The preset ``name`` through the real config loader, as a gateway config would name it."""
    entry = {"secrets": list(secrets if secrets is not None else PRESETS[name].secrets[:1]), **overrides}
    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {name: entry}}
    return build_settings("test.yaml", data, CATALOG, env={}).providers[name]


def outcome(
    provider: ProviderSpec,
    headers: Mapping[str, str] | CIMultiDictProxy[str],
    body: bytes = BODY,
    now: float = NOW,
) -> str:
    """``"accepted:<secret index>"`` or the rejection code; anything else raised fails the test."""
    try:
        result = verify(provider, headers, body, URL, now)
    except Rejection as exc:
        assert exc.code in ERROR_STATUS
        assert exc.status == ERROR_STATUS[exc.code]
        return exc.code
    return f"accepted:{result.secret_index}"


def multi(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    """Headers as aiohttp hands them over: case-insensitive, a name may repeat."""
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.fixture(params=sorted(PRESETS))
def preset(request: pytest.FixtureRequest) -> Preset:
    return PRESETS[request.param]


@pytest.fixture(params=sorted(n for n, p in PRESETS.items() if p.timestamped))
def timed_preset(request: pytest.FixtureRequest) -> Preset:
    """The presets whose signature covers a timestamp (Stripe, Standard Webhooks, Slack)."""
    return PRESETS[request.param]


@pytest.fixture(params=sorted(n for n, p in PRESETS.items() if not p.timestamped))
def untimed_preset(request: pytest.FixtureRequest) -> Preset:
    return PRESETS[request.param]


@pytest.fixture(params=sorted(n for n, p in PRESETS.items() if p.sdk is not None))
def sdk_preset(request: pytest.FixtureRequest) -> Preset:
    """The presets whose provider publishes an official Python SDK (Stripe, Standard Webhooks, Slack)."""
    return PRESETS[request.param]


@pytest.fixture
def pv() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        NOW=NOW,
        URL=URL,
        BODY=BODY,
        NON_UTF8_BODY=NON_UTF8_BODY,
        PRESETS=PRESETS,
        provider=make_provider,
        outcome=outcome,
        multi=multi,
        mac=_mac,
    )
