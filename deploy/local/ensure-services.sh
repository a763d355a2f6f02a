#!/usr/bin/env bash
# Makes sure the Postgres and Redis that tests and `make cluster` use are answering.
# Starts the installed servers when they are down; installs them from Debian's packages when
# missing and running as root; otherwise stops with one line saying what to install.
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

say() { printf 'ensure-services: %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

pg_answers() {
    command -v psql >/dev/null 2>&1 && psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1
}

redis_answers() {
    command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" = PONG ]
}

apt_install() {
    if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
        return 1
    fi
    say "installing $* from Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql postgresql-client || {
            say "PostgreSQL is not installed: install the 'postgresql' package (or set DATABASE_URL to a reachable server)"
            exit 1
        }
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Tests connect as postgres over TCP without a password, as on CI machines.
    if is_root && [ -f "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
    for _ in $(seq 1 30); do
        if command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -q; then break; fi
        sleep 0.5
    done
    # The default URL names database `test`; make it when it is missing.
    local db="${DATABASE_URL##*/}"
    db="${db%%\?*}"
    local admin_url="${DATABASE_URL%/*}/postgres"
    if ! psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; then
        psql "$admin_url" -qc "CREATE DATABASE \"$db\"" >/dev/null 2>&1 || true
    fi
}

start_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server || {
            say "Redis is not installed: install the 'redis-server' package (or set REDIS_URL to a reachable server)"
            exit 1
        }
    fi
    say "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    local dir=/var/lib/redis log=/var/log/redis/fiscus.log
    [ -w "$dir" ] || { dir=$(mktemp -d); log="$dir/redis.log"; }
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir "$dir" --logfile "$log"
    for _ in $(seq 1 20); do redis_answers && break; sleep 0.25; done
}

if ! pg_answers; then
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client || true
    pg_answers || start_postgres
    pg_answers || { say "PostgreSQL does not answer at ${DATABASE_URL%%@*}@…; start it or set DATABASE_URL"; exit 1; }
fi
if ! redis_answers; then
    command -v redis-cli >/dev/null 2>&1 || true
    start_redis
    redis_answers || { say "Redis does not answer at $REDIS_URL; start it or set REDIS_URL"; exit 1; }
fi
