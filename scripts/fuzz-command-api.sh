#!/usr/bin/env bash
# OpenAPI-driven fuzzing of the command API with schemathesis: starts PostgreSQL if needed, a
# scratch database and the command API on 127.0.0.1, then sends a bounded number of generated
# requests per operation and fails on any 5xx. Usage: scripts/fuzz-command-api.sh [examples]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
ensure_postgres

EXAMPLES="${1:-30}"
PORT="${FUZZ_PORT:-18080}"
DB="milestone_fuzz"
ADMIN="${MILESTONE_TEST_DATABASE_URL:-$DEFAULT_DATABASE_URL}"
BASE="${ADMIN%/*}"

command -v schemathesis >/dev/null || python3 -m pip install --quiet 'schemathesis>=4,<5'
psql "$ADMIN" -q -c "drop database if exists $DB with (force)" -c "create database $DB"
cargo build --quiet --release -p command-api

MILESTONE_EVENT_STORE_URL="$BASE/$DB" MILESTONE_COMMAND_API_ADDR="127.0.0.1:$PORT" RUST_LOG=warn \
  target/release/command-api 2>/tmp/milestone-fuzz-api.log &
API_PID=$!
trap 'kill $API_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.2
done

schemathesis run "http://127.0.0.1:$PORT/openapi.json" \
  --checks not_a_server_error \
  --max-examples "$EXAMPLES" \
  --phases examples,fuzzing \
  --request-timeout 10 \
  --seed 42
