"""Adyen: https://docs.adyen.com/development-resources/webhooks/secure-webhooks/verify-hmac-signatures.

Per NotificationRequestItem, base64 HMAC-SHA256 (hex key) of
``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success``
in ``additionalData.hmacSignature``. Every item of a batch must verify (``Adyen.util`` checks
only the first: an unsigned item appended to a signed one would pass it).

Platform webhooks (Balance Platform, Management API) sign the raw body instead: the same base64
HMAC-SHA256 with a hex key, in the ``HmacSignature`` header (``Adyen.util``'s
``is_valid_hmac_payload``). A request carrying that header is verified that way, else by its
items: one ``adyen`` entry takes both (list both HMAC keys under ``secrets``).
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
from typing import Any

from gateway.errors import Rejection
from gateway.providers.request import SignedRequest
from gateway.providers.schemes.base import DIGESTS, BodyScheme, Signed, json_object
from gateway.providers.spec import SignatureSpec

#: The signed fields, in order; ``amount.value`` and ``amount.currency`` come from the nested object.
FIELDS = (
    "pspReference", "originalReference", "merchantAccountCode", "merchantReference",
    "amount.value", "amount.currency", "eventCode", "success",
)  # fmt: skip


#: Items in one request: Adyen sends one per request today, and batches of a few before that.
MAX_ITEMS = 100


class Adyen(BodyScheme):
    name = "adyen"
    describe = (
        "per item: " + ":".join(f.removeprefix("amount.") for f in FIELDS) + "; platform webhooks: the body"
        ", signature in HmacSignature"
    )
    uses_header = False
    platform_header = "HmacSignature"

    def parse(self, request: SignedRequest, header: str) -> tuple[tuple[Signed, ...], str | None]:
        platform = request.optional_header(self.platform_header)
        if platform is not None:
            return (Signed((platform,), (request.body,)),), None
        items = json_object(request.body).get("notificationItems")
        if not isinstance(items, list) or not items:
            raise Rejection("missing_signature", "the body has no notificationItems")
        if len(items) > MAX_ITEMS:  # each costs an HMAC per key before any is known to be genuine
            raise Rejection("invalid_signature", f"more than {MAX_ITEMS} notificationItems in one request")
        return tuple(self._part(entry) for entry in items), None

    def _part(self, entry: Any) -> Signed:
        item = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            raise Rejection("invalid_signature", "a notification item is not a NotificationRequestItem")
        extra = item.get("additionalData")
        signature = extra.get("hmacSignature") if isinstance(extra, dict) else None
        if not signature:
            raise Rejection("missing_signature", "a notification item has no additionalData.hmacSignature")
        if not isinstance(signature, str):
            raise Rejection("invalid_signature", "additionalData.hmacSignature is not a string")
        # Two spellings for `success` only (a JSON boolean, as Java or Python writes it): for every
        # field they made 2**8 payloads per item, 1.1 million for a 1 MiB body of boolean items.
        values = zip(FIELDS, signed_values(item), strict=True)
        spellings = [_texts(v) if f == "success" else _texts(v)[:1] for f, v in values]
        forms = itertools.product(*spellings)
        payloads = tuple(dict.fromkeys(":".join(form).encode("utf-8", "surrogatepass") for form in forms))
        return Signed((signature,), payloads)

    def sign_body(self, spec: SignatureSpec, body: bytes, key: bytes, now: float) -> bytes:
        doc = json.loads(body)
        for entry in doc.get("notificationItems", []):
            item = entry["NotificationRequestItem"]
            message = ":".join(_texts(v)[0] for v in signed_values(item)).encode()
            mac = hmac.new(key, message, DIGESTS[spec.algorithm]).digest()
            item.setdefault("additionalData", {})["hmacSignature"] = base64.b64encode(mac).decode()
        return json.dumps(doc, separators=(",", ":")).encode()


def signed_values(item: dict[str, Any]) -> list[Any]:
    """The values of ``FIELDS`` in one item, as found (absent: None)."""
    amount = item["amount"] if isinstance(item.get("amount"), dict) else {}
    return [amount.get(f[7:]) if f.startswith("amount.") else item.get(f) for f in FIELDS]


def _texts(value: Any) -> tuple[str, ...]:
    """A field as the signer wrote it: absent or null as "", a boolean as Java ("true") or Python
    ("True", what Adyen's Python library signs) spells it; Adyen itself sends strings."""
    if value is None:
        return ("",)
    if isinstance(value, bool):
        return ("true", "True") if value else ("false", "False")
    if isinstance(value, dict | list):
        return (json.dumps(value),)
    return (str(value),)
