"""GitHub and Shopify: HMAC-SHA256 of the raw body, no timestamp, no official Python SDK.

GitHub: ``X-Hub-Signature-256: sha256=<hex>``, checked against the test vector GitHub publishes
in "Validating webhook deliveries" and an independent ``hmac`` computation.
Shopify: ``X-Shopify-Hmac-Sha256: <base64>``, as "Verify the webhook" in Shopify's docs describes
(their official library is the npm package @shopify/shopify-api, not on PyPI).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from gateway.providers.signer import sign

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_VECTOR = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SHOPIFY_SECRET = "shpss_0ld_app_secret"
ORDER = b'{"id":820982911946154508,"financial_status":"paid","total_price":"49.90","currency":"EUR","note":"\xc3\xa9"}'


def test_github_published_test_vector(pv):
    computed = "sha256=" + hmac.new(GITHUB_SECRET.encode(), b"Hello, World!", hashlib.sha256).hexdigest()
    assert computed == GITHUB_VECTOR
    provider = pv.provider("github", [GITHUB_SECRET])
    assert pv.outcome(provider, {"X-Hub-Signature-256": GITHUB_VECTOR}, b"Hello, World!") == "accepted:0"
    assert pv.outcome(provider, {"X-Hub-Signature-256": GITHUB_VECTOR}, b"Hello, World?") == "invalid_signature"


def test_github_our_signer_matches_the_vector(pv):
    provider = pv.provider("github", [GITHUB_SECRET])
    assert sign(provider, b"Hello, World!", pv.URL)["X-Hub-Signature-256"] == GITHUB_VECTOR


@pytest.mark.parametrize(
    "value",
    [
        "sha1=" + hmac.new(GITHUB_SECRET.encode(), b"Hello, World!", hashlib.sha1).hexdigest(),
        GITHUB_VECTOR.removeprefix("sha256="),  # no prefix
        GITHUB_VECTOR.upper(),
        "SHA256=" + GITHUB_VECTOR.removeprefix("sha256="),
        "sha256=" + GITHUB_VECTOR.removeprefix("sha256=").upper(),  # GitHub compares lowercase hex strings
        GITHUB_VECTOR[:-1],  # odd length
        GITHUB_VECTOR + "ab",  # 33 bytes
        "sha256=" + "ab" * 64,  # a SHA-512 length
        "sha256=" + base64.b64encode(bytes.fromhex(GITHUB_VECTOR[7:])).decode(),
        "sha256= " + GITHUB_VECTOR[7:],
        "sha256=" + GITHUB_VECTOR[7:-1] + "\u00e9",
        "sha256=" + GITHUB_VECTOR[7:-1] + "g",
        "sha256=sha256=" + GITHUB_VECTOR[7:],
        GITHUB_VECTOR + "," + GITHUB_VECTOR,  # a list is not a GitHub header
    ],
)
def test_github_malformed(pv, value):
    provider = pv.provider("github", [GITHUB_SECRET])
    assert pv.outcome(provider, {"X-Hub-Signature-256": value}, b"Hello, World!") == "invalid_signature"


def test_github_sha1_header_alone_is_missing(pv):
    """The legacy ``X-Hub-Signature`` (SHA-1) is not what the preset checks."""
    provider = pv.provider("github", [GITHUB_SECRET])
    sha1 = "sha1=" + hmac.new(GITHUB_SECRET.encode(), b"Hello, World!", hashlib.sha1).hexdigest()
    assert pv.outcome(provider, {"X-Hub-Signature": sha1}, b"Hello, World!") == "missing_signature"


def _shopify(body: bytes, secret: str = SHOPIFY_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_shopify_documented_algorithm(pv):
    provider = pv.provider("shopify", [SHOPIFY_SECRET])
    headers = {"X-Shopify-Hmac-Sha256": _shopify(ORDER), "X-Shopify-Topic": "orders/paid"}
    assert pv.outcome(provider, headers, ORDER) == "accepted:0"
    assert sign(provider, ORDER, pv.URL)["X-Shopify-Hmac-Sha256"] == _shopify(ORDER)


def test_shopify_header_name_as_shopify_spells_it(pv):
    provider = pv.provider("shopify", [SHOPIFY_SECRET])
    assert pv.outcome(provider, {"X-Shopify-Hmac-SHA256": _shopify(ORDER)}, ORDER) == "accepted:0"


@pytest.mark.parametrize(
    "make",
    [
        lambda s: s.rstrip("="),  # padding dropped
        lambda s: s.replace("+", "-").replace("/", "_") if ("+" in s or "/" in s) else s[:-2] + "_=",
        lambda s: base64.b64decode(s).hex(),  # hex instead of base64
        lambda s: "sha256=" + s,
        lambda s: s + "=",
        lambda s: s[:-1],
        lambda s: base64.b64encode(base64.b64decode(s)[:31]).decode(),
        lambda s: base64.b64encode(base64.b64decode(s) + b"\x00").decode(),
        lambda s: " ".join(s[i : i + 4] for i in range(0, len(s), 4)),  # whitespace inside
        lambda s: s[:10] + "\n" + s[10:],
        lambda s: s[:-2] + "\u00e9=",
        lambda s: "*" * len(s),
    ],
)
def test_shopify_malformed(pv, make):
    provider = pv.provider("shopify", [SHOPIFY_SECRET])
    value = make(_shopify(ORDER))
    assert pv.outcome(provider, {"X-Shopify-Hmac-Sha256": value}, ORDER) == "invalid_signature", value
