"""A broken config is refused at start with one line naming file, key and value; exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.errors import ConfigError
from gateway.settings.loader import load_config

BAD = [
    ({"listen": {"port": 70000}}, "listen.port", "must be <= 65535"),
    ({"listen": {"port": "http"}}, "listen.port", "must be an integer"),
    ({"upstream": {"url": "ftp://internal"}}, "upstream.url", "must start with http"),
    ({"upstream": {"timeout": -1}}, "upstream.timeout", "must be > 0, got -1"),
    ({"upstream": {"timeout": float("nan")}}, "upstream.timeout", "finite"),
    ({"upstream": {"headers": {"X-Token": None}}}, "upstream.headers.X-Token", "must be a string"),
    ({"upstream": {"headers": {"X-Token": "a\r\nInjected: 1"}}}, "upstream.headers.X-Token", "line breaks"),
    ({"upstream": {"mode": "carrier-pigeon"}}, "upstream.mode", "must be one of"),
    ({"providers": {"stripe": {"timestamp": {"tolerance": -5}}}}, "providers.stripe.timestamp.tolerance", "got -5"),
    ({"providers": {"stripe": {"signature": {"algorithm": "md5"}}}}, "providers.stripe.signature.algorithm", "'md5'"),
    ({"providers": {"stripe": {"max_body_bytes": 0}}}, "providers.stripe.max_body_bytes", "must be >= 1"),
    ({"providers": {"stripe": {"ip_allowlist": ["10.0.0.300"]}}}, "providers.stripe.ip_allowlist[0]", "not an IP"),
    ({"providers": {"stripe": {"rate_limit": {"rate": float("inf")}}}}, "providers.stripe.rate_limit.rate", "finite"),
    ({"providers": {"stripe": {"preset": "acme-pay"}}}, "providers.stripe.preset", "unknown preset"),
    ({"providers": {"stripe": {"secrets": []}}}, "providers.stripe", "no secrets configured"),
    (
        {"providers": {"stripe": {"secrets": ["file:/nonexistent/secret"]}}},
        "providers.stripe.secrets[0]",
        "cannot read",
    ),
    ({"providers": {"stripe": {"secrt": ["x"]}}}, "providers.stripe.secrt", "unknown key"),
    ({"providers": {"Stripe": {"secrets": ["x"]}}}, "providers.Stripe", "lowercase"),
    ({"providers": {"stats": {"preset": "stripe", "secrets": ["x"]}}}, "providers.stats", "management path"),
    ({"providers": {"custom": {"secrets": ["x"]}}}, "providers.custom.signature", "allow_unsigned"),
    ({"trusted_proxies": "10.0.0.0/8"}, "trusted_proxies", "must be a list"),
    ({"limits": {"body_timeout": 0}}, "limits.body_timeout", "must be > 0"),
    ({"limits": {"max_body": 5}}, "limits.max_body", "did you mean 'max_body_bytes'"),
    ({"rate_limits": {"per_source": {"rate": 10, "burst": 0}}}, "rate_limits.per_source.burst", "must be >= 1"),
    ({"dedup": {"lease": float("nan")}}, "dedup.lease", "finite"),
    ({"dedup": {"lease": 5}, "upstream": {"timeout": 10}}, "dedup.lease", "longer than upstream.timeout (10s)"),
    ({"state": {"url": "mongodb://db"}}, "state.url", "supported: memory://"),
    ({"logging": {"level": "loud"}}, "logging.level", "must be one of"),
    ({"shutdown": {"drain_delay": "5s"}}, "shutdown.drain_delay", "must be a number"),
    ({"public_url": "webhooks.example.com"}, "public_url", "must start with http"),
    ({"upstream": {"url": "${GATEWAY_TEST_UNSET_VAR}"}}, "upstream.url", "GATEWAY_TEST_UNSET_VAR is not set"),
    ({"tracing": {"enabled": True, "exporter": "jaeger"}}, "tracing.exporter", "must be one of"),
    ({"unknown": 1}, "unknown", "unknown key"),
]


@pytest.mark.parametrize(("overrides", "key", "reason"), BAD, ids=[case[1] for case in BAD])
def test_each_bad_value_names_file_key_and_reason(kit, overrides, key, reason):
    with pytest.raises(ConfigError) as caught:
        kit.build(kit.config_dict("http://127.0.0.1:9/events", **overrides))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"test.yaml: {key}"), message
    assert reason in message, message


@pytest.mark.parametrize(
    "overrides",
    [
        {"providers": {"stripe": {"secrets": "whsec_leaked_in_a_string"}}},
        {"management": {"api_keys": "whsec_leaked_in_a_string"}},
        {"providers": {"standard-webhooks": {"secrets": ["whsec_leaked!not_base64"]}}},
    ],
    ids=["secrets_not_a_list", "api_keys_not_a_list", "bad_base64"],
)
def test_a_config_error_never_shows_a_secret(kit, overrides):
    with pytest.raises(ConfigError) as caught:
        kit.build(kit.config_dict("http://127.0.0.1:9/events", **overrides))
    assert "leaked" not in str(caught.value)


def test_a_secret_from_the_environment(kit):
    data = kit.config_dict("http://127.0.0.1:9/events", providers={"stripe": {"secrets": ["${STRIPE_SECRET}"]}})
    settings = kit.build(data, env={"STRIPE_SECRET": "whsec_from_env"})
    assert settings.providers["stripe"].signature.secrets[0].reveal() == b"whsec_from_env"
    assert "whsec_from_env" not in repr(settings.providers["stripe"])


def test_settings_reprs_hide_connection_passwords_and_header_tokens(kit):
    data = kit.config_dict(
        "https://gw:upstream-pw-1@internal/events?token=upstream-token-2",
        upstream={"headers": {"Authorization": "Bearer upstream-header-3"}},
        state={"url": "redis://:redis-pw-4@redis:6379/0"},
        events={"url": "postgresql://app:pg-pw-5@db/gateway?password=pg-pw-6"},
    )
    shown = repr(kit.build(data))
    for secret in ("upstream-pw-1", "upstream-token-2", "upstream-header-3", "redis-pw-4", "pg-pw-5", "pg-pw-6"):
        assert secret not in shown
    for secret in kit.ALL_SECRETS:
        assert secret not in shown
    assert "redis://***@redis:6379/0" in shown and "Authorization" in shown


def test_a_secret_from_a_file(kit, tmp_path):
    path = tmp_path / "stripe-secret"
    path.write_text("whsec_from_file\n")
    data = kit.config_dict("http://127.0.0.1:9/events", providers={"stripe": {"secrets": [f"file:{path}"]}})
    assert kit.build(data).providers["stripe"].signature.secrets[0].reveal() == b"whsec_from_file"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("listen: {port: 8080\n", "invalid YAML at line"),
        ("", "must be a mapping of settings"),
        ("- a\n- b\n", "must be a mapping of settings"),
    ],
    ids=["syntax", "empty", "list"],
)
def test_files_that_are_not_a_config(tmp_path, text, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason) as caught:
        load_config(str(path), env={})
    assert str(caught.value).startswith(str(path))


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(str(tmp_path / "absent.yaml"), env={})


# --------------------------------------------------------------------------- through the CLI


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"providers": {"stripe": {"timestamp": {"tolerance": -5}}}}, "providers.stripe.timestamp.tolerance"),
        ({"listen": {"port": 70000}}, "listen.port"),
        ({"providers": {"stripe": {"secrets": "whsec_leaked_in_a_string"}}}, "providers.stripe.secrets"),
    ],
    ids=["tolerance", "port", "secret"],
)
def test_the_cli_exits_2_with_one_line(kit, tmp_path, command, overrides, key):
    path = kit.write_config(tmp_path, "http://127.0.0.1:9/events", name="bad.yaml", **overrides)
    result = cli(command, "--config", str(path))
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and key in lines[0]
    assert "Traceback" not in result.stderr and "leaked" not in result.stderr


@pytest.mark.parametrize("command", ["check", "run"])
def test_the_cli_exits_2_on_unparseable_yaml(tmp_path, command):
    path = tmp_path / "broken.yaml"
    path.write_text("upstream: [unclosed\n")
    result = cli(command, "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr and "line" in result.stderr


def test_the_cli_exits_2_on_a_missing_file(tmp_path):
    result = cli("run", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr and result.stderr.count("\n") == 1


def test_run_exits_2_when_the_optional_exporter_is_missing(kit, tmp_path):
    """The extra is installed for the tests; the run below hides it, as on a machine without it."""
    path = kit.write_config(tmp_path, "http://127.0.0.1:9/e", tracing={"enabled": True, "exporter": "otlp"})
    hide = "import sys; sys.modules['opentelemetry.exporter.otlp'] = None; from gateway.cli import main; "
    result = subprocess.run(
        [sys.executable, "-c", hide + f"sys.exit(main(['run', '--config', {str(path)!r}]))"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "tracing.exporter" in result.stderr and "webhook-gateway[otlp]" in result.stderr
    assert "Traceback" not in result.stderr
