"""PayPal: ``PAYPAL-TRANSMISSION-SIG: <base64 RSA PKCS#1 v1.5 SHA-256 signature>`` over
``transmission_id|transmission_time|webhook_id|crc32(body)`` (the CRC32 as an unsigned decimal),
made with the key of the certificate at ``PAYPAL-CERT-URL``.

PayPal's current SDKs have no offline verifier (the legacy ``paypalrestsdk`` fetched the
certificate itself): the signatures here are made with ``cryptography`` from the documented
algorithm, with self-signed certificates standing in for PayPal's. Nothing touches the network:
the configured-certificate path is offline by design, and the fetch path runs with an injected
fetch function that records every URL it is asked for.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import make_mocked_request
from asymmetric import public_pv, rsa_certificate_pem, rsa_sign, sample_body
from preset_contract import NOW, URL, PresetContract, Scheme, make_provider, outcome

from gateway.errors import Rejection
from gateway.metrics import Metrics
from gateway.pipeline.context import RequestContext
from gateway.pipeline.verify import Verify
from gateway.providers.certificates import CertificateCache, allowed
from gateway.providers.signer import sign
from gateway.providers.verifier import verify
from gateway.settings.loader import build_settings, load_catalog

SEED, ROTATED = "paypal-cert-key", "paypal-rotated-cert-key"
WEBHOOK_ID = "8PT597110X687430LKGECATA"
CERT_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
EVENT = {
    "id": "WH-9UG43882HX7271132-6E0871324L7949614", "event_version": "1.0", "create_time": "2023-11-14T22:13:19Z",
    "resource_type": "capture", "event_type": "PAYMENT.CAPTURE.COMPLETED",
    "summary": "Payment completed for € 42.00 EUR",
    "resource": {"id": "42311647XV020574X", "status": "COMPLETED",
                 "amount": {"currency_code": "EUR", "value": "4200.00"},
                 "note": "café ✓"},
}  # fmt: skip


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def paypal_sign(
    seed: str, body: bytes, ts: int, transmission_id: str = "", webhook_id: str = WEBHOOK_ID
) -> dict[str, str]:
    """The documented self-verification, in reverse: the signed string, then RSA-SHA256."""
    transmission_id = transmission_id or str(uuid.UUID(int=ts))
    message = f"{transmission_id}|{iso(ts)}|{webhook_id}|{zlib.crc32(body)}".encode()
    return {  # title case: header names are case-insensitive, and the contract upper-cases them
        "Paypal-Transmission-Id": transmission_id,
        "Paypal-Transmission-Time": iso(ts),
        "Paypal-Transmission-Sig": base64.b64encode(rsa_sign(seed, message)).decode(),
        "Paypal-Cert-Url": CERT_URL,
        "Paypal-Auth-Algo": "SHA256withRSA",
    }


SCHEME = Scheme(
    name="paypal",
    secrets=(SEED, ROTATED),
    oracle=paypal_sign,
    event=event,
    signature_header="Paypal-Transmission-Sig",
    extra_headers=("Paypal-Transmission-Id", "Paypal-Transmission-Time"),
    tolerance=300,
    expect_id=EVENT["id"],
    expect_type="PAYMENT.CAPTURE.COMPLETED",
    expect_payment={"id": "42311647XV020574X", "status": "completed", "provider_status": "COMPLETED",
                    "amount": "4200.00", "currency": "EUR"},
)  # fmt: skip


@pytest.fixture
def pv(pv):
    return public_pv(pv, rsa_certificate_pem, webhook_id=WEBHOOK_ID)


def configured(**entry):
    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"paypal": {"webhook_id": WEBHOOK_ID, **entry}}}
    return build_settings("t.yaml", data, load_catalog(), {}).providers["paypal"]


class TestContract(PresetContract):
    scheme = SCHEME

    def test_signer_writes_what_the_oracle_writes(self, pv):
        with pytest.raises(ValueError, match="private key"):
            sign(make_provider(pv, SCHEME), event(NOW), URL, now=NOW)

    def test_catalog_sample_signs_and_verifies(self, pv):
        provider = make_provider(pv, SCHEME)
        body, _ = sample_body(provider)
        assert outcome(provider, paypal_sign(SEED, body, NOW), body) == "accepted:0"

    async def test_delivery_through_the_gateway(self, make_gateway, tmp_path):
        cert = tmp_path / "paypal.pem"
        cert.write_text(rsa_certificate_pem(SEED))
        gateway = await make_gateway(providers={"paypal": {"webhook_id": WEBHOOK_ID, "certificate": f"file:{cert}"}})
        body = event(0)
        headers = {"Content-Type": "application/json", **paypal_sign(SEED, body, int(time.time()))}
        resp = await gateway.client.post(gateway.url("paypal"), data=body, headers=headers)
        answer = await resp.json()
        assert (resp.status, answer["status"], answer["event_id"]) == (200, "forwarded", EVENT["id"])
        data = gateway.upstream.events[-1].event["data"]
        assert data["payment"] == dict(SCHEME.expect_payment or {})
        again = await gateway.client.post(gateway.url("paypal"), data=body, headers=headers)
        assert (await again.json())["status"] == "duplicate"

    async def test_catalog_sample_through_the_gateway(self, make_gateway):
        gateway = await make_gateway(
            providers={"paypal": {"webhook_id": WEBHOOK_ID, "certificate": rsa_certificate_pem(SEED)}}
        )
        body, _ = sample_body(gateway.settings.providers["paypal"])
        headers = {"Content-Type": "application/json", **paypal_sign(SEED, body, int(time.time()))}
        resp = await gateway.client.post(gateway.url("paypal"), data=body, headers=headers)
        assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")


def test_the_signed_string_carries_the_configured_webhook_id(pv):
    body = event(NOW)
    provider = configured(certificate=rsa_certificate_pem(SEED))
    assert outcome(provider, paypal_sign(SEED, body, NOW), body) == "accepted:0"
    other = paypal_sign(SEED, body, NOW, webhook_id="OTHERWEBHOOK0000000000")
    assert outcome(provider, other, body) == "invalid_signature"  # signed for another webhook


def test_the_crc_is_unsigned_decimal():
    """A body whose CRC32 has the top bit set: PayPal's Node example parses it as unsigned."""
    body = next(b for i in range(1000) if zlib.crc32(b := event(NOW) + b" " * i) >= 2**31)
    provider = configured(certificate=rsa_certificate_pem(SEED))
    assert outcome(provider, paypal_sign(SEED, body, NOW), body) == "accepted:0"


def test_webhook_id_is_required():
    from gateway.errors import ConfigError

    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"paypal": {}}}
    with pytest.raises(ConfigError, match=r"providers\.paypal\.webhook_id"):
        build_settings("t.yaml", data, load_catalog(), {})


def test_an_expired_certificate_in_config_still_verifies_offline_but_short_keys_do_not():
    """A pinned certificate is the operator's choice; a key too short for RSA-SHA256 is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.errors import ConfigError

    short = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505
    pem = short.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ConfigError, match="1024-bit"):
        configured(certificate=pem)


# --- the fetch path: certificates named by the request -------------------------------------------


class Recorder:
    """A fetch function that serves certificates from a dict and records every URL asked for."""

    def __init__(self, certs: dict[str, str]) -> None:
        self.certs = certs
        self.asked: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        if url not in self.certs:
            raise OSError("HTTP 404")
        return self.certs[url].encode()


@pytest.mark.parametrize(
    "url",
    [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",  # not https
        "https://api.paypal.com.evil.example/certs/CERT-1",  # suffix
        "https://evil.example/api.paypal.com/CERT-1",
        "https://evilapi.paypal.com/certs/CERT-1",
        "https://api.paypal.com:8443/certs/CERT-1",  # a port
        "https://user@api.paypal.com/certs/CERT-1",  # userinfo
        "https://api.paypal.com@evil.example/certs/CERT-1",
        "https://API.PAYPAL.COM/certs/CERT-1",  # not the exact spelling
        "https://api.paypal.com./certs/CERT-1",
        "https://api.sandbox.paypal.com /certs",
        "file:///etc/passwd",
        "//api.paypal.com/certs/CERT-1",
        "https://[::1]/certs",
        "https://api.paypal.com:99999/x",
    ],
)
async def test_disallowed_certificate_urls_are_refused_without_a_request(url):
    fetch = Recorder({url: rsa_certificate_pem(SEED)})
    cache = CertificateCache(fetch)
    with pytest.raises(Rejection) as exc:
        await cache.key(url, ("api.paypal.com", "api.sandbox.paypal.com"), "rsa-sha256")
    assert exc.value.code == "invalid_signature"
    assert fetch.asked == []
    assert not allowed(url, ("api.paypal.com", "api.sandbox.paypal.com"))


def _request(headers: dict[str, str]) -> RequestContext:
    request = make_mocked_request("POST", "/payments/api/webhooks/paypal/", headers=headers)
    return RequestContext(request=request, started=0.0)


async def test_fetched_certificate_is_cached_by_url():
    provider = configured()  # no certificate configured: fetched from PAYPAL-CERT-URL
    fetch = Recorder({CERT_URL: rsa_certificate_pem(SEED)})
    stage = Verify("https://gateway.example", Metrics(), certificates=CertificateCache(fetch))
    for ts in (int(time.time()), int(time.time()) + 1):
        body = event(ts)
        ctx = _request(paypal_sign(SEED, body, ts))
        ctx.provider, ctx.body = provider, body
        await stage(ctx)
        assert ctx.secret_index == 0
    assert fetch.asked == [CERT_URL]


async def test_concurrent_requests_share_one_fetch():
    import asyncio

    fetch = Recorder({CERT_URL: rsa_certificate_pem(SEED)})
    cache = CertificateCache(fetch)
    keys = await asyncio.gather(*(cache.key(CERT_URL, ("api.paypal.com",), "rsa-sha256") for _ in range(10)))
    assert len({id(k) for k in keys}) == 1 and fetch.asked == [CERT_URL]


async def test_a_certificate_signed_by_another_key_is_refused():
    provider = configured()
    fetch = Recorder({CERT_URL: rsa_certificate_pem(ROTATED)})
    body = event(NOW)
    key = await CertificateCache(fetch).key(CERT_URL, ("api.paypal.com",), "rsa-sha256")
    with pytest.raises(Rejection, match="no configured key"):
        verify(provider, paypal_sign(SEED, body, NOW), body, URL, NOW, public_keys=(key,))


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        (None, "could not be used"),  # 404
        ("not a certificate", "could not be used"),
        ("expired", "expired or not yet valid"),
    ],
)
async def test_unusable_certificates_are_refused(served, reason):
    certs = {}
    if served == "expired":
        certs[CERT_URL] = rsa_certificate_pem(SEED, days=1, start=time.time() - 10 * 86400)
    elif served is not None:
        certs[CERT_URL] = served
    cache = CertificateCache(Recorder(certs))
    with pytest.raises(Rejection, match=reason) as exc:
        await cache.key(CERT_URL, ("api.paypal.com",), "rsa-sha256")
    assert exc.value.code == "invalid_signature"
    # a failure is remembered for a minute (no fetch per forged request), then asked again
    with pytest.raises(Rejection, match=reason):
        await cache.key(CERT_URL, ("api.paypal.com",), "rsa-sha256")
    assert len(cache.fetch.asked) == 1  # type: ignore[attr-defined]
    cache._failed[CERT_URL] = (time.monotonic() - 61, cache._failed[CERT_URL][1])
    with pytest.raises(Rejection):
        await cache.key(CERT_URL, ("api.paypal.com",), "rsa-sha256")
    assert len(cache.fetch.asked) == 2  # type: ignore[attr-defined]


async def test_missing_cert_url_header_is_missing_signature():
    provider = configured()
    stage = Verify("https://gateway.example", Metrics(), certificates=CertificateCache(Recorder({})))
    body = event(NOW)
    headers = paypal_sign(SEED, body, NOW)
    del headers["Paypal-Cert-Url"]
    ctx = _request(headers)
    ctx.provider, ctx.body = provider, body
    with pytest.raises(Rejection) as exc:
        await stage(ctx)
    assert exc.value.code == "missing_signature"


async def test_a_configured_certificate_means_no_fetch_at_all():
    provider = configured(certificate=rsa_certificate_pem(SEED))
    fetch = Recorder({})
    stage = Verify("https://gateway.example", Metrics(), certificates=CertificateCache(fetch))
    ts = int(time.time())
    body = event(ts)
    headers = paypal_sign(SEED, body, ts)
    headers["Paypal-Cert-Url"] = "https://evil.example/cert.pem"
    ctx = _request(headers)
    ctx.provider, ctx.body = provider, body
    await stage(ctx)
    assert ctx.secret_index == 0 and fetch.asked == []


def test_certificate_hosts_can_be_overridden():
    provider = configured(signature={"certificate_hosts": ["api-m.paypal.com"]})
    assert provider.signature.certificate_hosts == ("api-m.paypal.com",)


async def test_no_fetch_without_a_signature_header():
    provider = configured()
    fetch = Recorder({CERT_URL: rsa_certificate_pem(SEED)})
    stage = Verify("https://gateway.example", Metrics(), certificates=CertificateCache(fetch))
    body = event(NOW)
    headers = paypal_sign(SEED, body, NOW)
    del headers["Paypal-Transmission-Sig"]
    ctx = _request(headers)
    ctx.provider, ctx.body = provider, body
    with pytest.raises(Rejection) as exc:
        await stage(ctx)
    assert exc.value.code == "missing_signature" and fetch.asked == []


def test_the_crc32_body_counts_as_unsigned_so_the_signed_transmission_is_deduplicated():
    """PayPal signs the body's CRC32 only: whitespace can be reshuffled to keep it while the id and
    amount change, so a captured transmission could be re-sent with new content under a new id.
    The signed string (id|time|webhook_id|crc) is claimed for dedup_ttl beside the event id."""
    assert configured().dedup_signed_content is True
    assert configured(dedup_signed_content=False).dedup_signed_content is False  # still the operator's call
