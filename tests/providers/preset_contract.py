"""The contract every catalog provider passes, written once, run per provider.

A provider's test module describes how its provider signs (a :class:`Scheme`: the signing
oracle, a realistic delivery, the headers it carries, the tolerance) and subclasses
:class:`PresetContract`; pytest then runs every check below for that provider, alongside the
module's own provider-specific tests (published vectors, SDK quirks). The oracle is the
provider's official SDK where one exists on PyPI, else an independent implementation of the
provider's documentation; never ``gateway.providers.signer``, which is checked against it.

The checks: a signed delivery is accepted; rotation reports which secret matched; a tampered
body, a wrong or rotated-out secret, a stale or future timestamp, a missing, empty, repeated or
malformed header and a wrongly encoded signature get the right 401 code; every one-character
change of a signed header is refused; random input only ever yields rejections (never a 500);
our signer writes what the oracle writes; the catalog ``sample`` signs and verifies; and a real
delivery through the gateway is forwarded with the right event id, event type and payment
fields, and its retry is answered ``duplicate``.

(Like ``conftest.py`` this file is shared by the provider test modules; unlike it, it is
imported by them, so it is a plain module.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from gateway.errors import ERROR_STATUS, Rejection
from gateway.providers.signer import sample_event, sign
from gateway.providers.spec import ProviderSpec
from gateway.providers.verifier import verify

#: ``oracle(secret, body, ts) -> headers``: the signed headers a real delivery of ``body`` at unix
#: time ``ts`` carries (signature, and timestamp or id headers where the scheme signs them).
Oracle = Callable[[str, bytes, int], dict[str, str]]
#: ``sdk_accepts(secret, body, headers, now) -> bool``: the official verifier's verdict (an
#: exception counts as a refusal).
SdkVerdict = Callable[[str, bytes, Mapping[str, str], float], bool]

NOW = 1_700_000_000
URL = "https://gateway.example/payments/api/webhooks/test/"
VERIFY_CODES = ("missing_signature", "invalid_signature", "stale_timestamp", "invalid_json")


@dataclass(frozen=True)
class Scheme:
    """One provider as it signs, and what a delivery of ``event`` normalizes to."""

    name: str
    secrets: tuple[str, str]  # (current, rotated-in)
    oracle: Oracle
    event: Callable[[int], bytes]  # a realistic body delivered at unix time ts; must contain b"4200"
    signature_header: str
    extra_headers: tuple[str, ...] = ()  # other signed headers that must be present
    context_headers: Mapping[str, str] = field(default_factory=dict)  # unsigned headers (ids, types)
    tolerance: float | None = None  # seconds, when the scheme signs a timestamp
    sdk_accepts: SdkVerdict | None = None
    differential: bool = False  # the SDK compares the header as we do: verdicts must agree exactly
    repeatable: tuple[str, ...] = ()  # headers the provider may legitimately send twice
    expect_id: str | None = None  # the dedup key of ``event``: None means the body's SHA-256
    expect_type: str | None = None
    expect_payment: Mapping[str, Any] | None = None

    @property
    def required_headers(self) -> tuple[str, ...]:
        return (self.signature_header, *self.extra_headers)

    def delivery(self, secret_index: int = 0, ts: int = NOW, body: bytes | None = None) -> tuple[bytes, dict[str, str]]:
        body = self.event(ts) if body is None else body
        return body, self.oracle(self.secrets[secret_index], body, ts)


def make_provider(pv: Any, scheme: Scheme, secrets: tuple[str, ...] | None = None, **overrides: Any) -> ProviderSpec:
    provider: ProviderSpec = pv.provider(scheme.name, list(secrets or scheme.secrets[:1]), **overrides)
    return provider


def outcome(provider: ProviderSpec, headers: Any, body: bytes, now: float = NOW) -> str:
    """``"accepted:<secret index>"`` or the rejection code; any other exception fails the test."""
    try:
        result = verify(provider, headers, body, URL, now)
    except Rejection as exc:
        assert exc.code in ERROR_STATUS and exc.status == ERROR_STATUS[exc.code]
        return exc.code
    return f"accepted:{result.secret_index}"


def garbage(valid: str) -> list[str]:
    """Header values wrong for every scheme (none blank, so none reads as 'missing')."""
    return [
        "garbage", "x" * 5000, "\x00", "null", valid[:-1], valid[:-2], valid + "0", valid + "=",
        valid + "\u200b", valid + "é", "é" * len(valid), "\udcff" * 16, valid[:8] + "\udcff" + valid[9:],
        valid[:-1] + "\u0661", valid.swapcase(), valid.replace(",", ";"), valid.replace("=", ":"),
        valid.replace(";", ","),
    ]  # fmt: skip


def encodings(provider: ProviderSpec, value: str) -> list[str]:
    """The header's signature spelt every other way: other encodings, case, prefix, padding."""
    spec = provider.signature
    assert spec is not None
    if spec.style == "list":
        items = value.split(spec.item_separator)
        index = next(i for i, item in enumerate(items) if item.partition(spec.kv_separator)[0] in spec.signature_keys)
        key, sep, sig = items[index].partition(spec.kv_separator)

        def rebuild(new: str) -> str:
            return spec.item_separator.join([*items[:index], key + sep + new, *items[index + 1 :]])
    else:
        sig = value.removeprefix(spec.prefix)

        def rebuild(new: str) -> str:
            return spec.prefix + new

    raw = binascii.unhexlify(sig) if spec.encoding == "hex" else base64.b64decode(sig + "=" * (-len(sig) % 4), b"-_")
    b64 = base64.b64encode(raw).decode()
    spelt = {
        raw.hex(), raw.hex().upper(), b64, b64.rstrip("="), base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="), base64.b32encode(raw).decode(), raw.hex()[:-2],
    }  # fmt: skip
    variants = [rebuild(s) for s in sorted(spelt - {sig})]
    if spec.prefix:
        variants += [spec.prefix.upper() + sig, spec.prefix + spec.prefix + sig, spec.prefix + " " + sig]
        # Without the prefix: the one spelling refused, unless the prefix is optional (Mollie);
        # then the other spellings are still refused bare too.
        variants += sorted(spelt - {sig}) if spec.prefix_optional else [sig]
    return variants


def _random_text(rng: random.Random) -> str:
    size = rng.choice([0, 1, 31, 32, 40, 43, 44, 64, 65, 88, 128, 300, 9000])
    kind = rng.randrange(6)
    if kind == 0:
        return "".join(rng.choice(string.printable) for _ in range(size))
    if kind == 1:
        return rng.randbytes(size).decode("utf-8", "surrogateescape")  # as aiohttp hands bytes over
    if kind == 2:
        return "".join(chr(rng.randrange(0x110000)) for _ in range(min(size, 300)))
    if kind == 3:
        return rng.randbytes(size // 2).hex()
    if kind == 4:
        return base64.b64encode(rng.randbytes(size // 2)).decode()
    pieces = ["ts=", "h1=", "t=", "v1,", "sha1=", "sha256=", "=", ",", ";", " ", str(NOW), "\x00"]
    return "".join(rng.choice(pieces) + rng.randbytes(rng.choice([0, 20, 32, 64])).hex() for _ in range(4))


def _random_body(rng: random.Random, body: bytes) -> bytes:
    roll = rng.randrange(4)
    if roll == 0:
        return rng.randbytes(rng.randrange(200))
    if roll == 1:
        return json.dumps({"webhookTimestamp": rng.choice([NOW * 1000, "x", None, -1, 1e300])}).encode()
    if roll == 2:
        i = rng.randrange(len(body))
        return body[:i] + rng.randbytes(1) + body[i + 1 :]
    return body[: rng.randrange(len(body))]


class PresetContract:
    """Subclass as ``class TestContract(PresetContract): scheme = SCHEME`` in a provider's module."""

    scheme: ClassVar[Scheme]

    # --- accepted ----------------------------------------------------------------------------

    def test_oracle_signature_is_accepted(self, pv: Any) -> None:
        body, headers = self.scheme.delivery()
        assert b"4200" in body, "the contract's tamper test changes 4200 in the event"
        assert outcome(make_provider(pv, self.scheme), headers, body) == "accepted:0"

    def test_rotation_reports_which_secret_matched(self, pv: Any) -> None:
        provider = make_provider(pv, self.scheme, self.scheme.secrets)
        for index in (0, 1):
            body, headers = self.scheme.delivery(secret_index=index)
            assert outcome(provider, headers, body) == f"accepted:{index}"

    def test_header_names_are_case_insensitive(self, pv: Any) -> None:
        provider = make_provider(pv, self.scheme)
        body, headers = self.scheme.delivery()
        for rename in (str.lower, str.upper, str.title):
            renamed = {rename(k): v for k, v in headers.items()}
            assert outcome(provider, renamed, body) == "accepted:0"
            assert outcome(provider, pv.multi(*renamed.items()), body) == "accepted:0"

    # --- refused: wrong key or bytes -----------------------------------------------------------

    def test_rotated_out_secret_is_refused(self, pv: Any) -> None:
        body, headers = self.scheme.delivery(secret_index=0)
        provider = make_provider(pv, self.scheme, self.scheme.secrets[1:])
        assert outcome(provider, headers, body) == "invalid_signature"

    def test_wrong_secret_is_refused(self, pv: Any) -> None:
        body = self.scheme.event(NOW)
        wrong = self.scheme.secrets[0][:-4] + "Zz9Q"  # same shape (whsec_ base64 stays valid)
        headers = self.scheme.oracle(wrong, body, NOW)
        assert outcome(make_provider(pv, self.scheme), headers, body) == "invalid_signature"

    def test_tampered_body_is_refused(self, pv: Any) -> None:
        body, headers = self.scheme.delivery()
        provider = make_provider(pv, self.scheme)
        for tampered in (body.replace(b"4200", b"4201", 1), body + b" ", b" " + body, body[:-1], b""):
            assert outcome(provider, headers, tampered) == "invalid_signature", tampered[:40]

    # --- refused: the clock --------------------------------------------------------------------

    def test_timestamp_beyond_tolerance_is_stale(self, pv: Any) -> None:
        tolerance = self._tolerance()
        provider = make_provider(pv, self.scheme)
        for skew in (-tolerance - 1, tolerance + 1, -86_400, 86_400 * 365):
            body, headers = self.scheme.delivery(ts=NOW + int(skew))
            assert outcome(provider, headers, body) == "stale_timestamp", skew

    def test_timestamp_within_tolerance_is_accepted(self, pv: Any) -> None:
        tolerance = int(self._tolerance())
        provider = make_provider(pv, self.scheme)
        for skew in (-tolerance, -1, 0, 1, tolerance):
            body, headers = self.scheme.delivery(ts=NOW + skew)
            assert outcome(provider, headers, body) == "accepted:0", skew

    def test_stale_timestamp_with_a_bad_signature_is_invalid_not_stale(self, pv: Any) -> None:
        self._tolerance()
        body, headers = self.scheme.delivery(ts=NOW - 86_400)
        assert outcome(make_provider(pv, self.scheme), headers, body.replace(b"4200", b"4201")) == "invalid_signature"

    def test_scheme_without_timestamp_ignores_the_clock(self, pv: Any) -> None:
        if self.scheme.tolerance is not None:
            pytest.skip("the scheme signs a timestamp")
        body, headers = self.scheme.delivery()
        assert outcome(make_provider(pv, self.scheme), headers, body, now=NOW + 86_400 * 365) == "accepted:0"

    def _tolerance(self) -> float:
        if self.scheme.tolerance is None:
            pytest.skip("the scheme signs no timestamp")
        return self.scheme.tolerance

    # --- refused: headers ----------------------------------------------------------------------

    def test_missing_headers(self, pv: Any) -> None:
        provider = make_provider(pv, self.scheme)
        body, headers = self.scheme.delivery()
        assert outcome(provider, {}, body) == "missing_signature"
        for name in self.scheme.required_headers:
            partial = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            assert outcome(provider, partial, body) == "missing_signature", name

    @pytest.mark.parametrize("empty", ["", " ", "\t", "  \t "])
    def test_empty_headers(self, pv: Any, empty: str) -> None:
        provider = make_provider(pv, self.scheme)
        body, headers = self.scheme.delivery()
        for name in self.scheme.required_headers:
            blanked = {k: (empty if k.lower() == name.lower() else v) for k, v in headers.items()}
            assert outcome(provider, blanked, body) == "missing_signature", name

    def test_duplicated_headers_are_refused(self, pv: Any) -> None:
        """Two copies of a signed header: which one did the provider mean? Refused, even two
        identical valid copies (a proxy that duplicates headers is broken)."""
        provider = make_provider(pv, self.scheme)
        body, headers = self.scheme.delivery()
        _, other = self.scheme.delivery(secret_index=1, body=body)
        for name in self.scheme.required_headers:
            if name in self.scheme.repeatable:
                continue
            for second in (headers[name], other[name]):
                pairs = [*headers.items(), (name.lower(), second)]
                assert outcome(provider, pv.multi(*pairs), body) == "invalid_signature", name
                assert outcome(provider, {**headers, name.upper(): second}, body) == "invalid_signature", name

    def test_malformed_headers_are_invalid(self, pv: Any) -> None:
        provider = make_provider(pv, self.scheme)
        body, headers = self.scheme.delivery()
        for name in self.scheme.required_headers:
            valid = headers[name]
            extra = (
                ["-1", "+" + valid, valid + ".0", "1e9", "0x10", valid + " 1"]
                if name != self.scheme.signature_header
                else []
            )
            for value in [*garbage(valid), *extra]:
                if value != valid:
                    assert outcome(provider, {**headers, name: value}, body) == "invalid_signature", (name, value[:80])

    def test_wrong_encoding_is_invalid(self, pv: Any) -> None:
        """The same MAC spelt another way (hex for base64, upper case, no prefix, ...) is not the
        provider's signature: refused, so a signature has exactly one accepted spelling."""
        provider = make_provider(pv, self.scheme)
        body, headers = self.scheme.delivery()
        for value in encodings(provider, headers[self.scheme.signature_header]):
            mutated = {**headers, self.scheme.signature_header: value}
            assert outcome(provider, mutated, body) == "invalid_signature", value

    def test_every_single_character_change_is_refused(self, pv: Any) -> None:
        provider = make_provider(pv, self.scheme)
        body, headers = self.scheme.delivery()
        for name in self.scheme.required_headers:
            value = headers[name]
            for i, old in enumerate(value):
                for new in "0aA=,;+/ é\udcff":
                    if new != old:
                        result = outcome(provider, {**headers, name: value[:i] + new + value[i + 1 :]}, body)
                        assert result in ("invalid_signature", "missing_signature"), (name, i, new, result)

    def test_verdicts_agree_with_the_sdk_on_single_character_changes(self, pv: Any) -> None:
        if not (self.scheme.differential and self.scheme.sdk_accepts):
            pytest.skip("no official verifier that reads the header as we do")
        now = int(time.time())
        provider = make_provider(pv, self.scheme)
        secret = self.scheme.secrets[0]
        body, headers = self.scheme.delivery(ts=now)
        assert self.scheme.sdk_accepts(secret, body, headers, now)
        name = self.scheme.signature_header
        for i, old in enumerate(headers[name]):
            for new in "09afAF=,;:th ":
                if new != old:
                    mutated = {**headers, name: headers[name][:i] + new + headers[name][i + 1 :]}
                    ours = outcome(provider, mutated, body, now).startswith("accepted")
                    assert ours == self.scheme.sdk_accepts(secret, body, mutated, now), (i, new, mutated[name])

    # --- never a 500 ---------------------------------------------------------------------------

    def test_random_input_only_ever_yields_rejections(self, pv: Any) -> None:
        rng = random.Random(f"fuzz-{self.scheme.name}")
        provider = make_provider(pv, self.scheme, self.scheme.secrets)
        for _ in range(300):
            body, signed = self.scheme.delivery(secret_index=rng.randrange(2))
            headers = list(signed.items())
            changed = False
            for i, (name, _value) in enumerate(list(headers)):
                roll = rng.random()
                if roll < 0.5:
                    headers[i], changed = (name, _random_text(rng)), True
                elif roll < 0.6 and name not in self.scheme.repeatable:  # a junk copy beside a good one passes there
                    headers.append((name.upper(), _random_text(rng)))
                    changed = True
                elif roll < 0.7:
                    headers[i], changed = (name, ""), True
            if rng.random() < 0.3:
                fuzzed = _random_body(rng, body)
                changed, body = changed or fuzzed != body, fuzzed
            if not changed:
                continue
            source = pv.multi(*headers) if rng.random() < 0.5 else dict(headers)
            try:
                verify(provider, source, body, URL, NOW + rng.choice([0, 1, -1000, 10**9]))
            except Rejection as exc:
                assert exc.code in VERIFY_CODES, exc.code
            else:
                pytest.fail(f"{self.scheme.name} accepted a fuzzed request: {headers!r:.200} body={body[:60]!r}")

    # --- our signer (webhook-gateway sign / send) ----------------------------------------------

    def test_signer_writes_what_the_oracle_writes(self, pv: Any) -> None:
        provider = make_provider(pv, self.scheme, self.scheme.secrets)
        for index in (0, 1):
            body, theirs = self.scheme.delivery(secret_index=index)
            ours = sign(provider, body, URL, now=NOW, secret_index=index, headers=self._unsigned(provider, theirs))
            for name, value in theirs.items():
                assert ours[name] == value, name
            assert outcome(provider, ours, body) == f"accepted:{index}"

    def test_sdk_accepts_our_signer(self, pv: Any) -> None:
        if self.scheme.sdk_accepts is None:
            pytest.skip("no official verifier on PyPI")
        now = int(time.time())
        provider = make_provider(pv, self.scheme, self.scheme.secrets)
        body = self.scheme.event(now)
        for index, secret in enumerate(self.scheme.secrets):
            headers = sign(provider, body, URL, now=now, secret_index=index)
            assert self.scheme.sdk_accepts(secret, body, headers, now)
            assert not self.scheme.sdk_accepts(self.scheme.secrets[1 - index], body, headers, now)

    def test_catalog_sample_signs_and_verifies(self, pv: Any) -> None:
        provider = make_provider(pv, self.scheme)
        body, extra = sample_event(provider)
        json.loads(body)
        now = time.time()
        headers = sign(provider, body, URL, now=now, headers=extra)
        assert outcome(provider, headers, body, now) == "accepted:0"

    @staticmethod
    def _unsigned(provider: ProviderSpec, headers: Mapping[str, str]) -> dict[str, str]:
        """The oracle's headers our signer takes as given (the message id), not those it writes."""
        spec = provider.signature
        keep = {spec.id_header.lower()} if spec and spec.id_header else set()
        return {k: v for k, v in headers.items() if k.lower() in keep}

    # --- through the gateway: dedup key, event type, payment -----------------------------------

    async def test_delivery_through_the_gateway(self, make_gateway: Any) -> None:
        scheme = self.scheme
        gateway = await make_gateway(providers={scheme.name: {"secrets": [scheme.secrets[0]]}})
        body, headers = scheme.delivery(ts=int(time.time()))
        headers = {"Content-Type": "application/json", **scheme.context_headers, **headers}
        resp = await gateway.client.post(gateway.url(scheme.name), data=body, headers=headers)
        answer = await resp.json()
        assert resp.status == 200 and answer["status"] == "forwarded", answer
        data = gateway.upstream.events[-1].event["data"]
        expected_id = scheme.expect_id or hashlib.sha256(body).hexdigest()
        assert (answer["event_id"], data["event_id"], data["event_type"]) == (
            expected_id,
            expected_id,
            scheme.expect_type,
        )
        assert data["payment"] == (dict(scheme.expect_payment) if scheme.expect_payment else None)
        again = await gateway.client.post(gateway.url(scheme.name), data=body, headers=headers)
        assert (again.status, (await again.json())["status"]) == (200, "duplicate")
        assert len(gateway.upstream.events) == 1

    async def test_catalog_sample_through_the_gateway(self, make_gateway: Any) -> None:
        gateway = await make_gateway(providers={self.scheme.name: {"secrets": [self.scheme.secrets[0]]}})
        body, extra = sample_event(gateway.settings.providers[self.scheme.name])
        resp = await gateway.post(self.scheme.name, body, extra)
        answer = await resp.json()
        assert resp.status == 200 and answer["status"] == "forwarded", answer
