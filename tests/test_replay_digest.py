"""Replays under a fresh event id: where the event id is not signed (GitHub's X-GitHub-Delivery,
Shopify's X-Shopify-Event-Id, ...), the digest of the signed content is claimed beside the id,
committed with it and released with it. On memory and on Redis state alike."""

from __future__ import annotations

import asyncio

import helpers_services as hs
import pytest

from gateway.app_state import SERVICES
from gateway.pipeline.runner import PIPELINE
from gateway.stores import Claim, StoreError
from gateway.stores.memory import MemoryStore

redis_state = hs.redis_state  # fixture

BODY = b'{"ref":"refs/heads/main","after":"8f1c2e","repository":{"full_name":"acme/app"}}'


def gh(delivery: str) -> dict[str, str]:
    return {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}


def replays(gateway, provider: str = "github") -> str:
    prefix = f'webhook_gateway_signed_content_replays_total{{provider="{provider}"}} '
    found = [line for line in gateway.metrics_text().splitlines() if line.startswith(prefix)]
    return found[0].removeprefix(prefix) if found else "absent"


@pytest.fixture(params=["memory", "redis"])
async def gw(request, make_gateway):
    if request.param == "memory":
        return await make_gateway()
    return await make_gateway(state=request.getfixturevalue("redis_state"))


async def test_a_captured_body_and_signature_under_a_fresh_delivery_id_is_not_forwarded_again(gw):
    captured = gw.sign("github", BODY, gh("delivery-1"))
    await gw.deliver_ok("github", BODY, gh("delivery-1"))
    replayed = {**captured, "X-GitHub-Delivery": "delivery-2-attacker"}
    resp = await gw.client.post(gw.url("github"), data=BODY, headers=replayed)
    data = await resp.json()
    assert resp.status == 200 and data["status"] == "duplicate", data
    assert len(gw.upstream.events) == 1
    assert replays(gw) == "1.0"
    # The replay's id was not burnt either: nothing else was stored for it.
    other = BODY.replace(b"8f1c2e", b"9a0b1c")
    await gw.deliver_ok("github", other, gh("delivery-2-attacker"))


async def test_a_failed_forward_does_not_burn_the_digest(gw):
    gw.upstream.then(500)
    resp = await gw.post("github", BODY, gh("delivery-1"))
    assert resp.status == 502
    # The same signed content again, under another id (a redelivery): it goes through.
    await gw.deliver_ok("github", BODY, gh("delivery-1-redelivered"))
    assert replays(gw) == "0.0"  # the series exists from the start, at 0


async def test_a_replay_while_the_first_is_in_flight_waits_for_it(gw):
    gw.upstream.then(("slow", 0.4))
    first = asyncio.create_task(gw.post("github", BODY, gh("delivery-1")))
    while gw.upstream.concurrent == 0:
        await asyncio.sleep(0.005)
    resp = await gw.post("github", BODY, gh("delivery-2"))
    data = await resp.json()
    assert resp.status == 200 and data["status"] == "duplicate", data
    assert (await first).status == 200
    assert len(gw.upstream.events) == 1


async def test_a_replay_while_the_first_fails_is_delivered_itself(gw):
    gw.upstream.then(("slow", 0.3, 500))
    first = asyncio.create_task(gw.post("github", BODY, gh("delivery-1")))
    while gw.upstream.attempts == 0 and gw.upstream.concurrent == 0:
        await asyncio.sleep(0.005)
    data = await gw.expect(200, "github", BODY, gh("delivery-2"))
    assert data["status"] == "forwarded"
    assert (await first).status == 502
    assert gw.upstream.ids() == ["delivery-2"]


async def test_same_id_retries_still_count_as_plain_duplicates(gw):
    await gw.deliver_ok("github", BODY, gh("delivery-1"))
    data = await gw.expect(200, "github", BODY, gh("delivery-1"))
    assert data["status"] == "duplicate"
    assert replays(gw) == "0.0"  # the series exists from the start, at 0
    assert 'webhook_gateway_dedup_hits_total{provider="github"} 1.0' in gw.metrics_text()


async def test_it_can_be_turned_off_per_provider(make_gateway):
    gateway = await make_gateway(providers={"github": {"dedup_signed_content": False}})
    await gateway.deliver_ok("github", BODY, gh("delivery-1"))
    await gateway.deliver_ok("github", BODY, gh("delivery-2"))


async def test_shopify_replay_under_a_fresh_event_id(gateway):
    body = b'{"id":820982911946154508,"financial_status":"paid","total_price":"49.90","currency":"EUR"}'
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Event-Id": "ev-1"}
    captured = gateway.sign("shopify", body, headers)
    await gateway.deliver_ok("shopify", body, headers)
    replayed = {**captured, "X-Shopify-Event-Id": "ev-2"}
    resp = await gateway.client.post(gateway.url("shopify"), data=body, headers=replayed)
    assert (await resp.json())["status"] == "duplicate"
    assert len(gateway.upstream.events) == 1


async def test_unverified_shadow_requests_never_claim_a_digest(make_gateway):
    gateway = await make_gateway(providers={"github": {"shadow": True}})
    resp = await gateway.post("github", BODY, gh("delivery-forged"), signed=False)
    assert (await resp.json())["status"] == "forwarded"
    await gateway.deliver_ok("github", BODY, gh("delivery-1"))  # the genuine one is not a "replay"


def test_defaults_follow_what_the_signature_covers(make_settings):
    settings = make_settings()
    on = {name for name, spec in settings.providers.items() if spec.dedup_signed_content}
    # GitHub and Shopify take their id from an unsigned header; Stripe, Slack and NOWPayments
    # (ids inside the signed body) and Standard Webhooks (webhook-id is signed) do not need it.
    assert on == {"github", "shopify"}


class FlakyDigestStore(MemoryStore):
    """A real memory store whose digest claims fail while ``down`` (a store error mid-request)."""

    down = True

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        if self.down and ":signed:" in key:
            raise StoreError("digest claim failed")
        return await super().claim(key, token, lease)


@pytest.mark.parametrize("policy", ["closed", "open"])
async def test_a_store_error_on_the_digest_claim_follows_the_dedup_policy(make_gateway, policy):
    gw = await make_gateway(state={"on_error": {"dedup": policy}})
    store = FlakyDigestStore()
    gw.app[SERVICES].store = store
    for stage in gw.app[PIPELINE].stages:  # the stages got the store in their constructors
        if hasattr(stage, "store"):
            stage.store = store
    resp = await gw.post("github", BODY, gh("delivery-1"))
    if policy == "closed":
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "store_unavailable"
        store.down = False  # the id claim was released: the provider's retry goes through
        data = await gw.expect(200, "github", BODY, gh("delivery-1"))
        assert data["status"] == "forwarded"
    else:
        assert (await resp.json())["status"] == "forwarded"  # open: the id claim alone
    assert f'webhook_gateway_store_errors_total{{concern="dedup",policy="{policy}"}} 1.0' in gw.metrics_text()
