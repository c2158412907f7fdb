"""Bitbucket: ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with the
webhook's secret (SHA-256 under the header name GitHub uses for SHA-1); no timestamp.
``X-Request-UUID`` (Cloud) or ``X-Request-Id`` (Data Center) names the delivery, ``X-Event-Key``
the event.

No official Python SDK: the oracle is an independent implementation of "Manage webhooks"
(secrets) in Bitbucket's docs.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "bitbucket-webhook-secret-0ld"
ROTATED = "bitbucket-webhook-secret-n3w"
REQUEST_UUID = "3f2b5c1e-7d4a-4200-9c1b-2e8f6a0d4b7c"
EVENT = {
    "actor": {"display_name": "Zoë Octocat", "type": "user"},
    "repository": {"full_name": "acme/widgets", "type": "repository"},
    "push": {"changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": "4200af00"}}}]},
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def bitbucket_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


SCHEME = Scheme(
    name="bitbucket",
    secrets=(SECRET, ROTATED),
    oracle=bitbucket_doc,
    event=event,
    signature_header="X-Hub-Signature",
    context_headers={"X-Request-UUID": REQUEST_UUID, "X-Event-Key": "repo:push"},
    expect_id=REQUEST_UUID,
    expect_type="repo:push",
)


class TestContract(PresetContract):
    scheme = SCHEME


def test_github_style_sha1_is_refused(pv):
    provider = make_provider(pv, SCHEME, (SECRET,))
    sha1 = "sha1=" + hmac.new(SECRET.encode(), event(NOW), hashlib.sha1).hexdigest()
    assert outcome(provider, {"X-Hub-Signature": sha1}, event(NOW)) == "invalid_signature"


async def test_data_center_request_id_is_the_dedup_key(make_gateway):
    gateway = await make_gateway(providers={"bitbucket": {"secrets": [SECRET]}})
    body = event(NOW)
    headers = {"Content-Type": "application/json", "X-Request-Id": "dc-request-1", "X-Event-Key": "repo:refs_changed",
               **bitbucket_doc(SECRET, body, NOW)}  # fmt: skip
    answer = await (await gateway.client.post(gateway.url("bitbucket"), data=body, headers=headers)).json()
    assert answer["event_id"] == "dc-request-1"
    assert gateway.upstream.events[-1].event["data"]["event_type"] == "repo:refs_changed"
