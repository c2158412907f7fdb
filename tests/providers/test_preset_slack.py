"""Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:timestamp:body">`` and
``X-Slack-Request-Timestamp``. Oracle: ``slack_sdk.signature.SignatureVerifier``, both as signer
(``generate_signature``) and as verifier (``is_valid``), with its clock pinned.
"""

from __future__ import annotations

import pytest
from slack_sdk.signature import Clock, SignatureVerifier

from gateway.providers.signer import sign

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
#: Slack's worked example (a slash command, form-encoded) from "Verifying requests from Slack".
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_TS = 1531420618
DOC_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
EVENT = b'{"token":"unused","team_id":"T0001","type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}'


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def _sdk(now: float) -> SignatureVerifier:
    return SignatureVerifier(SECRET, clock=FixedClock(now))


def _sdk_valid(now: float, body: bytes, ts: str, signature: str) -> bool:
    """``is_valid``, where an exception counts as a refusal (for a non-ASCII signature the SDK's
    ``hmac.compare_digest`` raises TypeError; we answer 401)."""
    try:
        return _sdk(now).is_valid(body, ts, signature)
    except (TypeError, ValueError):
        return False


def test_published_example(pv):
    provider = pv.provider("slack", [SECRET])
    headers = {"X-Slack-Signature": DOC_SIG, "X-Slack-Request-Timestamp": str(DOC_TS)}
    assert _sdk(DOC_TS).generate_signature(timestamp=str(DOC_TS), body=DOC_BODY) == DOC_SIG
    assert pv.outcome(provider, headers, DOC_BODY, now=DOC_TS) == "accepted:0"


def test_our_signer_is_accepted_by_the_sdk(pv):
    provider = pv.provider("slack", ["other-secret", SECRET])
    headers = sign(provider, EVENT, pv.URL, now=pv.NOW, secret_index=1)
    assert _sdk(pv.NOW).is_valid_request(EVENT, headers)
    assert pv.outcome(provider, headers, EVENT) == "accepted:1"


@pytest.mark.parametrize(
    "signature",
    [
        "v1={hex}",
        "V0={hex}",
        "v0:{hex}",
        "v0= {hex}",
        "{hex}",
        "v0={upper}",  # the SDK compares lowercase hex strings
        "v0={hex}0",
        "v0={hex}\u00e9",
        "v0=v0={hex}",
        "v0={short}",
        "sha256={hex}",
    ],
)
def test_malformed_signatures_agree_with_the_sdk(pv, signature):
    provider = pv.provider("slack", [SECRET])
    good = _sdk(pv.NOW).generate_signature(timestamp=str(pv.NOW), body=EVENT)
    assert good is not None
    hexsig = good.removeprefix("v0=")
    value = signature.format(hex=hexsig, upper=hexsig.upper(), short=hexsig[:62])
    assert not _sdk_valid(pv.NOW, EVENT, str(pv.NOW), value)
    headers = {"X-Slack-Signature": value, "X-Slack-Request-Timestamp": str(pv.NOW)}
    assert pv.outcome(provider, headers, EVENT) == "invalid_signature"


@pytest.mark.parametrize("skew", [-301, -300, -1, 0, 1, 300, 301, 86_400])
def test_tolerance_matches_the_sdk(pv, skew):
    provider = pv.provider("slack", [SECRET])
    ts = str(pv.NOW + skew)
    sig = _sdk(pv.NOW).generate_signature(timestamp=ts, body=EVENT)
    assert sig is not None
    sdk_ok = _sdk_valid(pv.NOW, EVENT, ts, sig)
    ours = pv.outcome(provider, {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": ts}, EVENT)
    assert ours == ("accepted:0" if sdk_ok else "stale_timestamp")


def test_every_single_character_change_agrees_with_the_sdk(pv):
    provider = pv.provider("slack", [SECRET])
    good = _sdk(pv.NOW).generate_signature(timestamp=str(pv.NOW), body=EVENT)
    assert good is not None
    for i in range(len(good)):
        for new in "0aA=v:":
            mutated = good[:i] + new + good[i + 1 :]
            if mutated == good:
                continue
            headers = {"X-Slack-Signature": mutated, "X-Slack-Request-Timestamp": str(pv.NOW)}
            ours = pv.outcome(provider, headers, EVENT).startswith("accepted")
            assert ours == _sdk_valid(pv.NOW, EVENT, str(pv.NOW), mutated), mutated


def test_form_body_and_json_body(pv):
    """Slack sends JSON (Events API) and forms (commands, interactivity): both verify as bytes."""
    provider = pv.provider("slack", [SECRET])
    for body in (EVENT, DOC_BODY, b"payload=%7B%22type%22%3A%22block_actions%22%7D"):
        sig = _sdk(pv.NOW).generate_signature(timestamp=str(pv.NOW), body=body)
        assert sig is not None
        headers = {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": str(pv.NOW)}
        assert pv.outcome(provider, headers, body) == "accepted:0"
