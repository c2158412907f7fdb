"""Request canonicalizers: signed payloads built from more than the body, chosen by name in YAML.

Each one reads the request and returns the signatures it carries and the candidate bytes they
sign (``SignedPart``); the generic verifier decodes the signatures, tries every configured key and
checks the timestamp. All parts must verify under the same key (Adyen signs each item of a batch).
Like the body canonicalizers, calling one with the body alone gives what dedup hashes for an
event without an id: the body itself.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

from gateway.errors import Rejection
from gateway.providers.request import SignedRequest


@dataclass(frozen=True, slots=True)
class SignedPart:
    """Signatures as sent (the verifier decodes them) and the payloads any of them may sign."""

    signatures: tuple[str, ...]
    payloads: tuple[bytes, ...]
    algorithm: str = ""  # overrides the spec's algorithm (Twilio's HMAC-SHA256 shared keys)


@dataclass(frozen=True, slots=True)
class Signed:
    parts: tuple[SignedPart, ...]
    timestamp: str | None = None  # the signed timestamp, when the scheme carries one


class RequestScheme:
    """Base of the request canonicalizers; ``describe`` is what docs show as the signed payload."""

    name = ""
    describe = ""
    #: the signature is in a header (named by signature.header), not in the body
    uses_header = True
    carries_timestamp = False

    def __call__(self, body: bytes) -> tuple[bytes, ...]:
        return (body,)

    def parse(self, request: SignedRequest, header: str) -> Signed:
        raise NotImplementedError


class Twilio(RequestScheme):
    """https://www.twilio.com/docs/usage/webhooks/webhooks-security: HMAC (SHA-1 with the Auth
    Token, or SHA-256 with a shared key when X-Twilio-Webhooks-Signature-Settings says so) of the
    full URL followed by each POST parameter, sorted by name, as name+value. A JSON body is not in
    the string: the URL's ``bodySHA256`` parameter is the hex SHA-256 of the body instead.

    As ``twilio.request_validator.RequestValidator``: the URL with and without its default port,
    repeated parameter values sorted and taken once, blank values kept.
    """

    name = "twilio"
    describe = "URL + sorted form params (name+value); JSON: URL with bodySHA256"
    settings_header = "X-Twilio-Webhooks-Signature-Settings"
    algorithms: ClassVar[dict[str, str]] = {"HMAC_SHA1": "hmac-sha1", "HMAC_SHA256": "hmac-sha256"}

    def parse(self, request: SignedRequest, header: str) -> Signed:
        signature = request.header(header)
        algorithm = self._algorithm(request.optional_header(self.settings_header))
        query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
        if "bodySHA256" in query:
            if not hmac.compare_digest(hashlib.sha256(request.body).hexdigest(), query["bodySHA256"][0]):
                raise Rejection("invalid_signature", "the body does not match the URL's bodySHA256")
            params = ""
        else:
            params = self._params(request.body)
        forms = (url + params for url in _port_forms(request.url))
        payloads = tuple(dict.fromkeys(form.encode("utf-8", "surrogateescape") for form in forms))
        return Signed((SignedPart((signature,), payloads, algorithm),))

    def _algorithm(self, settings: str | None) -> str:
        for part in (settings or "").split(","):
            name, sep, value = part.partition("=")
            if sep and name.strip() == "algorithm" and value.strip():
                found = self.algorithms.get(value.strip().upper())
                if found is None:
                    raise Rejection("invalid_signature", f"{self.settings_header} names an unsupported algorithm")
                return found
        return "hmac-sha1"

    @staticmethod
    def _params(body: bytes) -> str:
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


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


class Adyen(RequestScheme):
    """https://docs.adyen.com/development-resources/webhooks/secure-webhooks/verify-hmac-signatures:
    per NotificationRequestItem, base64 HMAC-SHA256 (hex key) of
    ``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success``
    in ``additionalData.hmacSignature``. Every item of a batch must verify (``Adyen.util`` checks
    only the first: an unsigned item appended to a signed one would pass it).

    Platform webhooks (Balance Platform, Management API) sign the raw body instead: the same
    base64 HMAC-SHA256 with a hex key, in the ``HmacSignature`` header (``Adyen.util``'s
    ``is_valid_hmac_payload``). A request carrying that header is verified that way, else by
    its items: one ``adyen`` entry takes both (list both HMAC keys under ``secrets``)."""

    name = "adyen"
    describe = "per item: pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success; platform webhooks: the body, signature in HmacSignature"  # noqa: E501
    uses_header = False
    platform_header = "HmacSignature"
    fields = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")
    tail = ("eventCode", "success")

    def parse(self, request: SignedRequest, header: str) -> Signed:
        platform = request.optional_header(self.platform_header)
        if platform is not None:
            return Signed((SignedPart((platform,), (request.body,)),))
        items = _json_object(request.body).get("notificationItems")
        if not isinstance(items, list) or not items:
            raise Rejection("missing_signature", "the body has no notificationItems")
        return Signed(tuple(self._part(entry) for entry in items))

    def _part(self, entry: Any) -> SignedPart:
        item = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            raise Rejection("invalid_signature", "a notification item is not a NotificationRequestItem")
        extra = item.get("additionalData")
        signature = extra.get("hmacSignature") if isinstance(extra, dict) else None
        if not signature:
            raise Rejection("missing_signature", "a notification item has no additionalData.hmacSignature")
        if not isinstance(signature, str):
            raise Rejection("invalid_signature", "additionalData.hmacSignature is not a string")
        amount: dict[str, Any] = item["amount"] if isinstance(item.get("amount"), dict) else {}
        values = [item.get(k) for k in self.fields] + [amount.get("value"), amount.get("currency")]
        values += [item.get(k) for k in self.tail]
        forms = itertools.product(*(_adyen_text(v) for v in values))
        payloads = tuple(dict.fromkeys(":".join(form).encode("utf-8", "surrogatepass") for form in forms))
        return SignedPart((signature,), payloads)


def _adyen_text(value: Any) -> tuple[str, ...]:
    """A field as the signer wrote it: absent or null as "", a boolean as Java ("true") or Python
    ("True", what Adyen's Python library signs) spells it; Adyen itself sends strings."""
    if value is None:
        return ("",)
    if isinstance(value, bool):
        return ("true", "True") if value else ("false", "False")
    if isinstance(value, dict | list):
        return (json.dumps(value),)
    return (str(value),)


class Mailgun(RequestScheme):
    """https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks: the
    body's ``signature`` object holds ``timestamp``, ``token`` and ``signature``, the hex
    HMAC-SHA256 (webhook signing key) of timestamp + token; ``parent-signature``, with the
    primary account's key, for a subaccount's domain. ``event-data`` is NOT signed: the event id
    is ``event-data.id`` (a retry carries a new token), and dedup remembers the signed timestamp +
    token beside it (``dedup_signed_content``), so a captured signature cannot be replayed with
    other data."""

    name = "mailgun"
    describe = "signature.timestamp + signature.token (in the body)"
    uses_header = False
    carries_timestamp = True

    def parse(self, request: SignedRequest, header: str) -> Signed:
        block = _json_object(request.body).get("signature")
        if not isinstance(block, dict):
            raise Rejection("missing_signature", "the body has no signature object")
        timestamp, token = block.get("timestamp"), block.get("token")
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)
        if not isinstance(timestamp, str) or not isinstance(token, str) or not timestamp or not token:
            raise Rejection("invalid_signature", "signature.timestamp and signature.token must be strings")
        found = (block.get("signature"), block.get("parent-signature"))
        signatures = tuple(s for s in found if isinstance(s, str) and s)
        if not signatures:
            raise Rejection("missing_signature", "the body's signature object has no signature")
        payload = (timestamp + token).encode("utf-8", "surrogatepass")
        return Signed((SignedPart(signatures, (payload,)),), timestamp)


SCHEMES: dict[str, RequestScheme] = {s.name: s for s in (Twilio(), Adyen(), Mailgun())}
