# syntax=docker/dockerfile:1
#
# Webhook Gateway image.
#
#   docker build -t webhook-gateway:0.1.0 .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/gateway.yaml:/etc/webhook-gateway/gateway.yaml:ro" \
#     -v "$PWD/secrets:/etc/webhook-gateway/secrets:ro" \
#     webhook-gateway:0.1.0
#
# Two stages: `build` installs the package and its pinned dependencies (constraints.txt) into a
# virtualenv; `runtime` copies only that virtualenv onto a clean python:3.11-slim and runs it as
# an unprivileged user. No config and no secret is baked in: mount the config at
# /etc/webhook-gateway/gateway.yaml and the secrets (referenced as `file:/etc/webhook-gateway/
# secrets/<key>` in the config) at /etc/webhook-gateway/secrets. See docs/deployment.md.
#
# Pin the base by digest for reproducible builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .

ARG PYTHON_IMAGE=python:3.11-slim

# --- build ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/webhook-gateway \
    PATH=/opt/webhook-gateway/bin:$PATH

# The virtualenv lives at the same path in both stages (its scripts carry absolute shebangs).
RUN python -m venv "$VIRTUAL_ENV"

WORKDIR /src

# Dependencies first, in a layer of their own: rebuilt only when pyproject.toml or
# constraints.txt change, not on every source edit. Every version comes from constraints.txt.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['otlp']))" \
        > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

# The package itself (README.md is the project's readme in pyproject.toml).
COPY README.md ./
COPY gateway ./gateway
COPY dashboard ./dashboard
# The otlp extra: `tracing.exporter: otlp` works in the image (it is refused without the exporter).
RUN pip install -c constraints.txt '.[otlp]' \
 && pip check

# Smoke test of the installed package (not the source tree): the CLI starts, the embedded demo
# config and the packaged provider catalog load, and the SQL migrations that `migrate` and
# `events.migrate_on_start` apply were packaged.
WORKDIR /
RUN webhook-gateway --version \
 && webhook-gateway check > /dev/null \
 && python -c "from importlib import resources as r; \
m = r.files('gateway.events').joinpath('migrations'); \
assert m.is_dir() and any(f.name.endswith('.sql') for f in m.iterdir()), \
'gateway/events/migrations/*.sql is missing from the installed package (pyproject.toml package-data)'" \
 && python -c "import opentelemetry.exporter.otlp.proto.http.trace_exporter" \
 && pip uninstall --yes pip

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="webhook-gateway" \
      org.opencontainers.image.description="Verify, deduplicate and forward provider webhooks (aiohttp + uvloop)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID so Kubernetes' runAsNonRoot can verify it and fsGroup can match it.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway \
 && mkdir -p /etc/webhook-gateway/secrets

COPY --from=build /opt/webhook-gateway /opt/webhook-gateway

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes (bytecode was compiled
# at install time). The health check URL follows listen.port; change it if the config does.
ENV PATH=/opt/webhook-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEBHOOK_SECRETS_DIR=/etc/webhook-gateway/secrets \
    WEBHOOK_GATEWAY_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz

WORKDIR /opt/webhook-gateway
USER 10001:10001
EXPOSE 8080

# The gateway handles SIGTERM itself: readiness fails, it waits shutdown.drain_delay, then drains
# in-flight webhooks for up to shutdown.timeout (`docker stop -t` must allow for both).
STOPSIGNAL SIGTERM

# Docker only (Kubernetes ignores HEALTHCHECK and uses the chart's probes). The slim image has no
# curl: python's urllib raises, so exits non-zero, on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['WEBHOOK_GATEWAY_HEALTHCHECK_URL'], timeout=3).close()"]

ENTRYPOINT ["webhook-gateway"]
CMD ["run", "--config", "/etc/webhook-gateway/gateway.yaml"]
