#!/usr/bin/env bash
# Build the image from the Dockerfile without a Docker daemon, and run it for real.
#
#   bash scripts/image.sh build   # make image
#   bash scripts/image.sh test    # make image-test (builds first, then runs it)
#
# build: buildah (--isolation chroot, vfs storage). The base is BASE_IMAGE when given (any image
#   buildah can pull or has, e.g. python:3.11-slim@sha256:...); otherwise a Debian bookworm rootfs
#   made here by mmdebstrap from Debian's packages (python3, python3-venv), imported once as
#   localhost/webhook-gateway-base:bookworm. The host's CA bundle is mounted for the build's RUN
#   steps (pip trusts what the host trusts, a TLS-inspecting proxy included): none of it is in the image.
# test: the image runs (podman, runc) as its non-root user with a read-only root filesystem, the
#   config and secret mounted read-only and /tmp as tmpfs; /healthz, /readyz and one signed Stripe
#   webhook are checked against a real upstream on loopback, then SIGTERM must end it with 0.
# A step this machine cannot do is named with the reason; the steps after it still run, and the
# script exits non-zero (CI sees it).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=${IMAGE:-localhost/webhook-gateway:$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")}
BASE_IMAGE=${BASE_IMAGE:-}
LOCAL_BASE=localhost/webhook-gateway-base:bookworm
WORK=${WORK:-.cache/image}
PY=${PY:-.venv/bin/python}
BUILDAH=(buildah --storage-driver vfs)
PODMAN=(podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs)
failed=()

say() { echo ">> $*"; }
fail() { echo "!! $1: $2" >&2; failed+=("$1"); }

need() {  # need TOOL DEBIAN-PACKAGE (says what it does on stderr: base() returns a name on stdout)
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "$1 missing; installing Debian's $2" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    fi
    command -v "$1" >/dev/null
}

base() {
    if [ -n "$BASE_IMAGE" ]; then echo "$BASE_IMAGE"; return; fi
    if "${BUILDAH[@]}" inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then echo "$LOCAL_BASE"; return; fi
    need mmdebstrap mmdebstrap || { fail "base" "mmdebstrap is not installed and cannot be (not root?)"; return 1; }
    mkdir -p "$WORK"
    say "base rootfs: mmdebstrap bookworm (python3, python3-venv) -> $LOCAL_BASE" >&2
    # Documentation, man pages and locales left out: not needed at run time.
    mmdebstrap --variant=minbase --include=python3,python3-venv,python-is-python3,passwd,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        bookworm "$WORK/base.tar" >&2 || { fail "base" "mmdebstrap failed"; return 1; }
    local ctr
    ctr=$("${BUILDAH[@]}" from scratch) &&
        "${BUILDAH[@]}" add "$ctr" "$WORK/base.tar" / >/dev/null &&
        "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr" &&
        "${BUILDAH[@]}" commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null || { fail "base" "buildah import failed"; return 1; }
    rm -f "$WORK/base.tar"
    echo "$LOCAL_BASE"
}

build() {
    need buildah buildah || { fail "build" "buildah is not installed and cannot be (not root?)"; return; }
    local from volumes=()
    from=$(base) || return
    local ca=/etc/ssl/certs/ca-certificates.crt
    # pip in the build trusts what the host trusts (a TLS-inspecting proxy's CA included): the
    # host's bundle is mounted for the RUN steps only, never copied into a layer (the image keeps
    # Debian's own bundle; an empty /etc/pip.conf is left where the mount point was).
    if [ -f "$ca" ]; then
        mkdir -p "$WORK" && printf '[global]\ncert = %s\n' "$ca" > "$WORK/pip.conf"
        volumes=(--volume "$ca:$ca:ro" --volume "$PWD/$WORK/pip.conf:/etc/pip.conf:ro")
        say "pip in the build uses the host's CA bundle ($ca, mounted for RUN steps only)"
    fi
    say "buildah bud --isolation chroot (vfs) --build-arg PYTHON_IMAGE=$from -t $IMAGE"
    local start=$SECONDS
    "${BUILDAH[@]}" bud --isolation chroot --format docker --layers=false "${volumes[@]}" \
        --build-arg PYTHON_IMAGE="$from" -t "$IMAGE" . >"$WORK/build.log" 2>&1 ||
        { tail -20 "$WORK/build.log" >&2; fail "build" "buildah bud failed (log: $WORK/build.log)"; return; }
    say "built $IMAGE in $((SECONDS - start))s"
    "${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}  size {{.Size}}' "$IMAGE"
    say "user: $("${BUILDAH[@]}" inspect --type image --format '{{.Docker.Config.User}}' "$IMAGE")"
}

run_test() {
    build  # always from the current tree: a tag left by an earlier build proves nothing
    [ ${#failed[@]} = 0 ] || return
    need podman podman && need runc runc || { fail "run" "podman/runc not installed and cannot be"; return; }
    local dir port up name="webhook-gateway-image-test"
    dir=$(mktemp -d) && mkdir -p "$dir/etc/secrets"
    port=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
    up=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
    printf 'whsec_%s\n' "$(head -c 24 /dev/urandom | base64)" > "$dir/etc/secrets/stripe"
    chmod 0444 "$dir/etc/secrets/stripe"
    cat > "$dir/etc/gateway.yaml" <<EOF
listen: {host: 127.0.0.1, port: $port}
public_url: http://127.0.0.1:$port
upstream: {url: "http://127.0.0.1:$up/events", timeout: 2.0}
shutdown: {drain_delay: 0, timeout: 5}
providers:
  stripe:
    secrets: ["file:/etc/webhook-gateway/secrets/stripe"]
EOF
    # The signer on the host reads the same secret through the host path.
    sed "s#/etc/webhook-gateway/secrets#$dir/etc/secrets#" "$dir/etc/gateway.yaml" > "$dir/host.yaml"
    $PY tests/helpers_proc.py upstream "$up" >"$dir/upstream.log" 2>&1 &
    local upstream_pid=$!
    "${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1
    # The sandbox may forbid raising limits: ask for modest ones (lowering is always allowed).
    if ! "${PODMAN[@]}" run -d --name "$name" --network host --read-only --user 10001:10001 \
        --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --cap-drop ALL --security-opt no-new-privileges \
        --no-healthcheck \
        -v "$dir/etc:/etc/webhook-gateway:ro" --tmpfs /tmp:rw,size=64m "$IMAGE" >/dev/null 2>"$dir/run.err"; then
        fail "run" "podman run failed: $(tail -1 "$dir/run.err")"
        kill "$upstream_pid"; return
    fi
    probe "$port" "$dir" "$name" "$up"
    say "SIGTERM (podman stop -t 15)"
    "${PODMAN[@]}" stop -t 15 "$name" >/dev/null
    local code
    code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$name")
    [ "$code" = 0 ] && say "exited $code after SIGTERM" || fail "stop" "exit code $code after SIGTERM"
    "${PODMAN[@]}" logs "$name" > "$dir/gateway.log" 2>&1; "${PODMAN[@]}" rm "$name" >/dev/null
    kill "$upstream_pid"
    [ ${#failed[@]} = 0 ] && rm -rf "$dir" || echo "   logs kept in $dir" >&2
}

probe() {  # probe PORT DIR CONTAINER UPSTREAM-PORT
    local base="http://127.0.0.1:$1" dir=$2 name=$3 i
    for i in $(seq 1 100); do
        curl -fsS "$base/healthz" >/dev/null 2>&1 && break
        [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$name")" = true ] || break
        sleep 0.2
    done
    curl -fsS "$base/healthz" && echo || { fail "healthz" "no 200 ($("${PODMAN[@]}" logs "$name" 2>&1 | tail -3))"; return; }
    curl -fsS "$base/readyz" && echo || fail "readyz" "no 200"
    say "user in the container: $("${PODMAN[@]}" exec "$name" id -u):$("${PODMAN[@]}" exec "$name" id -g)"
    [ "$("${PODMAN[@]}" exec "$name" id -u)" = 10001 ] || fail "user" "not 10001"
    "${PODMAN[@]}" exec "$name" touch /opt/webhook-gateway/probe 2>/dev/null &&
        fail "read-only" "the root filesystem is writable" || say "root filesystem: read-only (touch refused)"
    .venv/bin/webhook-gateway send stripe --config "$dir/host.yaml" --url "$base" | tee "$dir/send.out" ||
        { fail "webhook" "the signed webhook was not accepted"; return; }
    grep -q '"forwarded"' "$dir/send.out" || { fail "webhook" "not forwarded"; return; }
    local accepted
    accepted=$(curl -fsS "http://127.0.0.1:$4/_state" | $PY -c "import json, sys; print(sum(json.load(sys.stdin)['counts'].values()))")
    [ "$accepted" = 1 ] && say "signed Stripe webhook: forwarded, and the upstream accepted 1 event" ||
        fail "webhook" "the upstream counted $accepted events, not 1"
}

case "${1:-}" in
    build) build ;;
    test) run_test ;;
    *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
if [ ${#failed[@]} -gt 0 ]; then
    echo "!! steps that failed or could not run here: ${failed[*]}" >&2
    exit 1
fi
