"""``webhook-gateway check`` and key rotation: each stored event records which key verified it
(``secret_index``, migration 002), and ``check`` warns about a non-first key that has not matched
for ``rotation_warn_after`` (per provider, or gateway-wide), or says the data is not there."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import helpers_services as hs
import pytest
import yaml

from gateway import cli
from gateway.commands.rotation import Usage, report
from gateway.providers.signer import sign

pg_database, pg_dsn = hs.pg_database, hs.pg_dsn  # fixtures
NOW = datetime(2026, 1, 10, tzinfo=UTC)


def write_config(tmp_path: Path, events_url: str = "memory://", **providers) -> str:
    data = {
        "upstream": {"url": "http://127.0.0.1:9/"},
        "events": {"url": events_url, "timeout": 2},
        "providers": providers or {"stripe": {"secrets": ["whsec_new", "whsec_old"]}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run_check(config: str, capsys) -> str:
    assert cli.main(["check", "-c", config]) == 0
    return capsys.readouterr().out


def test_memory_store_says_the_data_is_not_available(tmp_path, capsys):
    out = run_check(write_config(tmp_path), capsys)
    assert "rotation: stripe: 2 keys; which one matched is not available: events.url is not PostgreSQL" in out
    assert "whsec_old" not in out


def test_single_key_providers_are_not_mentioned(tmp_path, capsys):
    out = run_check(write_config(tmp_path, stripe={"secrets": ["whsec_only"]}), capsys)
    assert "rotation" not in out


def settings_for(make_settings, **stripe):
    return make_settings(providers={"stripe": {"secrets": ["whsec_new", "whsec_old", "whsec_older"], **stripe}})


def test_report_warns_about_a_key_unused_for_the_period(make_settings):
    settings = settings_for(make_settings)
    usage = Usage({("stripe", 0): NOW, ("stripe", 1): NOW - timedelta(days=8), ("stripe", 2): NOW - timedelta(hours=1)},
                  since=NOW - timedelta(days=30))  # fmt: skip
    lines = report(settings, usage, NOW)
    assert lines[0].startswith("WARNING: rotation: stripe: key #1 (#1) has not matched for 7d (last matched 8d ago)")
    assert lines[1] == "rotation: stripe: key #2 (#2) last matched 1h ago: still in use"


def test_report_never_matched_and_not_enough_history(make_settings):
    settings = settings_for(make_settings, rotation_warn_after="2d")
    old = Usage({("stripe", 0): NOW}, since=NOW - timedelta(days=3))
    assert "no stored event matched it" in report(settings, old, NOW)[0]
    young = Usage({("stripe", 0): NOW}, since=NOW - timedelta(hours=3))
    assert "not enough history yet (need 2d" in report(settings, young, NOW)[0]
    nothing = Usage({}, since=None)
    assert "not enough history" in report(settings, nothing, NOW)[0]


def test_gateway_wide_period_and_provider_override(make_settings):
    settings = make_settings(
        rotation_warn_after="1h",
        providers={
            "stripe": {"secrets": ["a", "b"]},
            "github": {"secrets": ["c", "d"], "rotation_warn_after": 86400 * 30},
        },
    )
    usage = Usage(
        {("stripe", 1): NOW - timedelta(hours=2), ("github", 1): NOW - timedelta(days=2)}, NOW - timedelta(days=60)
    )
    lines = report(settings, usage, NOW)
    assert any(line.startswith("WARNING: rotation: stripe: key #1") for line in lines)
    assert any(line.startswith("rotation: github: key #1") and "still in use" in line for line in lines)


@pytest.mark.parametrize("bad", ["7 days", "-1d", "0", "d", True, "1y"])
def test_bad_durations_are_config_errors(make_settings, bad):
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="rotation_warn_after: must be a duration"):
        make_settings(providers={"stripe": {"rotation_warn_after": bad}})


async def test_the_event_store_records_which_key_matched(make_gateway, pg_dsn):
    gateway = await make_gateway(events={"url": pg_dsn}, providers={"stripe": {"secrets": ["whsec_new", "whsec_old"]}})
    spec = gateway.settings.providers["stripe"]
    for index, event_id in ((1, "evt_rot_old"), (0, "evt_rot_new")):
        body = json.dumps({"id": event_id, "type": "charge.pending", "data": {"object": {}}}).encode()
        headers = sign(spec, body, gateway.settings.webhook_url("stripe"), secret_index=index)
        resp = await gateway.client.post(gateway.url("stripe"), data=body, headers=headers)
        assert resp.status == 200

    async def stored():
        rows = await hs.pg_fetch(pg_dsn, "SELECT event_id, secret_index FROM webhook_events ORDER BY event_id")
        return rows if len(rows) == 2 else None

    rows = await hs.eventually(stored)
    assert {r["event_id"]: r["secret_index"] for r in rows} == {"evt_rot_new": 0, "evt_rot_old": 1}


async def test_check_reads_postgresql(tmp_path, capsys, pg_dsn):
    import asyncpg

    from gateway.events.postgres import apply_migrations

    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        await apply_migrations(pool)
        now = datetime.now(UTC)
        rows = [
            ("stripe", "e1", now - timedelta(days=20), 0), ("stripe", "e2", now - timedelta(days=9), 1),
            ("stripe", "e3", now, 0), ("github", "g1", now - timedelta(days=20), 0), ("github", "g2", now, 1),
        ]  # fmt: skip
        await pool.executemany(
            "INSERT INTO webhook_events (provider, event_id, received_at, status, body, event, secret_index) "
            "VALUES ($1, $2, $3, 'delivered', '', '', $4)",
            rows,
        )
    finally:
        await pool.close()
    config = write_config(
        tmp_path, pg_dsn, stripe={"secrets": ["whsec_new", "whsec_old"]}, github={"secrets": ["gh-new", "gh-old"]}
    )
    out = await __import__("asyncio").to_thread(run_check, config, capsys)
    assert (
        "WARNING: rotation: stripe: key #1 (#1) has not matched for 7d (last matched 9d ago): it can be retired" in out
    )
    assert "rotation: github: key #1 (#1) last matched" in out and "still in use" in out
    assert "whsec_old" not in out and "gh-old" not in out


async def test_check_without_the_migration_says_so(tmp_path, capsys, pg_database):
    import asyncio

    fresh = hs.dsn_for(hs.create_database())
    try:
        out = await asyncio.to_thread(run_check, write_config(tmp_path, fresh), capsys)
    finally:
        hs.drop_database(fresh.rsplit("/", 1)[-1])
    assert "not available: the event store lacks the secret_index column: run `webhook-gateway migrate`" in out


async def test_check_with_postgresql_down_says_so(tmp_path, capsys):
    import asyncio

    out = await asyncio.to_thread(run_check, write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none"), capsys)
    assert "which one matched is not available: cannot connect to PostgreSQL" in out
