"""Twilio: ``X-Twilio-Signature: <base64 HMAC-SHA1 of the full URL + each POST parameter, sorted
by name, as name+value>``, keyed with the Auth Token; JSON bodies are not in the string, the URL's
``bodySHA256`` parameter (hex SHA-256 of the body) is. With a SharedKey, the
``X-Twilio-Webhooks-Signature-Settings`` header may name ``algorithm=HMAC_SHA256``.

Oracle: the official ``twilio`` SDK's ``RequestValidator``: ``compute_signature`` signs and
``validate`` verifies (it also tries the URL with and without its default port, as we do).
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qsl, urlencode

import pytest
from preset_contract import NOW, URL, PresetContract, Scheme, make_provider, outcome
from twilio.request_validator import RequestValidator

from gateway.errors import Rejection
from gateway.providers.signer import sample_event, sign
from gateway.providers.verifier import verify

TOKEN, ROTATED = "12345678901234567890123456789012", "abcdefabcdefabcdefabcdefabcdef12"
FORM = {
    "AccountSid": "AC00000000000000000000000000000000", "ApiVersion": "2010-04-01", "Body": "Pay 4200 café ✓",
    "From": "+15005550006", "To": "+15005550001", "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "MessageStatus": "delivered", "NumMedia": "0", "ErrorCode": "",
}  # fmt: skip
CONTEXT = {"Content-Type": "application/x-www-form-urlencoded", "I-Twilio-Idempotency-Token": "idem-4200"}


def event(ts: int) -> bytes:
    return urlencode(FORM).encode()


def params(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def twilio_sign(token: str, body: bytes, ts: int, url: str = URL) -> dict[str, str]:
    try:
        form = params(body)
    except UnicodeDecodeError:
        form = {}
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form)}


def sdk_accepts(token: str, body: bytes, headers, now: float, url: str = URL) -> bool:
    values = [v for k, v in headers.items() if k.lower() == "x-twilio-signature"]
    try:
        return len(values) == 1 and RequestValidator(token).validate(url, params(body), values[0])
    except (UnicodeDecodeError, ValueError, TypeError):
        return False


SCHEME = Scheme(
    name="twilio",
    secrets=(TOKEN, ROTATED),
    oracle=twilio_sign,
    event=event,
    signature_header="X-Twilio-Signature",
    context_headers=CONTEXT,
    sdk_accepts=sdk_accepts,
    differential=True,
    expect_id="idem-4200",
    expect_type="delivered",
)


class TestContract(PresetContract):
    scheme = SCHEME

    def test_signer_writes_what_the_oracle_writes(self, pv):
        provider = make_provider(pv, SCHEME, SCHEME.secrets)
        body = event(NOW)
        for index, token in enumerate(SCHEME.secrets):
            ours = sign(provider, body, URL, secret_index=index, headers=dict(CONTEXT))
            assert ours["X-Twilio-Signature"] == twilio_sign(token, body, NOW)["X-Twilio-Signature"]
            assert outcome(provider, ours, body) == f"accepted:{index}"

    def test_sdk_accepts_our_signer(self, pv):
        provider = make_provider(pv, SCHEME, SCHEME.secrets)
        body = event(NOW)
        for index, token in enumerate(SCHEME.secrets):
            headers = sign(provider, body, URL, secret_index=index, headers=dict(CONTEXT))
            assert sdk_accepts(token, body, headers, NOW)
            assert not sdk_accepts(SCHEME.secrets[1 - index], body, headers, NOW)

    def test_catalog_sample_signs_and_verifies(self, pv):
        """The sample is a form post, as Twilio sends: the SDK accepts what our signer writes."""
        provider = make_provider(pv, SCHEME)
        body, extra = sample_event(provider)
        assert params(body)["MessageStatus"] == "delivered"
        headers = sign(provider, body, URL, headers=extra)
        assert sdk_accepts(TOKEN, body, headers, NOW)
        assert outcome(provider, headers, body) == "accepted:0"

    async def test_delivery_through_the_gateway(self, make_gateway):
        gateway = await make_gateway(providers={"twilio": {"secrets": [TOKEN]}})
        url = gateway.settings.webhook_url("twilio")
        body = event(NOW)
        headers = {**CONTEXT, **twilio_sign(TOKEN, body, NOW, url)}
        assert sdk_accepts(TOKEN, body, headers, NOW, url)
        resp = await gateway.client.post(gateway.url("twilio"), data=body, headers=headers)
        answer = await resp.json()
        assert (resp.status, answer["status"], answer["event_id"]) == (200, "forwarded", "idem-4200")
        data = gateway.upstream.events[-1].event["data"]
        assert (data["event_type"], data["payload"]["Body"]) == ("delivered", "Pay 4200 café ✓")
        again = await gateway.client.post(gateway.url("twilio"), data=body, headers=headers)
        assert (await again.json())["status"] == "duplicate"


def _verify(provider, headers, body, url, now=NOW):
    try:
        return f"accepted:{verify(provider, headers, body, url, now).secret_index}"
    except Rejection as exc:
        return exc.code


@pytest.mark.parametrize(
    "url",
    [
        "https://gateway.example/payments/api/webhooks/twilio/",
        "https://gateway.example:443/payments/api/webhooks/twilio/",
        "http://gateway.example:8080/payments/api/webhooks/twilio/?account=acme&x=",
    ],
)
def test_the_url_with_and_without_its_default_port(pv, url):
    """Twilio signs with or without the port inconsistently; the SDK tries both, so do we."""
    provider = make_provider(pv, SCHEME)
    body = event(NOW)
    for signed_url in {url, url.replace(":443", ""), url.replace("example/", "example:443/")}:
        headers = twilio_sign(TOKEN, body, NOW, signed_url)
        expected = sdk_accepts(TOKEN, body, headers, NOW, url)
        assert _verify(provider, headers, body, url).startswith("accepted") == expected, signed_url


def test_json_body_with_body_sha256(pv):
    provider = make_provider(pv, SCHEME)
    body = b'{"event":"call.completed","amount":4200}'
    url = f"{URL}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    assert RequestValidator(TOKEN).validate(url, body.decode(), signature)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/json"}
    assert _verify(provider, headers, body, url) == "accepted:0"
    tampered = body.replace(b"4200", b"4201")
    assert not RequestValidator(TOKEN).validate(url, tampered.decode(), signature)
    assert _verify(provider, headers, tampered, url) == "invalid_signature"
    upper = f"{URL}?bodySHA256={hashlib.sha256(body).hexdigest().upper()}"  # the SDK compares the string
    assert _verify(
        provider, {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(upper, {})}, body, upper
    ) == ("invalid_signature")


def test_json_body_without_body_sha256_is_refused(pv):
    """A JSON body is never in Twilio's string: without bodySHA256 it would be unsigned."""
    provider = make_provider(pv, SCHEME)
    body = b'{"amount":4200}'
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(URL, {})}
    assert _verify(provider, headers, body, URL) == "invalid_signature"


def test_shared_key_hmac_sha256(pv):
    provider = make_provider(pv, SCHEME)
    body = event(NOW)
    settings = "key=webhooks_sharedkey_01,algorithm=HMAC_SHA256"
    signature = RequestValidator(TOKEN).compute_signature(URL, params(body), "HMAC_SHA256")
    assert RequestValidator(TOKEN).validate(URL, params(body), signature, "HMAC_SHA256")
    headers = {"X-Twilio-Signature": signature, "X-Twilio-Webhooks-Signature-Settings": settings}
    assert _verify(provider, headers, body, URL) == "accepted:0"
    assert _verify(provider, {"X-Twilio-Signature": signature}, body, URL) == "invalid_signature"  # SHA-1 expected
    sha1 = twilio_sign(TOKEN, body, NOW)["X-Twilio-Signature"]
    assert _verify(provider, {**headers, "X-Twilio-Signature": sha1}, body, URL) == "invalid_signature"
    bad = {**headers, "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5"}
    assert _verify(provider, bad, body, URL) == "invalid_signature"


def test_repeated_parameters_and_blank_values(pv):
    """As the SDK: values of a repeated name sorted and taken once; blank values are signed."""
    provider = make_provider(pv, SCHEME)
    body = b"To=%2B1&MediaUrl=b&MediaUrl=a&MediaUrl=a&Empty=&Caf%C3%A9=%E2%9C%93"

    class Multi(dict):
        def getall(self, name):
            return [v for k, v in parse_qsl(body.decode(), keep_blank_values=True) if k == name]

    form = Multi(parse_qsl(body.decode(), keep_blank_values=True))
    signature = RequestValidator(TOKEN).compute_signature(URL, form)
    assert _verify(provider, {"X-Twilio-Signature": signature}, body, URL) == "accepted:0"


def test_the_query_string_is_signed(pv):
    provider = make_provider(pv, SCHEME)
    body = event(NOW)
    headers = twilio_sign(TOKEN, body, NOW, URL + "?tenant=a")
    assert _verify(provider, headers, body, URL + "?tenant=a") == "accepted:0"
    assert _verify(provider, headers, body, URL + "?tenant=b") == "invalid_signature"


async def test_url_from_forwarded_headers(make_gateway):
    public = "https://sms.example.com/payments/api/webhooks/twilio/"
    body = event(NOW)
    headers = {**CONTEXT, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com",
               **twilio_sign(TOKEN, body, NOW, public)}  # fmt: skip
    gateway = await make_gateway(
        trusted_proxies=["127.0.0.1/32", "::1/128"],
        providers={"twilio": {"secrets": [TOKEN], "url_from_forwarded_headers": True}},
    )
    resp = await gateway.client.post(gateway.url("twilio"), data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    # public_url instead: the signature over the proxy's URL no longer matches
    gateway = await make_gateway(providers={"twilio": {"secrets": [TOKEN]}})
    resp = await gateway.client.post(
        gateway.url("twilio"), data=body, headers={**headers, "I-Twilio-Idempotency-Token": "x"}
    )
    assert resp.status == 401
    ok = {**CONTEXT, **twilio_sign(TOKEN, body, int(time.time()), gateway.settings.webhook_url("twilio"))}
    resp = await gateway.client.post(gateway.url("twilio"), data=body, headers=ok)
    assert resp.status == 200


@pytest.mark.parametrize("digest", ["%C3%A9", "%E2%9C%93" * 4, "%FF"])
async def test_a_non_ascii_body_sha256_is_a_401_not_a_500(make_gateway, digest):
    """The public route: any signature header and a non-ASCII bodySHA256 in the URL."""
    gateway = await make_gateway(providers={"twilio": {"secrets": [TOKEN]}})
    resp = await gateway.client.post(
        gateway.url("twilio") + f"?bodySHA256={digest}", data=b"{}", headers={"X-Twilio-Signature": "abc"}
    )
    answer = await resp.json()
    assert (resp.status, answer["error"]["code"]) == (401, "invalid_signature"), answer
