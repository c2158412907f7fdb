"""The keys of a provider entry (``providers.<name>`` and the catalog YAML), each declared once.

Like the gateway's settings (``gateway/settings/model.py``), each key is a dataclass field with
its default, its doc and how it is checked (``setting(...)``); its sections are declared in
``gateway/providers/sections.py``. The generic reader (``gateway/declare/read.py``) reads them,
``gateway/providers/parse.py`` adds the checks that tie keys together and builds the frozen
``ProviderSpec``, and ``python -m gateway.settings.schema --write`` generates the provider part of
``config/gateway.schema.json`` and the provider tables of docs/configuration.md from here. A key
whose value needs code names its reader (``parse=``, ``gateway/providers/readers.py``) and that
value's JSON Schema (``schema=``, ``gateway/providers/entry_schema.py``). A default that is
``None`` here and written as another key in the docs comes from the gateway-wide settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.addresses import Network
from gateway.declare.fields import setting
from gateway.providers import readers
from gateway.providers.entry_schema import ref
from gateway.providers.sections import NONE, PaymentEntry, RateLimitEntry, SignatureEntry, TimestampEntry, ref_to
from gateway.providers.spec import FieldRef, HandshakeSpec

BODY_KINDS = ("json", "form", "any")
ICON = "🔔"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderEntry:
    """One provider: a catalog entry plus overrides, or fully inline."""

    preset: str = setting(
        "", "The catalog entry to inherit (`null`: none).", shown_doc="the catalog entry of the same name"
    )
    display_name: str = setting("", "Shown in `GET .../providers/` and the dashboard.", shown_doc="the name")
    icon: str = setting(ICON, "An emoji or short text, for the dashboard.")
    docs: str = setting(
        "",
        "A link to the provider's signature documentation (shown in `GET .../providers/`).",
        schema={"type": "string", "minLength": 1, "format": "uri"},
        shown_doc=NONE,
    )
    tested_with: str = setting("", "What the scheme was verified against (documentation only).", shown_doc=NONE)
    source: str = setting("", "The CloudEvent `source`.", shown_doc="`webhook-gateway/{name}`")
    body: str = setting(
        "json",
        "`json`: the body must be strict JSON (400 `invalid_json` otherwise); `form`: "
        "`application/x-www-form-urlencoded` (400 `invalid_body` if malformed); `any`: a form when the "
        "Content-Type says so, JSON when the body starts with `{` or `[`, otherwise raw text.",
        choices=BODY_KINDS,
    )
    secrets: tuple[str, ...] = setting(
        (),
        "The secrets, see [Secrets](#secrets): a literal, `${ENV_VAR}` or `file:/path` each; every one is tried, "
        "in order (rotation).",
        by_loader=True,
        schema=ref("secrets"),
        shown_doc="*required when signed*",
    )
    signature: SignatureEntry | None = setting(
        None,
        "The signature scheme, below; `null` drops an inherited one (then `allow_unsigned: true` is required).",
        shown_doc="*required unless `allow_unsigned`*",
    )
    timestamp: TimestampEntry | None = setting(None, "The signed timestamp (replay protection), below.", shown_doc=NONE)
    allow_unsigned: bool = setting(
        False,
        "Accept a provider with **no** `signature` at all. Off by default: a provider without a scheme is a config "
        "error. When on, the gateway warns at every start, and anyone who can reach the URL can post events: pair "
        "it with `ip_allowlist`. It does not turn verification off for a provider that has a scheme (a catalog "
        "entry keeps its scheme unless you set `signature: null`).",
    )
    event_id: tuple[FieldRef, ...] = ref_to(
        "Where the event id is: the dedup key and the CloudEvent `id`.", "none (the SHA-256 of the body)"
    )
    event_type: tuple[FieldRef, ...] = ref_to("Where the event type is.")
    payment: PaymentEntry | None = setting(None, "How to normalize payment fields, below.", shown_doc=NONE)
    max_body_bytes: int | None = setting(None, "Largest body for this provider.", shown_doc="`limits.max_body_bytes`")
    ip_allowlist: tuple[Network, ...] = setting(
        (),
        "Only these client IPs or CIDR networks may post (403 `ip_not_allowed` otherwise). Checked against the "
        "client address as derived with `trusted_proxies`.",
        parse=readers.networks,
        schema=ref("networks"),
        shown_doc="none (any address)",
    )
    rate_limit: RateLimitEntry | None = setting(
        None, "`{rate, burst}` for this provider's verified requests.", shown_doc="`rate_limits.per_provider`"
    )
    dedup_ttl: float | None = setting(
        None, "Seconds an accepted event id of this provider is remembered.", shown_doc="`dedup.ttl`"
    )
    redact: tuple[tuple[str | int, ...], ...] = setting(
        (),
        'JSON paths masked as `"[REDACTED]"` in the stored copy (event log): `data.object.billing_details.email`, '
        "`items[*].card`, `customer.*` (`[n]` or `[*]` for list items, `*` for any key). The upstream still "
        "receives the full payload; the stored envelope is masked once delivered, so a replay of a delivered event "
        "sends the masked values (normalized `payment` fields are kept).",
        parse=readers.redact,
        schema={"anyOf": [ref("redactPath"), {"type": "array", "items": ref("redactPath")}]},
        shown_doc=NONE,
    )
    sample: Any = setting(
        None,
        "The body `webhook-gateway send` signs and posts: a JSON value, or `{headers: {...}, body: ...}`. "
        "`{{random}}`, `{{random_int}}`, `{{uuid}}`, `{{now}}` and `{{now_ms}}` are filled anew each time. With "
        "`Content-Type: application/x-www-form-urlencoded` in `headers`, the body is sent as a form (Twilio).",
        parse=readers.raw_value,
        schema={},
        shown_doc="a minimal JSON event",
    )
    public_keys: tuple[str, ...] = setting(
        (),
        "Public keys for an asymmetric `algorithm` (`ed25519`, `ecdsa-p256-sha256`, `rsa-sha256`), same forms as "
        "secrets (literal, `${ENV}`, `file:/path`). Accepted spellings: PEM (a public key or a certificate), hex "
        "of a raw Ed25519 key (Discord), base64 of a raw Ed25519 key or of a DER key (SendGrid's verification "
        "key), `whpk_` + base64 (Standard Webhooks). Checked at load: a key of the wrong type or curve, or an RSA "
        "key under 2048 bits, is a config error. Several for rotation, tried after the `secrets`.",
        by_loader=True,  # read with the signature's algorithm (parse.py)
        schema={"type": "array", "minItems": 1, "items": ref("publicKey")},
        shown_doc=NONE,
    )
    certificate: str = setting(
        "",
        "A certificate (PEM, or `file:/path`) whose key verifies the signatures, added to `public_keys`. For "
        "PayPal it pins the signing certificate: nothing is fetched, verification works offline.",
        by_loader=True,  # read with the signature's algorithm (parse.py)
        schema=ref("publicKey"),
        shown_doc=NONE,
    )
    webhook_id: str = setting(
        "",
        "What `{webhook_id}` stands for in the signed payload (PayPal: the webhook's id in the developer "
        "dashboard). Required when the payload uses it.",
        shown_doc=NONE,
    )
    handshake: tuple[HandshakeSpec, ...] = setting(
        (),
        "Requests the gateway answers itself, below: one mapping or a list of them.",
        parse=readers.handshakes,
        schema={"anyOf": [ref("handshake"), {"type": "array", "items": ref("handshake")}]},
        shown_doc=NONE,
    )
    dedup_signed_content: bool | None = setting(
        None,
        "Also remember the SHA-256 of the signed content (the payloads the signatures matched, each once) for "
        "`dedup_ttl`, claimed, committed and released with the event id. A second event id over the same signed "
        "bytes is a replay: answered 200 `duplicate`, not forwarded, counted in "
        "`webhook_gateway_signed_content_replays_total`. On by default where the id is not covered by the "
        "signature: GitHub, Shopify, Bitbucket, Razorpay, Linear (ids from unsigned headers), Twilio (idempotency "
        "header), Adyen and Mailgun (their bodies are only partly signed), PayPal (it signs only the body's CRC32, "
        "which whitespace can be reshuffled to keep). A provider that legitimately sends "
        "byte-identical signed content under two ids would see the second dropped: set `false` for it. With Redis "
        "it costs two more store calls per new event (the digest's claim and commit).",
        shown_doc="`true` where the event id is not signed, else `false`",
    )
    shadow: bool = setting(
        False,
        "Shadow mode, for rolling verification out on live traffic: a request that fails verification is counted "
        "(`webhook_gateway_shadow_rejections_total{provider,code}`), logged, and forwarded anyway with "
        "`data.verified: false`. Verified requests carry `data.verified: true`. `run` warns at start for every "
        "shadow provider. Handshakes are never answered for an unverified request, and dedup still applies (an "
        "unsigned request can claim an event id while shadow mode is on).",
    )
    url_from_forwarded_headers: bool | None = setting(
        None,
        "For schemes that sign the URL (`{url}`, Twilio, Square): take the scheme and host from "
        "`X-Forwarded-Proto` and `X-Forwarded-Host` (the last value of each, the one the nearest proxy wrote) when "
        "the direct peer is in `trusted_proxies`; otherwise, and for any other peer, `public_url` (its path prefix "
        "is kept). The path and query are the request's, as received.",
        shown_doc="`url_from_forwarded_headers` (`false`)",
    )
    rotation_warn_after: float | None = setting(
        None,
        "`webhook-gateway check` warns about a non-first key of this provider (the one being retired) that has not "
        "verified a stored event for this long: seconds, or `90m`, `12h`, `7d`, `2w`. Needs the PostgreSQL event "
        "store (each stored event records which key verified it); otherwise `check` says the data is not "
        "available.",
        parse=readers.duration,
        schema=ref("duration"),
        shown_doc="`rotation_warn_after` (`7d`)",
    )
    min_secret_bytes: int = setting(
        0,
        "The shortest secret, in bytes after `secret_encoding`, that the provider documents. `webhook-gateway "
        "check` warns about a shorter secret (guessable, or pasted cut short) with its source and length, never "
        "its value; the config still loads. Catalog data where the provider documents a length: "
        '`standard-webhooks` (24, the spec\'s "at least 24 bytes").',
        minimum=0,
        shown_doc="`0` (none)",
    )
