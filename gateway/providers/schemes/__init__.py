"""Signature schemes, both directions (verify and sign), chosen by ``signature.canonicalizer``.

The YAML template (``template.py``) is the default scheme. A provider whose scheme YAML cannot
express has one module here holding its parsing, verification input and signing: ``twilio``
(URL + sorted form), ``adyen`` and ``mailgun`` (signatures inside the body). A provider that only
re-serializes the body before the template applies has a body canonicalizer instead
(``nowpayments.sorted_json``, ``paypal.crc32``; ``template.CANONICALIZERS``).
"""

from __future__ import annotations

from gateway.providers.schemes.adyen import Adyen
from gateway.providers.schemes.base import Scheme
from gateway.providers.schemes.mailgun import Mailgun
from gateway.providers.schemes.template import CANONICALIZERS, Template
from gateway.providers.schemes.twilio import Twilio
from gateway.providers.spec import SignatureSpec

TEMPLATE = Template()
#: Schemes in code, by the name YAML gives them.
SCHEMES: dict[str, Scheme] = {s.name: s for s in (Twilio(), Adyen(), Mailgun())}
#: Every name ``signature.canonicalizer`` accepts: a scheme or a body canonicalizer.
NAMES = frozenset({*SCHEMES, *CANONICALIZERS})


def scheme_of(spec: SignatureSpec) -> Scheme:
    return SCHEMES.get(spec.scheme, TEMPLATE)


__all__ = ["CANONICALIZERS", "NAMES", "SCHEMES", "TEMPLATE", "Scheme", "scheme_of"]
