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
    ({"upstream": {"queue": {"concurrency": 32, "hold": 16}}}, "upstream.queue.hold", "at least upstream.queue.conc"),
    ({"state": {"url": "mongodb://db"}}, "state.url", "supported: memory://"),
    ({"logging": {"level": "loud"}}, "logging.level", "must be one of"),
    ({"shutdown": {"drain_delay": "5s"}}, "shutdown.drain_delay", "must be a number"),
    ({"public_url": "webhooks.example.com"}, "public_url", "must start with http"),
    ({"upstream": {"url": "${GATEWAY_TEST_UNSET_VAR}"}}, "upstream.url", "GATEWAY_TEST_UNSET_VAR is not set"),
    ({"tracing": {"enabled": True, "exporter": "jaeger"}}, "tracing.exporter", "must be one of"),
    ({"unknown": 1}, "unknown", "unknown key"),
    (
        {"listen": {"port": 8300}, "dashboard": {"enabled": True, "listen": {"port": 8300}}},
        "dashboard.listen.port",
        "must differ from listen.port (0: the admin UI on listen.port), got 8300",
    ),
    (
        {"listen": {"port": 8300, "metrics_port": 9300}, "dashboard": {"listen": {"port": 9300}}},
        "dashboard.listen.port",
        "must differ from listen.metrics_port",
    ),
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


@pytest.mark.parametrize("value", ["$Q7mZpL2vX9kRt4WsY8nB3cJ6", "env:Q7mZpL2vX9kRt4WsY8nB3cJ6", "${NOT_A_REF"])
def test_a_secret_from_the_environment_may_look_like_a_reference(kit, value):
    """The broken-reference check is for text written in the file: a value the environment gave
    is the secret, whatever it starts with (it was refused, and the error showed most of it)."""
    data = kit.config_dict("http://127.0.0.1:9/events", providers={"stripe": {"secrets": ["${STRIPE_SECRET}"]}})
    settings = kit.build(data, env={"STRIPE_SECRET": value})
    assert settings.providers["stripe"].signature.secrets[0].reveal() == value.encode()


def test_a_default_in_the_file_is_checked_as_the_files_own_text(kit):
    """`${STRIPE_SECRET:-$STRIPE_SECRET_OLD}` with the variable unset: the default is the file's
    text, a mistyped reference, and is refused like one (it would be a guessable signing key)."""
    data = kit.config_dict(
        "http://127.0.0.1:9/events", providers={"stripe": {"secrets": ["${STRIPE_SECRET:-$STRIPE_SECRET_OLD}"]}}
    )  # fmt: skip
    with pytest.raises(ConfigError, match="looks like a shell-style reference"):
        kit.build(data, env={})


@pytest.mark.parametrize("blank", ["   ", "\t", "${BLANK}"])
def test_a_blank_secret_is_refused(kit, blank):
    data = kit.config_dict("http://127.0.0.1:9/events", providers={"stripe": {"secrets": [blank]}})
    with pytest.raises(ConfigError, match=r"providers\.stripe\.secrets\[0\]: must be a non-empty string"):
        kit.build(data, env={"BLANK": "  "})


def test_a_header_value_of_the_wrong_type_is_not_shown(kit):
    data = kit.config_dict(
        "http://127.0.0.1:9/events", upstream={"headers": {"Authorization": ["Bearer ${TOK}"]}}
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        kit.build(data, env={"TOK": "SECRETVALUE123"})
    assert "upstream.headers.Authorization" in str(caught.value)
    assert "SECRETVALUE123" not in str(caught.value) and "Bearer" not in str(caught.value)


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


# --------------------------------------------------------------------------- what a new user tripped on

BROKEN_REFERENCES = [
    ("$STRIPE_SECRET", "STRIPE_SECRET", "shell-style"),
    ("${STRIPE_SECRET", "STRIPE_SECRET", "unclosed"),
    ("${STRIPE_SECRET:-whsec_dev", "STRIPE_SECRET", "unclosed"),
    ("env:GITHUB_SECRET", "GITHUB_SECRET", "env:"),
]


@pytest.mark.parametrize(("written", "name", "what"), BROKEN_REFERENCES, ids=[c[0] for c in BROKEN_REFERENCES])
@pytest.mark.parametrize("where", ["provider", "api_keys"])
def test_a_secret_that_looks_like_a_broken_reference_is_refused(kit, written, name, what, where):
    """Used as a literal, anyone who guesses the text could sign webhooks (or call the API)."""
    if where == "provider":
        overrides = {"providers": {"stripe": {"secrets": [written]}}}
        key = "providers.stripe.secrets[0]"
    else:
        overrides = {"management": {"api_keys": ["a-real-key", written]}}
        key = "management.api_keys[1]"
    with pytest.raises(ConfigError) as caught:
        kit.build(kit.config_dict("http://127.0.0.1:9/events", **overrides), env={name: "set-but-unused"})
    message = str(caught.value)
    assert message.startswith(f"test.yaml: {key}: looks like "), message
    assert what in message and f'write "${{{name}}}"' in message, message


def test_secrets_that_only_contain_a_dollar_are_literals(kit):
    data = kit.config_dict("http://127.0.0.1:9/events", providers={"stripe": {"secrets": ["pa$$word-with-$IGNS"]}})
    assert kit.build(data).providers["stripe"].signature.secrets[0].reveal() == b"pa$$word-with-$IGNS"


def test_every_error_of_a_file_in_one_run(kit, tmp_path):
    overrides = {
        "listen": {"port": 70000},
        "limits": {"max_body": 5, "body_timeout": 0},
        "upstream": {"timeout": -1, "url": "${GATEWAY_TEST_UNSET_VAR}"},
        "logging": {"level": "loud"},
        "providers": {
            "stripe": {"timestamp": {"tolerance": -5}},
            "github": {"secrets": ["$GITHUB_SECRET", "file:/nonexistent/secret"]},
        },
    }
    expected = [
        "listen.port: must be <= 65535",
        "limits.max_body: unknown key",
        "limits.body_timeout: must be > 0",
        "upstream.url: environment variable GATEWAY_TEST_UNSET_VAR is not set",
        "upstream.timeout: must be > 0",
        "logging.level: must be one of",
        "providers.stripe.timestamp.tolerance: must be > 0",
        "providers.github.secrets[0]: looks like a shell-style reference",
        "providers.github.secrets[1]: cannot read secret file",
    ]
    with pytest.raises(ConfigError) as caught:
        kit.build(kit.config_dict("http://127.0.0.1:9/events", **overrides))
    lines = str(caught.value).splitlines()
    assert len(lines) == len(expected), lines
    for start in expected:
        assert sum(line.startswith(f"test.yaml: {start}") for line in lines) == 1, (start, lines)

    path = kit.write_config(tmp_path, "http://127.0.0.1:9/events", name="many.yaml", **overrides)
    result = cli("check", "--config", str(path))
    assert result.returncode == 2 and result.stdout == ""
    shown = result.stderr.splitlines()
    assert len(shown) == len(expected), result.stderr
    assert all(line.startswith(f"webhook-gateway: config error: {path}: ") for line in shown), result.stderr


def test_one_bad_value_is_one_error(kit):
    """A key whose ${VAR} is unset is not also reported as a bad URL; a provider whose secret is
    wrong is not also reported as having no secrets; a section that is not a mapping is not also
    missing its required keys."""
    overrides = {
        "upstream": {"url": "${GATEWAY_TEST_UNSET_VAR}"},
        "providers": {"stripe": {"secrets": ["env:STRIPE"]}},
        "state": "redis://oops",
    }
    with pytest.raises(ConfigError) as caught:
        kit.build(kit.config_dict("http://127.0.0.1:9/events", **overrides))
    assert [line.split(": ")[1] for line in str(caught.value).splitlines()] == [
        "upstream.url",
        "state",
        "providers.stripe.secrets[0]",
    ], str(caught.value)
    data = kit.config_dict("http://127.0.0.1:9/events")
    data["upstream"] = 5
    with pytest.raises(ConfigError) as caught:
        kit.build(data)
    assert str(caught.value) == "test.yaml: upstream: must be a mapping, got 5"


@pytest.mark.parametrize(("name", "shown"), [("standard-webhooks", "Standard Webhooks"), ("svix", "Svix")])
def test_check_warns_about_a_secret_shorter_than_the_provider_documents(kit, tmp_path, name, shown):
    import base64

    short = "whsec_" + base64.b64encode(b"k" * 16).decode()
    good = "whsec_" + base64.b64encode(b"k" * 32).decode()
    path = kit.write_config(tmp_path, "http://127.0.0.1:9/events", providers={name: {"secrets": [good, short]}})
    result = cli("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARNING: providers.")]
    assert warnings == [
        f"WARNING: providers.{name}.secrets[1] (#1) is 16 bytes; {shown} documents at least 24: "
        "generate a new one with the provider"
    ], result.stdout
    assert short not in result.stdout and "a2tr" not in result.stdout


def test_the_readme_check_command_works_as_written():
    """The README's Configure commands, run as a new user would (from the repository, in bash)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text("utf-8")
    block = re.search(r"```bash\n(export STRIPE_WEBHOOK_SECRET=.*?)```", readme, re.S)
    assert block, "the README's Configure block changed"
    lines = [line for line in block.group(1).splitlines() if " run " not in line]
    script = "\n".join(line.replace(".venv/bin/webhook-gateway", f"{sys.executable} -m gateway") for line in lines)
    env = {k: v for k, v in __import__("os").environ.items() if k != "STRIPE_WEBHOOK_SECRET"}
    result = subprocess.run(["bash", "-e", "-c", script], cwd=root, capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    assert "config/minimal.yaml: OK (2 providers" in result.stdout
