#!/usr/bin/env bash
# Makes sure the Redis Cluster that tests use is answering: three masters of Debian's
# redis-server in cluster mode on the ports of REDIS_CLUSTER_URL (127.0.0.1:7001–7003 unless
# told otherwise), data in a temporary directory, nothing persisted. Does nothing when the
# cluster already reports cluster_state:ok; otherwise starts the local nodes that are down,
# creates the cluster if it has no slots yet, and waits until every node says it is ok.
# A cluster elsewhere (any host but 127.0.0.1/localhost) is only checked, never started.
set -euo pipefail

REDIS_CLUSTER_URL=${REDIS_CLUSTER_URL:-redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003}

say() { printf 'ensure-redis-cluster: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

# redis+cluster://[user:password@]host:port,host:port[/…]: the seed nodes, one host:port a line.
seeds() {
    local rest=${REDIS_CLUSTER_URL#*://}
    rest=${rest%%[/?#]*}
    rest=${rest##*@}
    tr ',' '\n' <<<"$rest"
}

case $REDIS_CLUSTER_URL in
    redis+cluster://*) ;;
    *) fail "REDIS_CLUSTER_URL must be redis+cluster://host:port,host:port,… (got ${REDIS_CLUSTER_URL%%://*}://…)" ;;
esac
mapfile -t NODES < <(seeds)
[ "${#NODES[@]}" -gt 0 ] || fail "REDIS_CLUSTER_URL names no node"

# Only the nodes' own state is asked; a password in the URL is passed through the environment.
password=${REDIS_CLUSTER_URL#*://}
password=${password%%[/?#]*}
if [[ $password == *@* ]]; then
    password=${password%@*}
    password=${password#*:}
    export REDISCLI_AUTH=$password
fi

cli() { # host:port, then the command
    local node=$1
    shift
    redis-cli -h "${node%:*}" -p "${node##*:}" "$@" 2>/dev/null
}

cluster_ok() { # every seed answers and says cluster_state:ok
    local node
    for node in "${NODES[@]}"; do
        cli "$node" cluster info | tr -d '\r' | grep -qx 'cluster_state:ok' || return 1
    done
}

if command -v redis-cli >/dev/null 2>&1 && cluster_ok; then
    exit 0
fi

for node in "${NODES[@]}"; do
    case ${node%:*} in
        127.0.0.1 | localhost) ;;
        *) fail "the Redis Cluster at $node does not report cluster_state:ok; start it or set REDIS_CLUSTER_URL" ;;
    esac
done

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing redis-server from Debian packages"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        fail "Redis is not installed: install the 'redis-server' package (or set REDIS_CLUSTER_URL to a running cluster)"
    fi
fi

# One directory per user, so that the nodes keep their identity (nodes.conf) across calls and
# a second `make test` finds the cluster the first one made.
base=${TMPDIR:-/tmp}/fiscus-redis-cluster-$(id -u)
mkdir -p "$base"
# Two runs starting at once must not both create the cluster.
exec 9>"$base/lock"
flock -w 60 9 || fail "another run has held $base/lock for a minute"
cluster_ok && exit 0

start_node() {
    local port=$1 dir="$base/$1"
    mkdir -p "$dir"
    # The daemon must not inherit the lock, or it would hold it for as long as it runs.
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
        --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" 9>&- ||
        fail "redis-server did not start on port $port (see $dir/redis.log)"
    for _ in $(seq 1 40); do
        [ "$(cli "127.0.0.1:$port" ping)" = PONG ] && return 0
        sleep 0.25
    done
    fail "redis-server on port $port does not answer (see $dir/redis.log)"
}

# Starts the nodes that are down, gives the slots out if nobody has, waits for the state.
bring_up() {
    local node port assigned
    for node in "${NODES[@]}"; do
        port=${node##*:}
        if [ "$(cli "$node" ping)" = PONG ]; then
            cli "$node" cluster info | grep -q '^cluster_state:' ||
                fail "port $port answers but is not a Redis Cluster node; free it or set REDIS_CLUSTER_URL"
        else
            say "starting Redis Cluster node on port $port"
            start_node "$port"
        fi
    done
    # Nodes that came back from their nodes.conf rejoin by themselves; fresh ones get the slots.
    assigned=$(cli "${NODES[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_slots_assigned://p')
    if [ "${assigned:-0}" = 0 ]; then
        say "creating the Redis Cluster on ${NODES[*]}"
        local hosts=()
        for node in "${NODES[@]}"; do hosts+=("127.0.0.1:${node##*:}"); done
        redis-cli --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes \
            >"$base/create.log" 2>&1 ||
            fail "redis-cli --cluster create failed (see $base/create.log)"
    fi
    for _ in $(seq 1 40); do
        cluster_ok && return 0
        sleep 0.5
    done
    return 1
}

bring_up && exit 0

# Nodes that remember a cluster the others forgot (a temp directory cleaned under a running
# node, a node killed and its nodes.conf lost) never agree again: start those of this script
# afresh, once. Nodes of any other directory are left alone.
say "the Redis Cluster on ${NODES[*]} is not ok; starting its nodes afresh"
for node in "${NODES[@]}"; do
    port=${node##*:}
    dir=$(cli "$node" config get dir | sed -n 2p)
    if [ -n "$dir" ] && [ "$dir" != "$base/$port" ]; then
        fail "port $port is a Redis Cluster node of $dir, not of this script; stop it or set REDIS_CLUSTER_URL"
    fi
done
for node in "${NODES[@]}"; do
    cli "$node" shutdown nosave >/dev/null || true
done
for node in "${NODES[@]}"; do
    for _ in $(seq 1 40); do
        [ "$(cli "$node" ping)" = PONG ] || break
        sleep 0.25
    done
    rm -rf "${base:?}/${node##*:}"
done
bring_up && exit 0
fail "the Redis Cluster on ${NODES[*]} did not reach cluster_state:ok within 20 s (logs in $base)"
