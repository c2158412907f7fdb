"""The JSON Schema of the provider values that are read by code (``parse=`` readers), and of the
rules that tie several provider keys together.

``gateway/providers/entry.py`` names these in its declarations (``schema=``); the schema
generator (``gateway/settings/schema.py``) puts them under ``$defs`` beside the sections it
derives from the declarations. Each fragment sits here once, next to nothing else.
"""

from __future__ import annotations

from typing import Any

from gateway.providers.schemes import SCHEMES


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def nullable(name: str) -> dict[str, Any]:
    return {"anyOf": [ref(name), {"type": "null"}]}


#: Strings or a list of them (``r.strings``).
STRINGS: dict[str, Any] = {
    "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string", "minLength": 1}}]
}
#: Schemes in code whose signature is in the body: ``signature.header`` is not needed for them.
HEADERLESS = sorted(name for name, scheme in SCHEMES.items() if not scheme.uses_header)
STATUSES = ["pending", "processing", "partial", "completed", "failed", "refunded", "expired", "cancelled"]


DEFS: dict[str, Any] = {
    "secret": {
        "type": "string",
        "minLength": 1,
        "description": (
            "A secret: a literal, `${ENV_VAR}` (or `${ENV_VAR:-default}`) interpolated at load, or `file:/path` read "
            "at load (a Kubernetes Secret mount; trailing newlines are dropped)."
        ),
        "examples": ["${STRIPE_WEBHOOK_SECRET}", "file:/var/run/secrets/webhook-gateway/stripe"],
    },
    "secrets": {
        "type": "array",
        "minItems": 1,
        "items": {"$ref": "#/$defs/secret"},
        "description": "Every secret is tried, in order (rotation: add the new one, then remove the old one).",
    },
    "network": {
        "type": "string",
        "minLength": 1,
        "description": "An IP address or CIDR network, IPv4 or IPv6 (`203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`).",
    },
    "networks": {"type": "array", "items": {"$ref": "#/$defs/network"}},
    "fieldPath": {
        "type": "string",
        "pattern": "^[^.\\[\\]]+(\\[[0-9]+\\])*(\\.[^.\\[\\]]+(\\[[0-9]+\\])*)*$",
        "description": "A path into the parsed JSON (or form) body: `data.object.id`, `items[0].id`.",
    },
    "fieldRef": {
        "description": "Where a value is: a bare path (JSON), `{json: path}` or `{header: Name}`.",
        "oneOf": [
            {"$ref": "#/$defs/fieldPath"},
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["json"],
                "properties": {"json": {"$ref": "#/$defs/fieldPath"}},
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["header"],
                "properties": {
                    "header": {
                        "type": "string",
                        "minLength": 1,
                        "description": "A request header name (case-insensitive).",
                    }
                },
            },
        ],
    },
    "fieldRefs": {
        "description": "One reference or a list; the first that yields a non-empty value wins. `[]` means none.",
        "anyOf": [
            {"$ref": "#/$defs/fieldRef"},
            {"type": "array", "items": {"$ref": "#/$defs/fieldRef"}},
            {"type": "null"},
        ],
    },
    "redactPath": {
        "type": "string",
        "pattern": "^[^.\\[\\]]+(\\[([0-9]+|\\*)\\])*(\\.[^.\\[\\]]+(\\[([0-9]+|\\*)\\])*)*$",
        "description": "A dotted path; `[n]` or `[*]` for list items, `*` for any key.",
    },
    "separator": {"type": "string", "minLength": 1, "description": 'A literal separator; quote a space (`" "`).'},
    "publicKey": {
        "type": "string",
        "minLength": 1,
        "description": (
            "A public key: PEM (a key or a certificate), hex of a raw Ed25519 key (Discord), base64 of a raw Ed25519 "
            "key or of a DER key (SendGrid), `whpk_` + base64 (Standard Webhooks); a literal, `${ENV_VAR}` or "
            "`file:/path`."
        ),
        "examples": ["${DISCORD_PUBLIC_KEY}", "file:/etc/webhook-gateway/paypal-cert.pem"],
    },
    "condition": {
        "type": "object",
        "description": (
            "A test of a handshake: `{json: path}` or `{header: Name}`, and `equals: value` or `absent: true`."
        ),
        "properties": {
            "json": {"$ref": "#/$defs/fieldPath"},
            "header": {"type": "string", "minLength": 1},
            "equals": {},
            "absent": {"type": "boolean"},
        },
        "oneOf": [{"required": ["json"]}, {"required": ["header"]}],
    },
    "handshake": {
        "type": "object",
        "description": (
            "A request the gateway answers itself after verification (never forwarded): Slack url_verification, Zoom "
            "endpoint.url_validation, Twitch webhook_callback_verification, Discord PING."
        ),
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "when": {
                "anyOf": [
                    {"$ref": "#/$defs/condition"},
                    {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
                ]
            },
            "reply": {
                "type": "object",
                "description": (
                    "`json: {...}` or `text: ...` with `{json:path}`/`{header:Name}` filled in, and `status` (a 2xx, "
                    "default 200); nothing but a status answers with no body."
                ),
                "properties": {
                    "json": {},
                    "text": {"type": "string"},
                    "status": {"type": "integer", "minimum": 200, "maximum": 299},
                },
            },
            "responder": {
                "enum": ["zoom_url_validation"],
                "description": "A reply computed in code (Zoom's HMAC of plainToken).",
            },
        },
        "required": ["when"],
    },
    "duration": {
        "description": "Seconds, or a number with a unit: `90s`, `30m`, `12h`, `7d`, `2w`.",
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "string", "pattern": "^\\d+(\\.\\d+)?\\s*[smhdw]?$"},
        ],
    },
    "rateLimitOrOff": {"anyOf": [{"$ref": "#/$defs/rateLimit"}, {"const": False}, {"type": "null"}]},
}
#: An entry has something to verify with, or says it needs none.
SECRETS_OR_UNSIGNED: dict[str, Any] = {
    "anyOf": [
        {"required": ["secrets"]},
        {"required": ["allow_unsigned"], "properties": {"allow_unsigned": {"const": True}}},
        {"required": ["public_keys"]},
        {"required": ["certificate"]},
        {"required": ["webhook_id"]},
    ]
}


def provider_kinds(required: dict[str, list[str]]) -> dict[str, Any]:
    """The three kinds of entry: named like a catalog provider, ``preset: NAME``, or complete.

    ``required``: the keys each section (``signature``, ``payment``...) declares without a
    default; only a complete provider must have them, an entry on a preset inherits the rest."""
    complete = _complete(required)
    return {
        "completeProvider": {
            "description": "A provider described in full (no preset): a signature scheme, or `allow_unsigned: true`.",
            "allOf": [ref("provider"), *complete],
        },
        "secretsOrUnsigned": SECRETS_OR_UNSIGNED,
        "presetProvider": {
            "description": "An entry named like a catalog provider: inherits it; list only what you override.",
            "allOf": [ref("provider"), ref("secretsOrUnsigned")],
        },
        "customProvider": {
            "description": (
                "Any other name: `preset: NAME` to inherit a catalog entry, or a complete inline description."
            ),
            "allOf": [ref("secretsOrUnsigned")],
            "if": {"required": ["preset"], "properties": {"preset": {"type": "string"}}},
            "then": ref("provider"),
            "else": ref("completeProvider"),
        },
    }


def _complete(required: dict[str, list[str]]) -> list[dict[str, Any]]:
    """What the loader checks across keys of a complete provider, where JSON Schema can say it."""
    return [
        {
            "anyOf": [
                {"required": ["signature"], "properties": {"signature": {"type": "object"}}},
                {"required": ["allow_unsigned"], "properties": {"allow_unsigned": {"const": True}}},
            ]
        },
        {
            "properties": {
                "signature": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "required": required["signature"],
                            "properties": {"public_key": {"required": required["public_key"]}},
                            "if": {"required": ["style"], "properties": {"style": {"const": "list"}}},
                            "then": {"required": ["signature_keys"]},
                            "anyOf": [
                                {"required": ["header"]},
                                {
                                    "required": ["canonicalizer"],
                                    "properties": {"canonicalizer": {"enum": HEADERLESS}},
                                },
                            ],
                        },
                    ]
                },
                "timestamp": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "allOf": [
                                {
                                    "if": {
                                        "required": ["from"],
                                        "properties": {"from": {"enum": ["signature", "json"]}},
                                    },
                                    "else": {"required": ["header"]},
                                },
                                {
                                    "if": {"required": ["from"], "properties": {"from": {"const": "json"}}},
                                    "then": {"required": ["path"]},
                                },
                            ]
                        },
                    ]
                },
                "payment": {"anyOf": [{"type": "null"}, {"required": required["payment"]}]},
            }
        },
    ]
