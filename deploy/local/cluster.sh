#!/usr/bin/env bash
# Runs the four services as separate processes against Postgres and Redis, each on its own
# port, until Ctrl-C; then stops them all gracefully.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${FISCUS_BIN_DIR:-target/debug}
key_file=.fiscus/cluster-master.key
mkdir -p .fiscus
if [ ! -s "$key_file" ]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$key_file")
fi
export FISCUS_KEYS__MASTER_KEY=$(cat "$key_file")
export FISCUS_TELEMETRY__LOG_FORMAT=${FISCUS_TELEMETRY__LOG_FORMAT:-text}

pids=()
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
}
trap stop INT TERM EXIT

for service in receipts payments shifts tokens; do
    "$bin/fiscus-$service" &
    pids+=($!)
done
echo "cluster: receipts :50061, payments :50062, shifts :50063, tokens :50064 (Ctrl-C stops)"
wait -n
