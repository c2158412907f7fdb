"""GitLab: ``X-Gitlab-Token: <the webhook's secret token>``, sent as is (GitLab signs nothing).
The gateway compares it with each configured token in constant time.

No official verifier exists: the oracle is GitLab's documented behaviour (the header carries the
token). There is no timestamp, so a captured request can be replayed: dedup by the event UUID.
"""

from __future__ import annotations

import json
import random

import pytest
from preset_contract import NOW, URL, PresetContract, Scheme, make_provider, outcome

from gateway.providers.signer import sign

SECRET, ROTATED = "glpat-webhook-token-0ld-Zq7", "glpat-webhook-token-n3w-Rt2"
EVENT_UUID = "f2d6e1b0-44b5-4e2e-9ff4-4200a1b2c3d4"
EVENT = {
    "object_kind": "push", "event_name": "push", "ref": "refs/heads/main", "user_name": "Jörg ✓",
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "total_commits_count": 4200,
    "project": {"id": 15, "path_with_namespace": "mike/diaspora"},
}  # fmt: skip


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def gitlab_send(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"X-Gitlab-Token": secret}


class TestContract(PresetContract):
    scheme = Scheme(
        name="gitlab",
        secrets=(SECRET, ROTATED),
        oracle=gitlab_send,
        event=event,
        signature_header="X-Gitlab-Token",
        context_headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": EVENT_UUID},
        expect_id=EVENT_UUID,
        expect_type="Push Hook",
    )

    def test_tampered_body_is_refused(self, pv):
        """A static token does not cover the body: GitLab's scheme cannot detect tampering (TLS
        must). The token still has to be right."""
        body, headers = self.scheme.delivery()
        provider = make_provider(pv, self.scheme)
        assert outcome(provider, headers, body.replace(b"4200", b"4201")) == "accepted:0"
        assert outcome(provider, {"X-Gitlab-Token": SECRET + "x"}, body) == "invalid_signature"

    def test_random_input_only_ever_yields_rejections(self, pv):
        """Random token headers (the body is not signed, so it is not fuzzed here)."""
        rng = random.Random("fuzz-gitlab")
        provider = make_provider(pv, self.scheme, self.scheme.secrets)
        for _ in range(500):
            size = rng.choice([0, 1, 26, 27, 28, 64, 300])
            value = rng.choice([
                rng.randbytes(size).decode("utf-8", "surrogateescape"),
                "".join(chr(rng.randrange(0x110000)) for _ in range(size)),
                SECRET[: rng.randrange(len(SECRET))],
            ])  # fmt: skip
            pairs = [("X-Gitlab-Token", value)] + ([("x-gitlab-token", SECRET)] if rng.random() < 0.3 else [])
            result = outcome(provider, pv.multi(*pairs), event(NOW))
            assert result in ("missing_signature", "invalid_signature"), (value, result)

    def test_wrong_encoding_is_invalid(self, pv):
        provider = make_provider(pv, self.scheme)
        body = event(NOW)
        for value in (SECRET.upper(), SECRET.encode().hex(), " " + SECRET + "x", SECRET[:-1]):
            assert outcome(provider, {"X-Gitlab-Token": value}, body) == "invalid_signature", value


def test_surrounding_whitespace_is_http_padding(pv):
    provider = make_provider(pv, TestContract.scheme)
    assert outcome(provider, {"X-Gitlab-Token": f"  {SECRET}\t"}, event(NOW)) == "accepted:0"


@pytest.mark.parametrize("value", ["\udcff" + SECRET, SECRET + "\u00e9", "\x00"])
def test_odd_bytes_are_refused_not_500(pv, value):
    assert outcome(make_provider(pv, TestContract.scheme), {"X-Gitlab-Token": value}, event(NOW)) == "invalid_signature"


def test_our_signer_sends_the_token(pv):
    provider = make_provider(pv, TestContract.scheme, (SECRET, ROTATED))
    assert sign(provider, event(NOW), URL, secret_index=1)["X-Gitlab-Token"] == ROTATED
