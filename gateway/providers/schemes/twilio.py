"""Twilio: https://www.twilio.com/docs/usage/webhooks/webhooks-security.

HMAC (SHA-1 with the Auth Token, or SHA-256 with a shared key when
X-Twilio-Webhooks-Signature-Settings says so) of the full URL followed by each POST parameter,
sorted by name, as name+value. A JSON body is not in the string: the URL's ``bodySHA256``
parameter is the hex SHA-256 of the body instead.

As ``twilio.request_validator.RequestValidator``: the URL with and without its default port,
repeated parameter values sorted and taken once, blank values kept.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

from gateway.errors import Rejection
from gateway.providers.request import SignedRequest
from gateway.providers.schemes.base import DIGESTS, BodyScheme, Signed, encode, header_of
from gateway.providers.spec import ProviderSpec
from gateway.secrets import same_text

FORM = "application/x-www-form-urlencoded"


class Twilio(BodyScheme):
    name = "twilio"
    describe = "URL + sorted form params (name+value); JSON: URL with bodySHA256"
    signs_url = True
    settings_header = "X-Twilio-Webhooks-Signature-Settings"
    algorithms: ClassVar[dict[str, str]] = {"HMAC_SHA1": "hmac-sha1", "HMAC_SHA256": "hmac-sha256"}

    def parse(self, request: SignedRequest, header: str) -> tuple[tuple[Signed, ...], str | None]:
        signature = request.header(header)
        algorithm = self._algorithm(request.optional_header(self.settings_header))
        query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
        if "bodySHA256" in query:
            if not same_text(query["bodySHA256"][0], hashlib.sha256(request.body).hexdigest()):
                raise Rejection("invalid_signature", "the body does not match the URL's bodySHA256")
            params = ""
        else:
            params = form_params(request.body)
        forms = (url + params for url in _port_forms(request.url))
        payloads = tuple(dict.fromkeys(form.encode("utf-8", "surrogateescape") for form in forms))
        return (Signed((signature,), payloads, algorithm),), None

    def sign_headers(
        self, provider: ProviderSpec, body: bytes, url: str, key: bytes, now: float, out: dict[str, str]
    ) -> None:
        spec = provider.signature
        assert spec is not None
        is_form = _header_or(out, "Content-Type").startswith(FORM)
        params = form_params(body) if is_form else ""
        mac = hmac.new(key, (url + params).encode(), DIGESTS[spec.algorithm]).digest()
        out[spec.header] = encode(spec.encoding, mac)

    def _algorithm(self, settings: str | None) -> str:
        for part in (settings or "").split(","):
            name, sep, value = part.partition("=")
            if sep and name.strip() == "algorithm" and value.strip():
                found = self.algorithms.get(value.strip().upper())
                if found is None:
                    raise Rejection("invalid_signature", f"{self.settings_header} names an unsupported algorithm")
                return found
        return "hmac-sha1"


def form_params(body: bytes) -> str:
    """The signed string's tail: each form parameter, sorted by name, as name+value."""
    if not body:
        return ""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise Rejection("invalid_signature", "the body is not a form and the URL has no bodySHA256") from None
    values: dict[str, set[str]] = {}
    for key, value in pairs:
        values.setdefault(key, set()).add(value)
    return "".join(key + value for key in sorted(values) for value in sorted(values[key]))


def _port_forms(url: str) -> tuple[str, ...]:
    """The URL without and with its port (Twilio's signing is inconsistent about the default port)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return (url,)
    host = parts.netloc.rsplit("@", 1)[-1]
    bare = host if port is None else host[: -len(f":{port}")]
    default = 443 if parts.scheme == "https" else 80
    return (
        parts._replace(netloc=bare).geturl(),
        parts._replace(netloc=f"{bare}:{port if port is not None else default}").geturl(),
    )


def _header_or(headers: dict[str, str], name: str) -> str:
    try:
        return header_of(headers, name)
    except KeyError:
        return ""
