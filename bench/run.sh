#!/usr/bin/env bash
# Run the load benchmark: `make bench`, or `bash bench/run.sh [--quick] [bench.py flags]`.
#
# Installs what the harness needs when missing (wrk, nginx, taskset; redis-server for baseline (b);
# redis-py in the venv), then runs bench/bench.py with the venv's Python. Results land in
# bench/results/<UTC timestamp>.json and bench/results/latest.md. See bench/README.md.
#
# Environment: PYTHON (default .venv/bin/python next to this repo), PROFILE=SECONDS to add a
# py-spy profile of the gateway (installs py-spy into the venv).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

log() { printf '[bench] %s\n' "$*" >&2; }

if [[ ! -x "$PYTHON" ]]; then
    log "no Python at $PYTHON: create the venv first (make install), or set PYTHON"
    exit 2
fi

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else log "need root (or sudo) to run: $*"; return 1
    fi
}

# System packages: apt-get update once, only when something is missing.
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 || { log "missing ${missing[*]} and no apt-get"; exit 2; }
    log "apt-get update; apt-get install -y ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        # nginx-light is gone from newer Debian releases: fall back to nginx.
        missing=("${missing[@]/nginx-light/nginx}")
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi
# Debian's postinst may start a system nginx on port 80; the bench runs its own on free ports and
# does not touch it.
export PATH="$PATH:/usr/sbin:/sbin"

# Python packages: redis-py for baseline (b) (a gateway dependency too), py-spy only when profiling.
if ! "$PYTHON" -c "import redis" 2>/dev/null; then
    log "pip install redis[hiredis] into the venv"
    "$PYTHON" -m pip install --quiet --progress-bar off "redis[hiredis]"
fi
args=("$@")
if [[ -n "${PROFILE:-}" ]]; then
    if ! "$PYTHON" -m pip show py-spy >/dev/null 2>&1; then
        log "pip install py-spy into the venv"
        "$PYTHON" -m pip install --quiet --progress-bar off py-spy
    fi
    args+=(--profile "$PROFILE")
fi

cd "$ROOT"
# BENCH_SCRIPT=soak.py: the soak (make soak) reuses this setup.
exec "$PYTHON" "$HERE/${BENCH_SCRIPT:-bench.py}" "${args[@]}"
