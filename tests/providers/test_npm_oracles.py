"""GitHub, Shopify and Linear against their official SDKs, which are npm packages, not on PyPI.

``tests/npm/oracle.mjs`` loads the pinned SDKs (``tests/npm/package.json``, installed by
``make test`` with ``npm ci``) and answers JSON requests on stdin; one ``node`` process serves
this whole module. The SDKs:

- GitHub: ``@octokit/webhooks-methods`` ``sign`` and ``verify`` (``sha256=<hex>``);
- Shopify: ``@shopify/shopify-api`` ``shopify.webhooks.validate`` (the HMAC and the headers every
  webhook carries) and, to sign, ``createSHA256HMAC`` from its runtime: the function that
  ``validate`` itself checks the header against;
- Linear: ``@linear/sdk`` ``LinearWebhookClient.verify`` (signature, then ``webhookTimestamp``
  in the body against the clock, a minute either way); the SDK does not sign, so Linear is only
  checked in the direction "the SDK accepts what our signer writes".

The checks: what an SDK signs, our verifier accepts (and our signer writes the same header);
what our signer writes, the SDK accepts; and for a tampered body, a wrong or rotated-out secret
and malformed or re-encoded signature headers, the SDK and our verifier both refuse.

Missing ``node`` or packages fail these tests (they never skip): ``make test`` installs both.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from preset_contract import encodings, garbage

from gateway.providers.signer import sign

NPM_DIR = Path(__file__).resolve().parents[1] / "npm"
INSTALL_HINT = "run `make test` (or `npm ci --no-audit --no-fund --prefix tests/npm`)"
REPLY_TIMEOUT = 30.0

SECRETS = {
    "github": ("It's a Secret to Everybody", "rotated github secret ✓"),
    "shopify": ("shpss_0ld_app_secret", "shpss_n3w_app_secret"),
    "linear": ("lin_wh_0ldS3cr3tF0rT3st1ng", "lin_wh_n3wS3cr3tF0rT3st1ng"),
}
SIGNING_SDKS = ("github", "shopify")  # @linear/sdk only verifies


# --- the node process --------------------------------------------------------------------------


class NpmOracle:
    """A running ``node tests/npm/oracle.mjs``: ``ask(*requests)`` answers one batch."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: Any) -> None:
        self.proc, self.stderr = proc, stderr

    def ask(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(list(requests)).encode() + b"\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], REPLY_TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            pytest.fail(f"tests/npm/oracle.mjs gave no answer (exit code {self.proc.poll()}): {self._stderr()}")
        answers: list[dict[str, Any]] = json.loads(line)
        for request, answer in zip(requests, answers, strict=True):
            assert answer["ok"], f"oracle could not serve {request.get('sdk')} {request.get('op')}: {answer['error']}"
        return answers

    def sign(self, sdk: str, secret: str, body: bytes) -> str:
        signature: str = self.ask(_request(sdk, "sign", secret, body))[0]["signature"]
        return signature

    def verdicts(self, sdk: str, cases: list[tuple[str, bytes, str]]) -> list[bool]:
        """The SDK's verdict on each ``(secret, body, signature header)``."""
        answers = self.ask(*(_request(sdk, "verify", secret, body, sig) for secret, body, sig in cases))
        return [answer["valid"] for answer in answers]

    def _stderr(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-2000:] or "(no stderr)"


def _request(sdk: str, op: str, secret: str, body: bytes, signature: str | None = None) -> dict[str, Any]:
    request = {"sdk": sdk, "op": op, "secret": secret, "body_b64": base64.b64encode(body).decode()}
    if signature is not None:
        request["signature"] = signature
    return request


def _missing(what: str) -> None:
    ci = " (CI=true: the npm SDK oracles are required)" if os.environ.get("CI") == "true" else ""
    pytest.fail(f"{what}{ci}: {INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="module")
def npm() -> Iterator[NpmOracle]:
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed; the Makefile installs Debian's nodejs and npm when root")
    pins: dict[str, str] = json.loads((NPM_DIR / "package.json").read_text("utf-8"))["dependencies"]
    absent = [name for name in pins if not (NPM_DIR / "node_modules" / name / "package.json").is_file()]
    if absent:
        _missing(f"npm packages not installed in tests/npm/node_modules: {', '.join(absent)}")
    with contextlib.ExitStack() as stack:
        stderr = stack.enter_context(tempfile.TemporaryFile())
        proc = subprocess.Popen(
            [str(node), "oracle.mjs"], cwd=NPM_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
        oracle = NpmOracle(proc, stderr)
        try:
            versions = oracle.ask({"op": "versions"})[0]["versions"]
            if versions != pins:
                _missing(f"tests/npm/node_modules holds {versions}, package.json pins {pins}")
            yield oracle
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


# --- deliveries --------------------------------------------------------------------------------


def _linear_body(ts_ms: object, **extra: Any) -> bytes:
    doc = {
        "action": "create",
        "type": "Issue",
        "createdAt": "2024-03-01T12:00:00.000Z",
        "organizationId": "2d9f3f0e-5f5b-4b9f-9a48-3d2c1b0a9f8e",
        "webhookId": "0b4c5d6e-7f80-4a1b-9c2d-3e4f5a6b7c8d",
        "webhookTimestamp": ts_ms,
        "data": {"id": "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b", "identifier": "ENG-4200", "title": "Café ✓"},
        **extra,
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def bodies(name: str, now: float) -> list[bytes]:
    """Realistic deliveries of ``name`` at ``now`` (each with ``4200`` for the tamper checks)."""
    if name == "linear":  # the SDK checks webhookTimestamp against its own clock
        return [_linear_body(int(now * 1000)), _linear_body(int(now * 1000), note="x" * 100_000)]
    if name == "github":
        push = {
            "ref": "refs/heads/main",
            "after": "4200c0ffee",
            "repository": {"full_name": "octo-org/octo-repo"},
            "head_commit": {"message": "Fix café ✓ rendering 🐙"},
        }
        return [
            json.dumps(push, ensure_ascii=False).encode(),
            json.dumps(push, indent=2).encode() + b"\n",  # as sent: pretty, escaped, trailing newline
            b'{"zen":"Keep it logically awesome.","hook_id":4200}',
            json.dumps({**push, "blob": "é" * 50_000, "n": 4200}, ensure_ascii=False).encode(),
        ]
    order = (
        b'{"id":820982911946154508,"financial_status":"paid","total_price":"4200.00",'
        b'"currency":"EUR","note":"\xc3\xa9 \xe2\x9c\x93"}'
    )
    return [order, order.replace(b",", b", "), b'{"id":4200,"line_items":[]}', order * 3]


def _provider(pv: Any, name: str) -> Any:
    return pv.provider(name, list(SECRETS[name]))


def _header(provider: Any) -> str:
    header: str = provider.signature.header
    return header


def _ours(pv: Any, name: str, body: bytes, index: int = 0, now: float | None = None) -> str:
    """Our signer's signature header for ``body`` with secret ``index``."""
    provider = _provider(pv, name)
    headers = sign(provider, body, pv.URL, now=time.time() if now is None else now, secret_index=index)
    return headers[_header(provider)]


def _our_verdict(pv: Any, name: str, body: bytes, value: str, secrets: tuple[str, ...], now: float) -> str:
    provider = pv.provider(name, list(secrets))
    return str(pv.outcome(provider, {_header(provider): value}, body, now))


# --- the SDK signs, we verify ------------------------------------------------------------------


@pytest.mark.parametrize("name", SIGNING_SDKS)
def test_sdk_signatures_are_accepted_and_our_signer_writes_the_same(npm, pv, name):
    now = time.time()
    provider = _provider(pv, name)
    cases = [(index, body) for index in (0, 1) for body in bodies(name, now)]
    answers = npm.ask(*(_request(name, "sign", SECRETS[name][index], body) for index, body in cases))
    for (index, body), answer in zip(cases, answers, strict=True):
        theirs = answer["signature"]
        assert pv.outcome(provider, {_header(provider): theirs}, body, now) == f"accepted:{index}", body[:60]
        assert _ours(pv, name, body, index, now) == theirs, body[:60]


def test_octokit_signs_githubs_published_test_vector(npm):
    """GitHub's "Validating webhook deliveries" vector, signed by the SDK itself."""
    signature = npm.sign("github", "It's a Secret to Everybody", b"Hello, World!")
    assert signature == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


# --- we sign, the SDK verifies -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["github", "shopify", "linear"])
def test_sdk_accepts_our_signer_only_with_the_right_secret(npm, pv, name):
    now = time.time()
    cases, expected = [], []
    for body in bodies(name, now):
        for index in (0, 1):
            value = _ours(pv, name, body, index, now)
            cases += [(SECRETS[name][index], body, value), (SECRETS[name][1 - index], body, value)]
            expected += [True, False]
    assert npm.verdicts(name, cases) == expected


# --- differential: both refuse -----------------------------------------------------------------


def _refusals(npm: Any, pv: Any, name: str, cases: list[tuple[str, bytes, str]], now: float) -> None:
    """Every case is refused by the SDK and, as ``invalid_signature``, by our verifier.

    Positive control, in the same batch: the first case's body correctly signed with the right
    secret must be accepted by both, or an oracle that refuses everything would pass."""
    body = cases[0][1]
    control = (SECRETS[name][0], body, _ours(pv, name, body, 0, now))
    control_valid, *sdk = npm.verdicts(name, [control, *cases])
    assert control_valid, f"positive control: the {name} SDK refused a correctly signed delivery"
    assert _our_verdict(pv, name, control[1], control[2], (control[0],), now) == "accepted:0"
    for (secret, body, value), sdk_valid in zip(cases, sdk, strict=True):
        ours = _our_verdict(pv, name, body, value, (secret,), now)
        assert (sdk_valid, ours) == (False, "invalid_signature"), (value[:80], body[:60])


@pytest.mark.parametrize("name", ["github", "shopify", "linear"])
def test_tampered_body_is_refused_by_both(npm, pv, name):
    now = time.time()
    secret = SECRETS[name][0]
    cases = []
    for body in bodies(name, now):
        value = _ours(pv, name, body, 0, now)
        assert npm.verdicts(name, [(secret, body, value)]) == [True]
        for tampered in (body.replace(b"4200", b"4201", 1), body + b" ", b" " + body, body[:-1], body + b"\n"):
            cases.append((secret, tampered, value))
    _refusals(npm, pv, name, cases, now)


@pytest.mark.parametrize("name", ["github", "shopify", "linear"])
def test_wrong_or_rotated_out_secret_is_refused_by_both(npm, pv, name):
    now = time.time()
    current, rotated = SECRETS[name]
    cases = []
    for body in bodies(name, now):
        value = _ours(pv, name, body, 0, now)
        for wrong in (rotated, current[:-1], current + " ", current.upper(), current.encode().hex()):
            cases.append((wrong, body, value))
    _refusals(npm, pv, name, cases, now)


@pytest.mark.parametrize("name", ["github", "shopify", "linear"])
def test_malformed_or_reencoded_signature_is_refused_by_both(npm, pv, name):
    """The contract's garbage values and every other spelling of the same MAC (upper-case hex,
    base64 for hex and back, no prefix, a doubled prefix): one accepted spelling, as the SDK.
    (Whitespace around the value is not among them: HTTP strips it before either would see it.)"""
    now = time.time()
    secret = SECRETS[name][0]
    body = bodies(name, now)[0]
    valid = _ours(pv, name, body, 0, now)
    assert npm.verdicts(name, [(secret, body, valid)]) == [True]
    provider = pv.provider(name, [secret])
    values = {*garbage(valid), *encodings(provider, valid), valid + "," + valid, valid.replace("sha256=", "sha1=")}
    values.discard(valid)
    _refusals(npm, pv, name, [(secret, body, value) for value in sorted(values)], now)


# --- Linear: the signed timestamp --------------------------------------------------------------


def test_linear_webhook_timestamp_verdicts_match_the_sdk(npm, pv):
    """The SDK checks ``webhookTimestamp`` in the signed body against ``Date.now()``, a minute
    either way; our verifier against the clock it is given. Fresh and stale bodies, and bodies
    without a usable timestamp, get the same verdict from both.

    One known difference: a JSON *string* of digits. Our verifier reads it as the number (see
    ``test_preset_linear.py``); @linear/sdk requires ``typeof webhookTimestamp === "number"``."""
    secret = SECRETS["linear"][0]
    now = time.time()
    ms = int(now * 1000)
    same = {
        "fresh": (_linear_body(ms), True),
        "30 s old": (_linear_body(ms - 30_000), True),
        "30 s ahead": (_linear_body(ms + 30_000), True),
        "2 min old": (_linear_body(ms - 120_000), False),
        "2 min ahead": (_linear_body(ms + 120_000), False),
        "seconds, not ms": (_linear_body(int(now)), False),
        "null": (_linear_body(None), False),
        "an object": (_linear_body({"ms": ms}), False),
    }
    missing = json.loads(_linear_body(ms))
    del missing["webhookTimestamp"]
    same["missing"] = (json.dumps(missing).encode(), False)
    cases = [(secret, body, _ours(pv, "linear", body, 0, now)) for body, _ in same.values()]
    for label, sdk_valid, (secret, body, value) in zip(same, npm.verdicts("linear", cases), cases, strict=True):
        ours = _our_verdict(pv, "linear", body, value, (secret,), now)
        assert (sdk_valid, ours.startswith("accepted")) == (same[label][1], same[label][1]), (label, ours)

    as_string = _linear_body(str(ms))
    value = _ours(pv, "linear", as_string, 0, now)
    assert npm.verdicts("linear", [(secret, as_string, value)]) == [False]
    assert _our_verdict(pv, "linear", as_string, value, (secret,), now) == "accepted:0"


# --- the oracle's own positive control ---------------------------------------------------------


class AlwaysInvalid:
    """A broken oracle that refuses every signature (a wrong secret in the harness, an SDK that
    throws on everything): each test above that asks an SDK for a verdict must fail with it."""

    def __init__(self, real: NpmOracle) -> None:
        self.real = real

    def ask(self, *requests: dict[str, Any]) -> list[dict[str, Any]]:
        return self.real.ask(*requests)

    def sign(self, sdk: str, secret: str, body: bytes) -> str:
        return self.real.sign(sdk, secret, body)

    def verdicts(self, sdk: str, cases: list[tuple[str, bytes, str]]) -> list[bool]:
        return [False] * len(cases)


VERDICT_TESTS = [
    (test, name)
    for test in (
        test_sdk_accepts_our_signer_only_with_the_right_secret,
        test_tampered_body_is_refused_by_both,
        test_wrong_or_rotated_out_secret_is_refused_by_both,
        test_malformed_or_reencoded_signature_is_refused_by_both,
    )
    for name in ("github", "shopify", "linear")
]


@pytest.mark.parametrize(("test", "name"), VERDICT_TESTS, ids=[f"{t.__name__}-{n}" for t, n in VERDICT_TESTS])
def test_an_oracle_that_always_says_invalid_fails_the_verdict_tests(npm, pv, test, name):
    with pytest.raises(AssertionError):
        test(AlwaysInvalid(npm), pv, name)


def test_an_oracle_that_always_says_invalid_fails_the_linear_timestamp_test(npm, pv):
    with pytest.raises(AssertionError):
        test_linear_webhook_timestamp_verdicts_match_the_sdk(AlwaysInvalid(npm), pv)
