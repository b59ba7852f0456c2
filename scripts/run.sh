#!/usr/bin/env bash
# Runs Milestone locally: PostgreSQL (started if needed) as event store and read-model database,
# then command-api, projector and query-api. Ctrl-C stops everything.
#
# Set MILESTONE_EVENT_STORE_URL to a KurrentDB node (e.g. kurrentdb://127.0.0.1:2113?tls=false)
# to use it as the event store; the read models stay in PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
ensure_postgres

DATABASE="${MILESTONE_DATABASE:-milestone}"
ADMIN_URL="${MILESTONE_ADMIN_DATABASE_URL:-$DEFAULT_DATABASE_URL}"
DB_URL="${ADMIN_URL%/*}/$DATABASE"
export MILESTONE_READ_MODEL_URL="${MILESTONE_READ_MODEL_URL:-$DB_URL}"
export MILESTONE_EVENT_STORE_URL="${MILESTONE_EVENT_STORE_URL:-$DB_URL}"
export MILESTONE_COMMAND_API_ADDR="${MILESTONE_COMMAND_API_ADDR:-127.0.0.1:8080}"
export MILESTONE_QUERY_API_ADDR="${MILESTONE_QUERY_API_ADDR:-127.0.0.1:8081}"
export RUST_LOG="${RUST_LOG:-info}"

if ! psql "$ADMIN_URL" -Atqc "select 1 from pg_database where datname = '$DATABASE'" | grep -q 1; then
  echo "creating database $DATABASE"
  psql "$ADMIN_URL" -qc "create database $DATABASE"
fi

echo "building the services (release)..."
cargo build --release --locked -p command-api -p projector -p query-api

PIDS=()
stop() {
  echo; echo "stopping..."
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped"
}
trap stop INT TERM EXIT

# Each service's logs, prefixed with its name. Migrations are applied by the services:
# the event tables by the command API, the read models by the projector.
start() {
  local name="$1"; shift
  ( exec "target/release/$name" "$@" 2>&1 | sed -u "s/^/[$name] /" ) &
  PIDS+=($!)
}
wait_ready() {
  for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done
  echo "$1 did not become ready" >&2; return 1
}

start command-api
wait_ready "http://$MILESTONE_COMMAND_API_ADDR/readyz"
start projector
until psql "$MILESTONE_READ_MODEL_URL" -Atqc "select to_regclass('projection_checkpoints') is not null" 2>/dev/null | grep -q t; do sleep 0.2; done
start query-api
wait_ready "http://$MILESTONE_QUERY_API_ADDR/readyz"

C="http://$MILESTONE_COMMAND_API_ADDR"
Q="http://$MILESTONE_QUERY_API_ADDR"
cat <<INFO

Milestone is running (event store: ${MILESTONE_EVENT_STORE_URL%%://*}).
  REST commands  $C/orders        OpenAPI  $C/openapi.json
  GraphQL        $Q/graphql       GraphiQL $Q/graphql (in a browser)

Try it:
  TOKEN=\$(curl -s -X POST $C/orders -H 'content-type: application/json' -d '{
      "customer_id": "customer-1", "currency": "EUR",
      "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999}],
      "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    }' | tee /dev/stderr | sed -E 's/.*"consistency_token":"([^"]+)".*/\1/')
  curl -s $Q/graphql -H 'content-type: application/json' -H "X-Consistency-Token: \$TOKEN" \\
    -d '{"query": "{ orders(first: 5) { edges { node { id status pendingActions totalMinor } } } }"}'

Ctrl-C stops everything.
INFO
wait
