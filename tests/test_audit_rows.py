"""Every forwarded or queued event has its audit row, on a real PostgreSQL, whatever its text holds.

A correctly signed event may carry what PostgreSQL's ``text`` and ``jsonb`` refuse: a NUL in its
id or type, or a header with bytes that are not UTF-8 (a proxy adding ``X-Geo-City`` in Latin-1).
Its stored copy is escaped, never dropped (sync mode lost the row silently) nor refused (queue
mode answered 400, which a provider treats as final). A row that still cannot be written is
logged and counted. Also here: ``delivered_at`` in sync mode, the header masks of the stored copy,
and management filters a database cannot take.
"""

from __future__ import annotations

import json
import logging
import re

import helpers_services as hs
import pytest

from gateway.app_state import SERVICES

pg_database, pg_dsn, redis_state = hs.pg_database, hs.pg_dsn, hs.redis_state  # fixtures

LATIN1_CITY = b"M\xfcnchen"  # "München" in Latin-1: not UTF-8


@pytest.fixture
def pg_gateway(make_gateway, pg_dsn, redis_state):
    """``await pg_gateway(mode)``: a gateway whose event store is this test's PostgreSQL database."""

    async def make(mode: str = "sync", events=None, **overrides):
        upstream = {"mode": mode, "queue": {"poll_interval": 0.05}} if mode == "queue" else {}
        state = redis_state if mode == "queue" else {}
        return await make_gateway(
            upstream=upstream, state=state, events={"url": pg_dsn, "timeout": 2.0, **(events or {})}, **overrides
        )

    return make


async def rows(dsn: str, provider: str = "stripe") -> list:
    return await hs.pg_fetch(dsn, "SELECT * FROM webhook_events WHERE provider = $1 ORDER BY id", provider)


async def raw_post(gw, kit, body: bytes, extra: bytes = b"") -> tuple[int, dict]:
    """POST a signed Stripe webhook over a plain socket, with ``extra`` raw header lines."""
    signed = gw.sign("stripe", body)
    head = f"POST {kit.API}/stripe/ HTTP/1.1\r\nHost: gw\r\n"
    head += f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    status, _, answer = await kit.raw_exchange(gw.host, gw.port, [head.encode() + extra + b"\r\n" + body])
    return status, json.loads(answer) if answer else {}


async def api(gw, kit, path: str):
    resp = await gw.get(path)
    return resp.status, await resp.json()


@pytest.mark.parametrize("mode", ["sync", "queue"])
async def test_events_with_text_postgres_refuses_are_stored_escaped(pg_gateway, kit, pg_dsn, mode):
    gw = await pg_gateway(mode)
    ok = 200 if mode == "sync" else 202
    assert (await gw.post("stripe", kit.stripe_body("evt_nul\x00id"))).status == ok
    assert (await gw.post("stripe", kit.stripe_body("evt_type", etype="payment\x00x"))).status == ok
    status, answer = await raw_post(gw, kit, kit.stripe_body("evt_latin1"), b"X-Geo-City: " + LATIN1_CITY + b"\r\n")
    assert status == ok, answer

    await hs.eventually(lambda: _count(pg_dsn, 3))
    stored = {r["event_id"]: r for r in await rows(pg_dsn)}
    assert set(stored) == {"evt_nul\\x00id", "evt_type", "evt_latin1"}
    assert stored["evt_type"]["event_type"] == "payment\\x00x"
    assert json.loads(stored["evt_latin1"]["headers"])["X-Geo-City"] == "M\\xfcnchen"
    # The upstream got every event as it came, NUL and all.
    await hs.eventually(lambda: sorted(gw.upstream.ids()) == sorted(["evt_nul\x00id", "evt_type", "evt_latin1"]))
    # ... and the API shows the stored copy (valid JSON, no 500).
    status, listed = await api(gw, kit, f"{kit.API}/events/?provider=stripe")
    assert status == 200 and len(listed["events"]) == 3
    latin1 = next(e for e in listed["events"] if e["event_id"] == "evt_latin1")
    status, detail = await api(gw, kit, f"{kit.API}/events/{latin1['id']}/")
    assert status == 200 and detail["event"]["headers"]["X-Geo-City"] == "M\\xfcnchen"


async def _count(dsn: str, n: int) -> bool:
    return len(await rows(dsn)) == n


async def test_sync_mode_rows_have_delivered_at_in_postgres_and_the_api(pg_gateway, kit, pg_dsn):
    gw = await pg_gateway("sync")
    await gw.deliver_ok("stripe", kit.stripe_body("evt_when"))
    await hs.eventually(lambda: _count(pg_dsn, 1))
    [row] = await rows(pg_dsn)
    assert row["status"] == "delivered" and row["delivered_at"] is not None
    assert row["delivered_at"] >= row["received_at"]
    status, detail = await api(gw, kit, f"{kit.API}/events/{row['id']}/")
    assert status == 200 and detail["event"]["delivered_at"] is not None


async def test_sync_mode_rows_have_delivered_at_in_the_memory_store(gateway, kit):
    await gateway.deliver_ok("stripe", kit.stripe_body("evt_when_mem"))
    status, listed = await api(gateway, kit, f"{kit.API}/events/")
    assert status == 200
    [event] = listed["events"]
    assert event["status"] == "delivered" and event["delivered_at"] is not None


async def test_an_audit_row_written_during_a_postgres_outage_arrives_when_it_is_back(pg_gateway, kit, pg_dsn):
    host_port = pg_dsn.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = await hs.TcpProxy(host, int(port)).start()
    gw = await pg_gateway("sync", events={"url": pg_dsn.replace(host_port, f"127.0.0.1:{proxy.port}")})
    store = gw.app[SERVICES].events
    try:
        await gw.deliver_ok("stripe", kit.stripe_body("evt_before_blip"))
        await hs.eventually(lambda: _count(pg_dsn, 1))
        await proxy.cut()
        await gw.deliver_ok("stripe", kit.stripe_body("evt_during_blip"))  # sync mode: forwarded
        await hs.eventually(lambda: store.write_failures >= 1)
        await proxy.restore()
        await hs.eventually(lambda: _count(pg_dsn, 2), timeout=15)
    finally:
        await proxy.cut()
    assert re.findall(r"^webhook_gateway_audit_rows_lost_total\{.*\} (?!0\.0$).*$", gw.metrics_text(), re.M) == []


async def test_an_audit_row_that_cannot_be_written_is_logged_and_counted(make_gateway, kit, caplog):
    dead = f"postgresql://gw@127.0.0.1:{kit.free_port()}/nowhere"  # nothing listens there
    gw = await make_gateway(events={"url": dead, "timeout": 0.5})
    store = gw.app[SERVICES].events
    caplog.set_level(logging.ERROR, "gateway.events")
    await gw.deliver_ok("stripe", kit.stripe_body("evt_lost"))
    await hs.eventually(lambda: store.write_failures >= 1)  # held, retried every second...
    await store.close()  # ... until the gateway stops: then it is lost, and says so
    line = 'webhook_gateway_audit_rows_lost_total{reason="unavailable"} 1.0'
    assert line in gw.metrics_text()
    [record] = [r for r in caplog.records if r.getMessage() == "audit rows lost"]
    assert record.count == 1 and record.events == ["stripe/evt_lost"]


CREDENTIAL_HEADERS = {
    "X-Auth-Token": "tok-secret-1",
    "X-Hub-Signature": "sha1=0123456789abcdef",
    "X-Vendor-Token": "tok-secret-2",
    "X-Client-Secret": "sec-secret-3",
    "X-Relay-Signature": "sig-secret-4",
    "X-Trace": "not-a-secret",
}


async def stored_headers_of(gw, kit, event_id: str, headers: dict[str, str]) -> dict[str, str]:
    await gw.deliver_ok("stripe", kit.stripe_body(event_id), headers)
    _, listed = await api(gw, kit, f"{kit.API}/events/?event_id={event_id}")
    _, detail = await api(gw, kit, f"{kit.API}/events/{listed['events'][0]['id']}/")
    return detail["event"]["headers"]


async def test_credential_looking_headers_are_masked_by_default(gateway, kit):
    stored = await stored_headers_of(gateway, kit, "evt_masks", CREDENTIAL_HEADERS)
    for name in CREDENTIAL_HEADERS:
        assert stored[name] == ("not-a-secret" if name == "X-Trace" else "[REDACTED]"), name
    assert stored["Stripe-Signature"] == "[REDACTED]"


async def test_header_masks_are_configurable(make_gateway, kit):
    gw = await make_gateway(events={"redact_headers": ["x-trace", "X-Geo-*"]})
    headers = {**CREDENTIAL_HEADERS, "X-Geo-City": "Berlin", "Authorization": "Bearer abc"}
    stored = await stored_headers_of(gw, kit, "evt_custom_masks", headers)
    assert stored["X-Trace"] == stored["X-Geo-City"] == "[REDACTED]"
    assert stored["X-Auth-Token"] == "tok-secret-1"  # the defaults were replaced...
    assert stored["Authorization"] == stored["Stripe-Signature"] == "[REDACTED]"  # ...never these


async def test_a_nul_in_a_management_filter_is_a_400_not_a_store_failure(pg_gateway, kit):
    gw = await pg_gateway("sync")
    for query in ("provider=%00", "event_id=a%00b", "event_type=%00", "status=%00"):
        status, body = await api(gw, kit, f"{kit.API}/events/?{query}")
        assert status == 400 and body["error"]["code"] == "invalid_parameter", (query, body)
    status, body = await api(gw, kit, f"{kit.API}/dead-letters/?provider=%00")
    assert status == 400, body
    assert re.findall(r"^webhook_gateway_store_errors_total\{.*\} (?!0\.0$).*$", gw.metrics_text(), re.M) == []
    ready = await gw.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"]["events"] is True


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("evt_1", "evt_1"),
        ("ünïcode ✓", "ünïcode ✓"),  # valid Unicode is kept as it is
        ("a\\b", "a\\b"),  # so is a backslash in text that needs no escaping
        ("a\x00b", "a\\x00b"),
        ("M\udcfcnchen", "M\\xfcnchen"),  # a Latin-1 byte, as aiohttp's surrogateescape holds it
        ("\ud800x", "\\ud800x"),  # any other lone surrogate
        ("a\\b\x00", "a\\\\b\\x00"),  # escaped text doubles its backslashes
    ],
)
def test_storable_escapes_only_what_postgres_refuses(sent, stored):
    from gateway.escape import storable

    assert storable(sent) == stored
    stored.encode("utf-8")  # always encodable, never a NUL
    assert "\x00" not in stored


DEEP = b"[" * 1500 + b"]" * 1500  # deeper than the stdlib's recursion allows (orjson refuses it too)


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        (b'{"token":"t","b":"\\ud800"}', b'{"token":"[REDACTED]","b":"\\ud800"}'),  # re-escaped, not a 500
        (b'["x","\\ud800"]', b'["x","\\ud800"]'),
        (b"token=t&b=2", b"token=t&b=2"),  # a form is not JSON: nothing to mask in it
        (b"[" * 3000 + b"=1", b'"[REDACTED]"'),  # unreadable as JSON only for its depth: masked whole
        (b'{"a":' + DEEP + b',"token":"t"}', b'"[REDACTED]"'),
        (b'{"token": 1e400}', b'{"token":"[REDACTED]"}'),  # beyond a double: the stdlib reads it
    ],
)
def test_redaction_never_fails_and_never_stores_what_it_could_not_mask(body, stored):
    from gateway.redact import parse_redact_path, redact_body, redact_event

    paths = (parse_redact_path("token"),)
    assert redact_body(body, paths) == stored
    envelope = b'{"id":"e","data":{"payload":' + body + b"}}"
    redacted = redact_event(envelope, paths)
    if stored == b'"[REDACTED]"':
        assert redacted == stored
    elif stored == body and not body.startswith((b"{", b"[")):  # the envelope of a form is not JSON here
        assert redacted == envelope
    else:
        assert json.loads(redacted)["data"]["payload"] == json.loads(stored)
