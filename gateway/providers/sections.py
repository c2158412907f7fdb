"""The sections of a provider entry (``signature``, ``timestamp``, ``payment``, ``rate_limit``),
each key declared once; the entry itself is ``gateway/providers/entry.py``, which says how all of
it is read, checked and documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.declare.fields import setting
from gateway.providers import readers
from gateway.providers.entry_schema import STATUSES, ref
from gateway.providers.schemes import NAMES
from gateway.providers.spec import ASYMMETRIC, FieldRef, Template

ALGORITHMS = ("hmac-sha1", "hmac-sha256", "hmac-sha512", "token", *ASYMMETRIC)
ENCODINGS = ("hex", "base64", "base64url")
SECRET_ENCODINGS = ("raw", "base64", "whsec", "hex")
REFS = ref("fieldRefs")
NONE = "none"


def ref_to(what: str, shown_doc: str = NONE) -> Any:
    """A field reference (``event_id``, ``payment.status``...): optional, none by default."""
    return setting((), what, parse=readers.refs, schema=REFS, shown_doc=shown_doc)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitEntry:
    """A GCRA rate limit (``rate_limit``, ``rate_limits.per_source``, ``rate_limits.per_provider``)."""

    rate: float = setting(doc="Requests per second, on average (GCRA).")
    burst: int | None = setting(None, "Requests allowed at once (default: `rate`, at least 1).")


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKeyEntry:
    algorithm: str = setting(doc="The public-key algorithm.", choices=ASYMMETRIC)
    signature_keys: tuple[str, ...] = setting((), "Style `list`: the items that hold its signatures.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureEntry:
    """How the provider signs. In a preset-based entry, only the keys you override."""

    algorithm: str = setting(
        doc="`hmac-sha1`, `hmac-sha256` or `hmac-sha512` (with `secrets`); `token` (GitLab: the header is the "
        "secret itself, compared in constant time with each secret; `payload` and `encoding` are unused); "
        "`ed25519`, `ecdsa-p256-sha256` (a DER signature) or `rsa-sha256` (PKCS#1 v1.5), with `public_keys`.",
        choices=ALGORITHMS,
    )
    header: str = setting(
        "",
        "The header that carries the signature. Sent twice: 401 (see `repeated`). Not used by the `adyen` and "
        "`mailgun` canonicalizers, whose signatures are in the body.",
        shown_doc="*required*",
    )
    repeated: str = setting(
        "refuse",
        "`any`: the header may come several times (Mollie sends one per active secret during a rotation); every "
        "copy is read, a malformed one skipped, and any may match.",
        choices=("refuse", "any"),
    )
    public_key: PublicKeyEntry | None = setting(
        None,
        "A public-key scheme beside the HMAC one: `{algorithm: ed25519, signature_keys: [v1a]}` (Standard "
        "Webhooks: `v1` items are HMAC with `secrets`, `v1a` items Ed25519 with `public_keys`).",
        shown_doc=NONE,
    )
    certificate_header: str = setting(
        "",
        "A header with the URL of the signing certificate (PayPal `PAYPAL-CERT-URL`). Used when no public key is "
        "configured: fetched over https only, only from `certificate_hosts` (exact host, no port or credentials, "
        "no redirects), at most 64 KiB in 5 s, cached by URL; an expired certificate is refused. A URL outside "
        "the list is refused (401) without any request.",
        shown_doc=NONE,
    )
    certificate_hosts: tuple[str, ...] = setting(
        (),
        "The hosts certificates may be fetched from (PayPal: `api.paypal.com`, `api.sandbox.paypal.com`).",
        parse=readers.hosts,
        schema={"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9.-]+$"}},
        shown_doc=NONE,
    )
    encoding: str = setting(
        "hex",
        "How the signature is written: `hex` (lowercase), `base64` (padded), `base64url` (padded or not). Only "
        "the canonical spelling is accepted, as the providers' own SDKs compare it.",
        choices=ENCODINGS,
    )
    style: str = setting(
        "plain",
        "`plain`: the whole header (after `prefix`) is one signature. `list`: the header is items separated by "
        "`item_separator`, each `key` `kv_separator` `value`; values under `signature_keys` are signatures (any "
        "may match), the value under `timestamp_key` is the timestamp. Items with other keys are ignored.",
        choices=("plain", "list"),
    )
    prefix: str = setting(
        "",
        "`plain` only: a literal the header starts with, removed before decoding (`sha256=` for GitHub, `v0=` for "
        "Slack). A header without it is 401, unless `prefix_optional`.",
        parse=readers.raw_text,
        schema={"type": "string"},
        shown="",
        shown_doc='`""`',
    )
    prefix_optional: bool = setting(
        False,
        "Accept the signature without its `prefix` too, as the provider's own library does (Mollie's "
        "`SignatureValidator` strips `sha256=` only when present).",
    )
    item_separator: str = setting(
        ",",
        '`list` only: between items. Quote a space: `" "` (Standard Webhooks).',
        parse=readers.raw_text,
        schema=ref("separator"),
    )
    kv_separator: str = setting(
        "=",
        "`list` only: between key and value (`,` for Standard Webhooks' `v1,<sig>`).",
        parse=readers.raw_text,
        schema=ref("separator"),
    )
    signature_keys: tuple[str, ...] = setting(
        (), "`list` only: the keys whose values are signatures (`[v1]`).", shown_doc="*required for `list`*"
    )
    timestamp_key: str = setting(
        "",
        "`list` only: the key whose value is the signed timestamp (`t` for Stripe); use with "
        "`timestamp.from: signature`.",
        shown="",
        shown_doc='`""`',
    )
    id_header: str = setting(
        "",
        "The header `{id}` stands for in `payload` (`webhook-id`). Required when `payload` uses `{id}`.",
        shown="",
        shown_doc='`""`',
    )
    payload: Template = setting(
        "{body}",
        "The signed bytes as a template (see below): `{body}`, `{timestamp}`, `{id}`, `{url}`, `{webhook_id}`, "
        "`{header:Name}`; anything else is literal.",
        parse=readers.template,
        schema={"type": "string", "pattern": "^([^{}]|\\{(body|timestamp|id|url|webhook_id|header:[^{}]+)\\})*$"},
    )
    canonicalizer: str = setting(
        "",
        "Code for schemes a template cannot express. Body canonicalizers replace `{body}`: `sorted_json` "
        "(NOWPayments: the JSON re-serialized with sorted keys, as Node writes it), `crc32` (PayPal: the body's "
        "CRC32 as an unsigned decimal). Request canonicalizers build the whole signed string (`payload` is then "
        "documentation): `twilio` (the URL, with and without its default port, + the POST parameters sorted by "
        "name as name+value, repeated values sorted and taken once; for a JSON body the URL's `bodySHA256` must "
        "be the body's hex SHA-256 and the URL alone is signed; `X-Twilio-Webhooks-Signature-Settings: "
        "algorithm=HMAC_SHA256` selects HMAC-SHA256), `adyen` (every NotificationRequestItem's "
        "`additionalData.hmacSignature`, over `pspReference:originalReference:merchantAccountCode:"
        "merchantReference:value:currency:eventCode:success`; all items must verify, under one key), `mailgun` "
        "(the body's `signature` object: HMAC of `timestamp` + `token`, in `signature` or `parent-signature`; its "
        "timestamp is `timestamp.from: signature`).",
        parse=readers.canonicalizer,
        schema={"enum": [*sorted(NAMES), ""]},
        shown="",
        shown_doc=NONE,
    )
    secret_encoding: str = setting(
        "raw",
        "How the configured secrets are written: `raw` (the bytes as given), `base64`, `whsec` (`whsec_` + "
        "base64, as Standard Webhooks and Svix hand them out; the prefix is optional), or `hex` (Adyen's HMAC "
        "key). A secret that does not decode is a config error naming the secret's source, not its value.",
        choices=SECRET_ENCODINGS,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TimestampEntry:
    """The signed timestamp (replay protection)."""

    source: str = setting(
        "header",
        "`header`: its own header; `signature`: the `timestamp_key` item of a `list` signature (or the timestamp "
        "a request canonicalizer reads, Mailgun's `signature.timestamp`); `json`: a field of the signed JSON body "
        "(Linear's `webhookTimestamp`), read only after the signature is verified.",
        key="from",
        choices=("header", "signature", "json"),
    )
    header: str = setting(
        "",
        "The timestamp header (`X-Slack-Request-Timestamp`, `webhook-timestamp`).",
        shown_doc="*required with `from: header`*",
    )
    path: tuple[str | int, ...] = setting(
        (),
        "The body field, as a path (`webhookTimestamp`, `meta.sent_at`).",
        parse=readers.json_path,
        schema=ref("fieldPath"),
        shown_doc="*required with `from: json`*",
    )
    format: str = setting(
        "unix",
        "`unix` (seconds), `unix_ms` (milliseconds) or `iso8601` (with a zone).",
        choices=("unix", "unix_ms", "iso8601"),
    )
    tolerance: float = setting(
        300,  # seconds; an int, as the docs and the schema show it
        "Seconds the signed time may be from the gateway's clock, in either direction. Outside it: 401 "
        "`stale_timestamp` (only reported for a correctly signed request).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentEntry:
    """Normalized payment fields of the CloudEvent (see docs/events.md)."""

    types: tuple[str, ...] = setting(
        (),
        "`fnmatch` patterns of event types that carry a payment (`payment_intent.*`, `orders/*`); other events "
        "get `payment: null`.",
        shown_doc="every event",
    )
    id: tuple[FieldRef, ...] = setting(
        doc="Reference to the payment id; without a value `payment` is null.", parse=readers.refs, schema=REFS
    )
    status: tuple[FieldRef, ...] = ref_to("Reference to the provider's status.")
    status_map: dict[str, str] | None = setting(
        None,
        "Provider status → normalized status: `pending`, `processing`, `partial`, `completed`, `failed`, "
        "`refunded`, `expired`, `cancelled`. An unmapped status becomes `unknown`.",
        parse=readers.status_map,
        schema={"type": "object", "additionalProperties": {"enum": STATUSES}},
        shown_doc="`{}`",
    )
    amount: tuple[FieldRef, ...] = ref_to("Reference to the amount (a number or a numeric string).")
    amount_unit: str = setting(
        "major",
        "`major`: as given. `minor`: integer minor units (cents), scaled by the currency's exponent (0 for JPY, 3 "
        "for BHD, else 2).",
        choices=("major", "minor"),
    )
    currency: tuple[FieldRef, ...] = ref_to("Reference to the currency code (upper-cased in the event).")
