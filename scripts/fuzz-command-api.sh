#!/usr/bin/env bash
# OpenAPI-driven fuzzing of the command API with schemathesis 4 (from PyPI): starts PostgreSQL if
# needed, a scratch database and the command API on 127.0.0.1, then runs every schemathesis check
# (`--checks all`, tuned in scripts/schemathesis.toml) through the examples, coverage, fuzzing
# and stateful phases. The stateful phase follows the document's links from a placed order to
# each action. Afterwards it counts, per action route, the answers about orders the run itself
# placed, and fails unless every action got at least one answer other than 404.
# The API checks tokens against scratch development keys (scripts/dev-auth.sh): the run sends
# each operation a token of a role holding the scope the operation declares (found by asking
# the API, see below), then a second pass without a token must get 401 from every operation.
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
source scripts/dev-auth.sh
DEV_KEYS_DIR="$WORK/keys"
ensure_dev_keys
psql "$ADMIN" -q -c "drop database if exists $DB with (force)" -c "create database $DB"
cargo build --quiet --release -p command-api

MILESTONE_EVENT_STORE_URL="$BASE/$DB" MILESTONE_COMMAND_API_ADDR="127.0.0.1:$PORT" RUST_LOG=warn \
  MILESTONE_AUTH_JWKS_FILE="$MILESTONE_AUTH_JWKS_FILE" \
  "$TARGET/release/command-api" 2>"$WORK/api.log" &
API_PID=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  kill -0 "$API_PID" 2>/dev/null || { cat "$WORK/api.log" >&2; exit 1; }
  sleep 0.2
done

# Each operation's scope, and a token of a role the API serves it for (not 401/403 to an
# empty body; such a probe writes nothing: the body is refused, the ids are unknown).
curl -sf "http://127.0.0.1:$PORT/openapi.json" >"$WORK/openapi.json"
python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
for path, item in doc["paths"].items():
    print(path, item["post"]["security"][0]["bearer"][0])
' "$WORK/openapi.json" >"$WORK/scopes"
declare -A ROLE_TOKENS SCOPE_TOKENS
for role in $DEV_ROLES; do
  customer=""; [ "$role" = customer ] && customer="customer-1"
  ROLE_TOKENS[$role]="$(dev_token "$role" $customer)"
done
PROBE_ID="00000000-0000-4000-8000-000000000000"
while read -r path scope; do
  [ -n "${SCOPE_TOKENS[$scope]:-}" ] && continue
  for role in $DEV_ROLES; do
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT${path/\{order_id\}/$PROBE_ID}" \
      -H "Authorization: Bearer ${ROLE_TOKENS[$role]}" -H 'content-type: application/json' -d '{}')"
    if [ "$code" != 401 ] && [ "$code" != 403 ]; then SCOPE_TOKENS[$scope]="${ROLE_TOKENS[$role]}"; break; fi
  done
  [ -n "${SCOPE_TOKENS[$scope]:-}" ] || { echo "no role is served $path (scope $scope)" >&2; exit 1; }
done <"$WORK/scopes"
MILESTONE_FUZZ_TOKENS="$(for scope in "${!SCOPE_TOKENS[@]}"; do printf '%s %s\n' "$scope" "${SCOPE_TOKENS[$scope]}"; done |
  python3 -c 'import json, sys; print(json.dumps(dict(line.split() for line in sys.stdin)))')"
export MILESTONE_FUZZ_TOKENS

status=0
schemathesis --config-file scripts/schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$EXAMPLES" \
  --request-timeout 10 \
  --seed 42 \
  --report har --report-dir "$WORK" || status=$?

# The second pass: without a token every operation is 401, whatever its body.
while read -r path scope; do
  code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT${path/\{order_id\}/$PROBE_ID}" \
    -H 'content-type: application/json' -d '{}')"
  if [ "$code" != 401 ]; then echo "POST $path without a token answered $code, not 401" >&2; status=1; fi
done <"$WORK/scopes"
echo "without a token: $(wc -l <"$WORK/scopes") operations checked for 401"
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
