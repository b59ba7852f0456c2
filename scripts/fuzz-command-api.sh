#!/usr/bin/env bash
# OpenAPI-driven fuzzing of the command API with schemathesis 4 (from PyPI): starts PostgreSQL if
# needed, a scratch database and the command API on 127.0.0.1, then runs every schemathesis check
# (`--checks all`, tuned in scripts/schemathesis.toml) through the examples, coverage, fuzzing
# and stateful phases. The stateful phase follows the document's links from a placed order to
# each action. Afterwards it counts, per action route, the answers about orders the run itself
# placed, and fails unless every action got at least one answer other than 404.
# Usage: scripts/fuzz-command-api.sh [examples-per-operation]   (default 50; a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
ensure_postgres

EXAMPLES="${1:-50}"
PORT="${FUZZ_PORT:-18080}"
DB="milestone_fuzz"
ADMIN="${MILESTONE_TEST_DATABASE_URL:-$DEFAULT_DATABASE_URL}"
BASE="${ADMIN%/*}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d)"
API_PID=""

cleanup() {
  if [ -n "$API_PID" ]; then
    kill "$API_PID" 2>/dev/null || true
    wait "$API_PID" 2>/dev/null || true
  fi
  psql "$ADMIN" -q -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v schemathesis >/dev/null || python3 -m pip install --quiet 'schemathesis>=4,<5'
psql "$ADMIN" -q -c "drop database if exists $DB with (force)" -c "create database $DB"
cargo build --quiet --release -p command-api

MILESTONE_EVENT_STORE_URL="$BASE/$DB" MILESTONE_COMMAND_API_ADDR="127.0.0.1:$PORT" RUST_LOG=warn \
  "$TARGET/release/command-api" 2>"$WORK/api.log" &
API_PID=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  kill -0 "$API_PID" 2>/dev/null || { cat "$WORK/api.log" >&2; exit 1; }
  sleep 0.2
done

status=0
schemathesis --config-file scripts/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$EXAMPLES" \
  --request-timeout 10 \
  --seed 42 \
  --report har --report-dir "$WORK" || status=$?

curl -sf "http://127.0.0.1:$PORT/openapi.json" >"$WORK/openapi.json"
python3 scripts/fuzz-summary.py "$WORK/openapi.json" "$WORK"/har-*.json || status=1
# Errors the API logged. actix-http logs a request it cannot parse (e.g. a header the fuzzer
# malformed) at error level and answers 400 itself; that is the client's fault, not ours.
errors="$(grep '"level":"ERROR"' "$WORK/api.log" | grep -v '"target":"actix_http::h1::dispatcher"' || true)"
if [ -n "$errors" ]; then
  echo "the command API logged errors:" >&2
  echo "$errors" >&2
  status=1
fi
exit "$status"
