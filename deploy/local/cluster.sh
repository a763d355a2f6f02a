#!/usr/bin/env bash
# Runs the four services as separate processes against Postgres and Redis, each on its own
# port, until Ctrl-C; then stops them all gracefully. The API clients are made once and kept in
# .fiscus/: an admin client for you (.fiscus/cluster-admin-secret), PaymentService's own and
# ShiftService's own.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${FISCUS_BIN_DIR:-target/debug}
key_file=.fiscus/cluster-master.key
mkdir -p .fiscus
if [ ! -s "$key_file" ]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$key_file")
fi
export FISCUS_KEYS__MASTER_KEY=$(cat "$key_file")

secret() {
    local file=".fiscus/cluster-$1-secret"
    [ -s "$file" ] || (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$file")
    cat "$file"
}
admin_secret=$(secret admin)
payments_secret=$(secret payments)
shifts_secret=$(secret shifts)
receipts_secret=$(secret receipts)
config=.fiscus/cluster.toml
(umask 077; cat > "$config" <<TOML
[payments]
client_id = "payments"
client_secret = "$payments_secret"

[shifts]
client_id = "shifts"
client_secret = "$shifts_secret"

[receipts]
client_id = "receipts"
client_secret = "$receipts_secret"

[[auth.clients]]
client_id = "admin"
client_secret = "$admin_secret"
scopes = ["admin"]

[[auth.clients]]
client_id = "payments"
client_secret = "$payments_secret"
scopes = ["tokens:read", "tokens:write"]

[[auth.clients]]
client_id = "shifts"
client_secret = "$shifts_secret"
scopes = ["receipts:shifts", "payments:shifts"]

[[auth.clients]]
client_id = "receipts"
client_secret = "$receipts_secret"
scopes = ["tokens:read"]
TOML
)
export FISCUS_TELEMETRY__LOG_FORMAT=${FISCUS_TELEMETRY__LOG_FORMAT:-text}

pids=()
stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
}
trap stop INT TERM EXIT

for service in receipts payments shifts tokens; do
    "$bin/fiscus-$service" --config "$config" ${FISCUS_CONFIG:+--config "$FISCUS_CONFIG"} &
    pids+=($!)
done
echo "cluster: receipts :50061, payments :50062, shifts :50063, tokens :50064 (Ctrl-C stops)"
echo "a token: grpcurl -plaintext -d '{\"client_id\":\"admin\",\"client_secret\":\"$admin_secret\"}' 127.0.0.1:50064 fiscus.v1.TokenService/IssueServiceToken"
wait -n
