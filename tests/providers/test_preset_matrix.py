"""Every catalog preset, signed by its provider's official SDK (or documented algorithm), through
the one generic verifier: what must pass, what must fail, and with which code.

Provider-specific cases (Stripe's ``v0``, Standard Webhooks' signature lists, published test
vectors, NOWPayments' canonical JSON) live in the per-provider files beside this one.
"""

from __future__ import annotations

import pytest

TOLERANCE = 300


def test_sdk_signature_is_accepted(preset, pv):
    provider = pv.provider(preset.name)
    assert pv.outcome(provider, preset.sign()) == "accepted:0"


def test_sdk_and_documented_algorithm_agree(sdk_preset, pv):
    """Our independent reading of each provider's docs signs exactly as its SDK does."""
    assert sdk_preset.sdk is not None
    for secret in sdk_preset.secrets:
        assert sdk_preset.sdk(secret, pv.BODY, pv.NOW, "msg_1") == sdk_preset.doc(secret, pv.BODY, pv.NOW, "msg_1")


def test_rotation_reports_which_secret_matched(preset, pv):
    provider = pv.provider(preset.name, preset.secrets)
    assert pv.outcome(provider, preset.sign(secret_index=0)) == "accepted:0"
    assert pv.outcome(provider, preset.sign(secret_index=1)) == "accepted:1"


def test_rotated_out_secret_is_refused(preset, pv):
    provider = pv.provider(preset.name, preset.secrets[1:])
    assert pv.outcome(provider, preset.sign(secret_index=0)) == "invalid_signature"


def test_tampered_body_is_refused(preset, pv):
    headers = preset.sign()
    tampered = pv.BODY.replace(b"4200", b"4201")
    assert tampered != pv.BODY
    assert pv.outcome(pv.provider(preset.name), headers, tampered) == "invalid_signature"


def test_wrong_secret_is_refused(preset, pv):
    headers = preset.doc("not-the-secret" if preset.name != "standard-webhooks" else "whsec_bm90LXRoZS1zZWNyZXQ=",
                         pv.BODY, pv.NOW, "msg_2Yx8")  # fmt: skip
    assert pv.outcome(pv.provider(preset.name), headers) == "invalid_signature"


@pytest.mark.parametrize("skew", [-TOLERANCE - 1, TOLERANCE + 1, -86_400, 86_400 * 365])
def test_timestamp_beyond_tolerance_is_stale(timed_preset, pv, skew):
    """Too old is a replay; too far in the future is refused too (Standard Webhooks and Slack
    do the same; Stripe's SDK only checks the past, we are deliberately stricter)."""
    headers = timed_preset.sign(ts=pv.NOW + skew)
    assert pv.outcome(pv.provider(timed_preset.name), headers) == "stale_timestamp"


@pytest.mark.parametrize("skew", [-TOLERANCE, -299, -1, 0, 1, 299, TOLERANCE])
def test_timestamp_within_tolerance_is_accepted(timed_preset, pv, skew):
    assert pv.outcome(pv.provider(timed_preset.name), timed_preset.sign(ts=pv.NOW + skew)) == "accepted:0"


def test_configured_tolerance_is_honoured(timed_preset, pv):
    provider = pv.provider(timed_preset.name, timestamp={"tolerance": 60})
    assert pv.outcome(provider, timed_preset.sign(ts=pv.NOW - 60)) == "accepted:0"
    assert pv.outcome(provider, timed_preset.sign(ts=pv.NOW - 61)) == "stale_timestamp"
    assert pv.outcome(provider, timed_preset.sign(ts=pv.NOW + 61)) == "stale_timestamp"


def test_schemes_without_timestamp_ignore_the_clock(untimed_preset, pv):
    provider = pv.provider(untimed_preset.name)
    assert pv.outcome(provider, untimed_preset.sign(), now=pv.NOW + 86_400 * 365) == "accepted:0"


def test_stale_timestamp_with_a_bad_signature_is_invalid_not_stale(timed_preset, pv):
    """Staleness is reported only for requests the provider really signed."""
    headers = timed_preset.sign(ts=pv.NOW - 3600)
    assert pv.outcome(pv.provider(timed_preset.name), headers, pv.BODY + b" ") == "invalid_signature"


def test_missing_headers(preset, pv):
    provider = pv.provider(preset.name)
    headers = preset.sign()
    assert pv.outcome(provider, {}) == "missing_signature"
    for name in preset.required_headers:
        partial = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        assert pv.outcome(provider, partial) == "missing_signature", name


@pytest.mark.parametrize("empty", ["", " ", "\t", "  \t "])
def test_empty_headers(preset, pv, empty):
    provider = pv.provider(preset.name)
    headers = preset.sign()
    for name in preset.required_headers:
        blanked = {k: (empty if k.lower() == name.lower() else v) for k, v in headers.items()}
        assert pv.outcome(provider, blanked) == "missing_signature", name


def test_header_names_are_case_insensitive(preset, pv):
    provider = pv.provider(preset.name)
    headers = preset.sign()
    for rename in (str.lower, str.upper, str.title):
        renamed = {rename(k): v for k, v in headers.items()}
        assert pv.outcome(provider, renamed) == "accepted:0"
        assert pv.outcome(provider, pv.multi(*renamed.items())) == "accepted:0"


def test_duplicated_headers_are_refused(preset, pv):
    """Two copies of a signed header: which one would the provider mean? Refuse, even when both
    copies are the same valid value (a proxy that duplicates headers is broken)."""
    provider = pv.provider(preset.name)
    headers = preset.sign()
    other = preset.sign(secret_index=1)
    for name in preset.required_headers:
        value = next(v for k, v in headers.items() if k.lower() == name.lower())
        for second in (value, next(v for k, v in other.items() if k.lower() == name.lower())):
            pairs = [*headers.items(), (name.lower(), second)]
            assert pv.outcome(provider, pv.multi(*pairs)) == "invalid_signature", name
            # A plain mapping can carry the same header under two spellings of its name.
            spelled = {**headers, name.upper(): second}
            assert pv.outcome(provider, spelled) == "invalid_signature", name


def _generic_garbage(valid: str) -> list[str]:
    """Header values that are wrong for every scheme (none is blank, so none is 'missing')."""
    return [
        "garbage",
        "x" * 5000,
        "\x00",
        "null",
        valid[:-1],
        valid[:-2],
        valid + "0",
        valid + "=",
        valid + "\u200b",  # zero-width space
        valid + "é",
        "é" * len(valid),
        "\udcff" * 16,  # bytes that are not UTF-8, as aiohttp decodes them (surrogateescape)
        valid[:8] + "\udcff" + valid[9:],
        valid[:-1] + "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not an ASCII one
        valid.swapcase(),
        valid.replace(",", ";"),
        valid.replace("=", ":"),
    ]


def test_malformed_signature_headers_are_invalid(preset, pv):
    provider = pv.provider(preset.name)
    headers = preset.sign()
    valid = headers[preset.signature_header]
    for garbage in _generic_garbage(valid):
        if garbage == valid:
            continue
        mutated = {**headers, preset.signature_header: garbage}
        assert pv.outcome(provider, mutated) == "invalid_signature", repr(garbage[:80])


def test_malformed_timestamp_and_id_headers_are_invalid(preset, pv):
    provider = pv.provider(preset.name)
    headers = preset.sign()
    for name in preset.extra_headers:
        valid = headers[name]
        for garbage in [*_generic_garbage(valid), "-1", "+" + valid, valid + ".0", "1e9", "0x10", valid + " 1"]:
            if garbage == valid:
                continue
            mutated = {**headers, name: garbage}
            assert pv.outcome(provider, mutated) == "invalid_signature", (name, repr(garbage[:80]))


def test_every_single_character_change_is_refused(preset, pv):
    """Change each character of each signed header, one at a time: never accepted."""
    provider = pv.provider(preset.name)
    headers = preset.sign()
    for name in preset.required_headers:
        value = headers[name]
        for i, old in enumerate(value):
            for new in "0aA=,+/ é\udcff":
                if new == old:
                    continue
                mutated = {**headers, name: value[:i] + new + value[i + 1 :]}
                result = pv.outcome(provider, mutated)
                assert not result.startswith("accepted"), (name, i, new)
                assert result in ("invalid_signature", "missing_signature"), (name, i, new, result)


def test_body_that_is_not_utf8_is_verified_as_bytes(preset, pv):
    """The verifier signs raw bytes; whether they are JSON is the pipeline's question later.
    NOWPayments signs re-serialized JSON, so there an undecodable body is ``invalid_json``."""
    headers = preset.doc(preset.secrets[0], pv.NON_UTF8_BODY, pv.NOW, "msg_2Yx8") if preset.name != "nowpayments" else (
        {"x-nowpayments-sig": "ab" * 64})  # fmt: skip
    expected = "invalid_json" if preset.name == "nowpayments" else "accepted:0"
    assert pv.outcome(pv.provider(preset.name), headers, pv.NON_UTF8_BODY) == expected


def test_empty_body_signed_is_accepted(preset, pv):
    if preset.name == "nowpayments":
        assert pv.outcome(pv.provider(preset.name), {"x-nowpayments-sig": "ab" * 64}, b"") == "invalid_json"
        return
    headers = preset.sign(body=b"")
    assert pv.outcome(pv.provider(preset.name), headers, b"") == "accepted:0"
