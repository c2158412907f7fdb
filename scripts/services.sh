#!/usr/bin/env bash
# Make sure the services the test suite talks to are up:
#   - Redis       on 127.0.0.1:6379 (nothing persisted)
#   - PostgreSQL  on 127.0.0.1:5432, trust auth for user "postgres", database "test"
#
# Idempotent: a service that already answers is left alone. A missing binary is
# installed from Debian's packages (apt-get, needs root or sudo). A service that
# still does not answer after WAIT_SECONDS is a hard failure (non-zero exit) --
# with or without CI=true, since the tests cannot run without it.
#
# Environment overrides: REDIS_HOST REDIS_PORT PGHOST PGPORT PGUSER PGDATABASE
# PG_CLUSTER (Debian cluster name, default main) WAIT_SECONDS
set -euo pipefail

REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
PG_HOST=${PGHOST:-127.0.0.1}
PG_PORT=${PGPORT:-5432}
PG_USER=${PGUSER:-postgres}
PG_DB=${PGDATABASE:-test}
PG_CLUSTER=${PG_CLUSTER:-main}
WAIT_SECONDS=${WAIT_SECONDS:-30}
CI=${CI:-}

log() { printf '[services] %s\n' "$*" >&2; }
die() {
    printf '[services] ERROR: %s\n' "$*" >&2
    if [[ "$CI" == "true" ]]; then
        printf '[services] CI=true: a required service is unavailable; failing the run.\n' >&2
    else
        printf '[services] The test suite needs real Redis and PostgreSQL; fix the above and retry.\n' >&2
    fi
    exit 1
}

# Run a command as root (directly, or through sudo when available).
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# Wait until "$@" succeeds, at most WAIT_SECONDS. Returns 1 on timeout.
wait_for() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# ---------------------------------------------------------------- packages --
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing packages ($*) and no apt-get to install them"
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

ensure_packages() {
    local pkgs=()
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        pkgs+=(redis-server redis-tools)
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1 \
        || ! command -v psql >/dev/null 2>&1 || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        pkgs+=(postgresql postgresql-client)
    fi
    if ((${#pkgs[@]})); then
        apt_install "${pkgs[@]}"
    fi
}

# ------------------------------------------------------------------- Redis --
redis_ok() { [[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

ensure_redis() {
    if redis_ok; then
        log "Redis ok on $REDIS_HOST:$REDIS_PORT"
        return
    fi
    log "Redis not answering on $REDIS_HOST:$REDIS_PORT; starting it"
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log \
        || log "redis-server returned non-zero (see /var/log/redis/ci.log)"
    wait_for redis_ok \
        || { tail -n 5 /var/log/redis/ci.log >&2 2>/dev/null || true
             die "Redis did not answer on $REDIS_HOST:$REDIS_PORT within ${WAIT_SECONDS}s (log: /var/log/redis/ci.log)"; }
    log "Redis started on $REDIS_HOST:$REDIS_PORT"
}

# -------------------------------------------------------------- PostgreSQL --
pg_version() {
    # Highest version with a cluster config, else highest installed server.
    local v
    # shellcheck disable=SC2012  # version directories: plain numbers
    v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    # shellcheck disable=SC2012
    [[ -n "$v" ]] || v=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    printf '%s' "$v"
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }
# -w: never prompt for a password; success means trust (or .pgpass) auth works.
pg_query() { psql -X -w -q -A -t -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }
pg_login_ok() { pg_query -d postgres -c 'select 1' >/dev/null 2>&1; }
pg_db_ok() { pg_query -d "$PG_DB" -c 'select 1' >/dev/null 2>&1; }

# Prepend trust rules for loopback TCP to pg_hba.conf (first match wins), then reload.
pg_trust_loopback() {
    local ver=$1 hba="/etc/postgresql/$1/$PG_CLUSTER/pg_hba.conf"
    [[ -f "$hba" ]] || die "cannot log in to PostgreSQL as $PG_USER and $hba does not exist"
    log "enabling trust auth for 127.0.0.1/32 and ::1/128 in $hba"
    local tmp
    tmp=$(mktemp)
    {
        echo "# added by scripts/services.sh: passwordless loopback access for tests"
        echo "host    all    all    127.0.0.1/32    trust"
        echo "host    all    all    ::1/128         trust"
        cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" reload \
        || die "pg_ctlcluster $ver $PG_CLUSTER reload failed"
    sleep 1
}

ensure_postgres() {
    local ver
    if ! pg_ready; then
        ver=$(pg_version)
        [[ -n "$ver" ]] || die "PostgreSQL is not installed (no /usr/lib/postgresql/*)"
        if [[ ! -d "/etc/postgresql/$ver/$PG_CLUSTER" ]]; then
            log "creating PostgreSQL cluster $ver/$PG_CLUSTER on port $PG_PORT"
            as_root pg_createcluster -p "$PG_PORT" "$ver" "$PG_CLUSTER" \
                || die "pg_createcluster $ver $PG_CLUSTER failed"
        fi
        log "PostgreSQL not answering on $PG_HOST:$PG_PORT; starting cluster $ver/$PG_CLUSTER"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start \
            || log "pg_ctlcluster start returned non-zero (maybe already starting)"
        wait_for pg_ready \
            || die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${WAIT_SECONDS}s (see /var/log/postgresql/)"
        log "PostgreSQL started ($ver/$PG_CLUSTER)"
    else
        log "PostgreSQL ok on $PG_HOST:$PG_PORT"
    fi

    if ! pg_login_ok; then
        ver=$(pg_version)
        pg_trust_loopback "$ver"
        wait_for pg_login_ok \
            || die "cannot log in to PostgreSQL on $PG_HOST:$PG_PORT as $PG_USER without a password"
    fi

    if ! pg_db_ok; then
        log "creating database $PG_DB"
        createdb -w -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$PG_DB" 2>/dev/null || true
        pg_db_ok || die "database $PG_DB does not exist on $PG_HOST:$PG_PORT and could not be created"
    fi
    log "PostgreSQL database $PG_DB reachable as $PG_USER (trust auth)"
}

main() {
    ensure_packages
    ensure_redis
    ensure_postgres
    log "all services up"
}

main "$@"
