"""A provider without event ids dedups on what it signed, not on the bytes it happened to send."""

from __future__ import annotations

import json


async def test_a_reformatted_copy_of_a_signed_ipn_is_a_duplicate(gateway):
    """NOWPayments signs sorted-key JSON, so a copy with other key order and whitespace still
    verifies under the original signature: it must not pass as a new event."""
    original = b'{"payment_id":7,"payment_status":"finished","price_amount":25.5,"price_currency":"usd"}'
    headers = gateway.sign("nowpayments", original)
    first = await gateway.client.post(gateway.url("nowpayments"), data=original, headers=headers)
    assert first.status == 200 and (await first.json())["status"] == "forwarded"

    data = json.loads(original)
    reordered = json.dumps(dict(reversed(list(data.items()))), indent=2).encode()
    assert reordered != original
    copy = await gateway.client.post(gateway.url("nowpayments"), data=reordered, headers=headers)
    body = await copy.json()
    assert copy.status == 200, body
    assert body["status"] == "duplicate"
    assert len(gateway.upstream.events) == 1
