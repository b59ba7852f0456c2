#!/usr/bin/env bash
# The command path's throughput, measured from outside: `wrk` against the release `command-api`
# binary (POST /orders, a fresh order id and Idempotency-Key per request), beside a raw
# single-row INSERT baseline from `pgbench` into a table shaped like `es_events`, in the same run
# on the same server; then the same with the `projector` binary following the log live.
#
# Usage: scripts/bench-commands.sh
#   BENCH_ROUNDS (3), BENCH_SECONDS (10), BENCH_CONNECTIONS (16)
#   BENCH_VARIANTS: space-separated `label` or `label:VAR=value,VAR=value` command-api settings
#     measured one after the other in each round (default: `default`, the built-in settings);
#     `BIN=path` among them runs another command-api binary (an earlier build, to compare);
#     `@otlp` in a value stands for a trace receiver the script starts (`otlp-sink`, which
#     counts the spans it is sent), e.g. `on:OTEL_EXPORTER_OTLP_ENDPOINT=@otlp`. The variants
#     run in the given order in odd rounds and in reverse in even ones.
#   BENCH_PROJECTOR=0 leaves out the phase with the projector following (it uses the first
#     variant).
#   BENCH_SIDE_BY_SIDE=1 starts each variant's command API once, warms it up, and keeps them
#     all running side by side; each round then runs wrk against each in turn with no baseline
#     between them (one raw baseline per round, before its first phase). Adjacent phases see
#     the same database and machine, so with short phases and many rounds (BENCH_SECONDS=3
#     BENCH_ROUNDS=20) the variants' ratio is steadier than across fresh processes. Implies
#     BENCH_PROJECTOR=0. Each API holds up to BENCH_CONNECTIONS database connections: mind the
#     server's max_connections with many variants.
#   BENCH_BUILD=0 uses binaries already built (in BENCH_BIN_DIR, default the release ones).
#   MILESTONE_TEST_DATABASE_URL names the server (default postgres:postgres@127.0.0.1:5432).
# Prints, per round, each phase's rate, p50/p99 and ratio to the baseline run just before it
# (side by side: the round's one baseline),
# the database transactions per request and the CPU time per request of the command API, of the
# database server's processes and (with `@otlp`) of the trace receiver; then the medians, and
# each further variant's rate against the first's in the same round (and median). Side by side,
# an API's batch exporter may send spans of its phase during the next one (every 5 s by default,
# `OTEL_BSP_SCHEDULE_DELAY`): the receiver's CPU per phase is then partly a neighbour's.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${BENCH_ROUNDS:-3}"
SECONDS_PER_PHASE="${BENCH_SECONDS:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
read -r -a VARIANTS <<<"${BENCH_VARIANTS:-default}"
SERVER_URL="${MILESTONE_TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
SERVER_BASE="${SERVER_URL%/*}"
DB="bench_commands_$$"
DB_URL="$SERVER_BASE/$DB"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  psql "$SERVER_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
for tool in wrk pgbench psql curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing" >&2; exit 1; }
done

OTLP_SINK=0
[[ "${BENCH_VARIANTS:-}" == *@otlp* ]] && OTLP_SINK=1
if [ "${BENCH_BUILD:-1}" != 0 ]; then
  cargo build --release --locked -p command-api -p projector
  if [ "$OTLP_SINK" = 1 ]; then
    cargo build --release --locked -p test-support --bin otlp-sink
  fi
fi
BIN="${BENCH_BIN_DIR:-$TARGET/release}"

psql "$SERVER_URL" -qc "create database $DB" >/dev/null

# The command API checks bearer tokens as it does in production: scratch development keys, and
# every request carries a shop's token (verified once, then remembered until it expires).
source scripts/dev-auth.sh
DEV_KEYS_DIR="$WORK/keys"
ensure_dev_keys
export BENCH_AUTHORIZATION="Bearer $(dev_token shop)"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a binary in the background with the bench database, the `VAR=value` arguments in its
# environment (`@otlp` replaced by the trace receiver's URL), the others as its arguments; its
# pid in STARTED. It logs to $WORK/<LOG_AS, else the binary's name>.log.
start() {
  local name="$1"
  shift
  local path="$BIN/$name"
  [[ "$name" == */* ]] && path="$name"
  local -a settings=() args=()
  for setting in "$@"; do
    if [[ "$setting" == *=* ]]; then settings+=("${setting//@otlp/$OTLP}"); else args+=("$setting"); fi
  done
  env MILESTONE_EVENT_STORE_URL="$DB_URL" MILESTONE_READ_MODEL_URL="$DB_URL" \
    MILESTONE_DB_POOL_SIZE="$CONNECTIONS" MILESTONE_RATE_LIMIT=off RUST_LOG=warn \
    "${settings[@]}" "$path" "${args[@]}" >"$WORK/${LOG_AS:-$(basename "$name")}.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

wait_ready() {
  local url="$1"
  for _ in $(seq 1 300); do
    curl -fs "$url/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$url did not become ready" >&2
  exit 1
}

# CPU seconds (user + system) a process has used so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# The database server's postmaster (from its data directory's postmaster.pid), when this
# machine runs it; empty otherwise.
POSTMASTER="$(head -1 "$(psql "$SERVER_URL" -Atc 'show data_directory' 2>/dev/null)/postmaster.pid" \
  2>/dev/null || true)"
[ -n "$POSTMASTER" ] && [ -r "/proc/$POSTMASTER/stat" ] || POSTMASTER=""

# CPU seconds the database server has used so far: its processes alive now and, through the
# postmaster's reaped-children times, those that have exited. Empty when it runs elsewhere.
db_cpu_seconds() {
  [ -n "$POSTMASTER" ] || return 0
  local hz
  hz="$(getconf CLK_TCK)"
  {
    awk '{ print $14 + $15 + $16 + $17 }' "/proc/$POSTMASTER/stat"
    for pid in $(pgrep -P "$POSTMASTER"); do
      awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || true
    done
  } | awk -v hz="$hz" '{ ticks += $1 } END { printf "%.2f\n", ticks / hz }'
}

commits() {
  psql "$SERVER_URL" -Atc "select xact_commit + xact_rollback from pg_stat_database where datname = '$DB'"
}

events() {
  psql "$DB_URL" -Atc "select count(*) from es_events"
}

# The trace receiver the `@otlp` variants export to.
OTLP="" OTLP_PID=""
if [ "$OTLP_SINK" = 1 ]; then
  OTLP_PORT="$(free_port)"
  start otlp-sink "127.0.0.1:$OTLP_PORT"
  OTLP_PID="$STARTED"
  OTLP="http://127.0.0.1:$OTLP_PORT"
fi

# The command API once, so that its migrations create es_events; the baseline copies its shape.
PORT="$(free_port)"
start command-api MILESTONE_COMMAND_API_ADDR="127.0.0.1:$PORT"
wait_ready "http://127.0.0.1:$PORT"
stop "$STARTED"
psql "$DB_URL" -qc "create table raw_events (like es_events including all)"

ORDER_DATA='{"customer_id": "customer-1", "currency": "EUR", "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999}], "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}}'
cat >"$WORK/insert.sql" <<SQL
insert into raw_events (stream_id, revision, event_id, event_type, schema_version, data, metadata)
values ('order-' || gen_random_uuid(), 0, gen_random_uuid(), 'OrderPlaced', 1,
        '$ORDER_DATA',
        jsonb_build_object('\$correlationId', gen_random_uuid(), '\$causationId', gen_random_uuid(),
                           'idempotencyKey', gen_random_uuid(), 'requestHash', md5(random()::text),
                           'occurredAt', now()));
SQL

# Each request: a fresh order id and Idempotency-Key (a per-phase nonce, the thread, a counter).
# The nonce is 31 random bits from /dev/urandom: bash's $RANDOM, reseeded in each subshell,
# gave two phases of one long run the same nonce (their second phase's requests were replays).
cat >"$WORK/orders.lua" <<'LUA'
-- `tid` is set in each thread's state by setup().
local threads = {}
local counter = 0
local nonce = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  nonce = tonumber(args[1])
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION")
end

function request()
  counter = counter + 1
  local id = string.format("%08x-%04x-4000-8000-%012x", nonce, tid, counter)
  wrk.headers["Idempotency-Key"] = "bench-" .. id
  wrk.body = '{"order_id": "' .. id .. '", "customer_id": "customer-1", "currency": "EUR", '
    .. '"lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1999}], '
    .. '"shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", '
    .. '"postal_code": "10115", "country": "DE"}}'
  return wrk.format()
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), errors))
end
LUA

# Prints "rate p50_ms p99_ms" of the raw INSERT baseline.
baseline() {
  (cd "$WORK" && rm -f pgbench_log.* &&
    pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "$SECONDS_PER_PHASE" -f insert.sql -l \
      "$DB_URL" >pgbench.out 2>&1) || { cat "$WORK/pgbench.out" >&2; exit 1; }
  local rate
  rate="$(awk '/^tps = / { printf "%.0f", $3 }' "$WORK/pgbench.out")"
  cat "$WORK"/pgbench_log.* | awk '{ print $3 }' | sort -n >"$WORK/latencies"
  awk -v rate="$rate" '{ l[NR] = $1 } END {
    printf "%s %.2f %.2f\n", rate, l[int(NR * 0.5)] / 1000, l[int(NR * 0.99)] / 1000 }' "$WORK/latencies"
}

# Starts a command API with the settings (`VAR=value,...`), logging to $WORK/<log>.log (default
# the binary's name); its pid in STARTED, its port in API_PORT, its binary's name in API_BINARY.
start_api() {
  local settings="$1" log="${2:-}" setting
  local -a env=()
  if [ -n "$settings" ]; then
    IFS=, read -r -a env <<<"$settings"
  fi
  API_BINARY=command-api
  for setting in "${env[@]}"; do
    [[ "$setting" == BIN=* ]] && API_BINARY="${setting#BIN=}"
  done
  API_PORT="$(free_port)"
  LOG_AS="$log" start "$API_BINARY" MILESTONE_COMMAND_API_ADDR="127.0.0.1:$API_PORT" "${env[@]}"
  wait_ready "http://127.0.0.1:$API_PORT"
}

# Runs wrk against the command API of the variant: a fresh one with the variant's settings, or
# the one already running side by side; the projector following if asked. Prints "rate p50_ms
# p99_ms commits_per_request api_cpu_us_per_request receiver_cpu_us_per_request
# database_cpu_us_per_request" (the database's `-` when it runs on another machine).
commands() {
  local variant="$1" with_projector="$2" port api projector="" binary settings="" log
  # It runs in a command substitution, whose exit does not run the script's cleanup: what it
  # starts (beyond the processes it inherits) is stopped here if it exits before stopping them.
  local inherited="${#PIDS[@]}"
  trap 'for pid in "${PIDS[@]:'"$inherited"'}"; do kill "$pid" 2>/dev/null || true; done' EXIT
  if [ -n "${SIDE_PORT[$variant]:-}" ]; then
    port="${SIDE_PORT[$variant]}" api="${SIDE_PID[$variant]}" binary="${SIDE_BINARY[$variant]}"
    log="${SIDE_LOG[$variant]}"
  else
    [[ "$variant" == *:* ]] && settings="${variant#*:}"
    start_api "$settings"
    port="$API_PORT" api="$STARTED" binary="$API_BINARY" log="$(basename "$API_BINARY")"
  fi
  if [ "$with_projector" = 1 ]; then
    start projector
    projector="$STARTED"
    wait_caught_up
  fi
  local before_commits before_cpu before_events
  before_commits="$(commits)"
  before_events="$(events)"
  before_cpu="$(cpu_seconds "$api")"
  local before_sink=0 sink=0 before_db db
  before_db="$(db_cpu_seconds)"
  [ -n "$OTLP_PID" ] && before_sink="$(cpu_seconds "$OTLP_PID")"
  wrk -t 2 -c "$CONNECTIONS" -d "${SECONDS_PER_PHASE}s" -s "$WORK/orders.lua" \
    "http://127.0.0.1:$port/orders" -- "$(($(od -An -N4 -tu4 /dev/urandom) % 2147483648))" \
    >"$WORK/wrk.out" 2>&1
  local cpu
  cpu="$(cpu_seconds "$api")"
  [ -n "$OTLP_PID" ] && sink="$(cpu_seconds "$OTLP_PID")"
  db="$(db_cpu_seconds)"
  if [ -z "${SIDE_PORT[$variant]:-}" ]; then
    stop "$api"
    sleep 1
  fi
  if [ -n "$projector" ]; then
    stop "$projector"
  fi
  local result
  result="$(grep '^RESULT' "$WORK/wrk.out")" || { cat "$WORK/wrk.out" >&2; exit 1; }
  local requests micros p50 p99 errors
  read -r _ requests micros p50 p99 errors <<<"$result"
  if [ "$errors" != 0 ]; then
    echo "wrk saw $errors failed requests (of $requests); $binary's log:" >&2
    tail -20 "$WORK/$log.log" >&2
    exit 1
  fi
  # Every request must have placed a new order (a replay would be a cheaper request); wrk
  # does not count the requests still in flight when it stops, which may have placed theirs.
  local placed
  placed="$(($(events) - before_events))"
  if [ "$placed" -lt "$requests" ] || [ "$placed" -gt "$((requests + CONNECTIONS))" ]; then
    echo "$requests requests placed $placed orders" >&2
    exit 1
  fi
  awk -v n="$requests" -v us="$micros" -v p50="$p50" -v p99="$p99" \
    -v c0="$before_commits" -v c1="$(commits)" -v cpu0="$before_cpu" -v cpu1="$cpu" \
    -v sink0="$before_sink" -v sink1="$sink" -v db0="$before_db" -v db1="$db" 'BEGIN {
      printf "%.0f %.2f %.2f %.2f %.0f %.1f ", n / (us / 1e6), p50 / 1000, p99 / 1000,
        (c1 - c0) / n, (cpu1 - cpu0) * 1e6 / n, (sink1 - sink0) * 1e6 / n
      if (db0 == "") print "-"; else printf "%.0f\n", (db1 - db0) * 1e6 / n }'
}

# Waits until the projector has applied every event written so far.
wait_caught_up() {
  local caught_up
  for _ in $(seq 1 1200); do
    caught_up="$(psql "$DB_URL" -Atc "select not exists (select 1 from es_events)
        or exists (select 1 from projection_checkpoints c where c.projection = 'order_status'
                   and not exists (select 1 from es_events e
                                   where (e.tx_id, e.seq) > (c.position_commit, c.position_prepare)))" \
      2>/dev/null || echo f)"
    if [ "$caught_up" = t ]; then
      return 0
    fi
    sleep 0.25
  done
  echo "the projector did not catch up" >&2
  exit 1
}

median() {
  sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# Each phase runs right after its own baseline (side by side: after its round's one): the
# machine's speed drifts within a round, and the ratio to a baseline measured just before is
# the steadier figure.
declare -A RATIOS P99S RATES AGAINST_FIRST ROUND_RATE SIDE_PORT SIDE_PID SIDE_BINARY SIDE_LOG
RAWS=""
SIDE_BY_SIDE="${BENCH_SIDE_BY_SIDE:-0}"
if [ "$SIDE_BY_SIDE" = 1 ]; then
  BENCH_PROJECTOR=0
  echo "the variants' command APIs run side by side; warming each up for 3 s"
  for i in "${!VARIANTS[@]}"; do
    variant="${VARIANTS[$i]}"
    if [ -n "${SIDE_PORT[$variant]:-}" ]; then
      echo "BENCH_VARIANTS names \`$variant\` twice" >&2
      exit 2
    fi
    settings=""
    [[ "$variant" == *:* ]] && settings="${variant#*:}"
    start_api "$settings" "command-api-$i"
    SIDE_PORT[$variant]="$API_PORT" SIDE_PID[$variant]="$STARTED" SIDE_BINARY[$variant]="$API_BINARY"
    SIDE_LOG[$variant]="command-api-$i"
    wrk -t 2 -c "$CONNECTIONS" -d 3s -s "$WORK/orders.lua" "http://127.0.0.1:$API_PORT/orders" \
      -- "$((RANDOM * 32768 + RANDOM))" >/dev/null 2>&1
  done
fi
echo "$CONNECTIONS connections, ${SECONDS_PER_PHASE} s per phase, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  phases=()
  for variant in "${VARIANTS[@]}"; do
    if [ $((round % 2)) = 1 ]; then phases+=("$variant|0"); else phases=("$variant|0" "${phases[@]}"); fi
  done
  [ "${BENCH_PROJECTOR:-1}" != 0 ] && phases+=("${VARIANTS[0]}|1")
  first=1
  for phase in "${phases[@]}"; do
    if [ "$SIDE_BY_SIDE" != 1 ] || [ "$first" = 1 ]; then
      measured="$(baseline)" || exit 1
      read -r raw raw_p50 raw_p99 <<<"$measured"
      printf 'round %d  %-34s %7s /s  p50 %6s ms  p99 %6s ms\n' "$round" "raw INSERT (pgbench)" \
        "$raw" "$raw_p50" "$raw_p99"
      RAWS+="$raw "
    fi
    first=0
    variant="${phase%|*}"
    with_projector="${phase#*|}"
    label="POST /orders [${variant%%:*}]"
    [ "$with_projector" = 1 ] && label="$label + projector"
    measured="$(commands "$variant" "$with_projector")" || exit 1
    read -r rate p50 p99 per_request cpu sink_cpu db_cpu <<<"$measured"
    ratio="$(awk -v a="$rate" -v b="$raw" 'BEGIN { printf "%.2f", a / b }')"
    sink_note=""
    [ -n "$OTLP_PID" ] && sink_note=", trace receiver $sink_cpu"
    printf 'round %d  %-34s %7s /s  p50 %6s ms  p99 %6s ms  %sx raw  %s xact/req  us CPU/req: API %s, database %s%s\n' \
      "$round" "$label" "$rate" "$p50" "$p99" "$ratio" "$per_request" "$cpu" "$db_cpu" "$sink_note"
    RATIOS[$label]+="$ratio "
    P99S[$label]+="$p99 "
    RATES[$label]+="$rate "
    ROUND_RATE[$label]="$rate"
  done
  for variant in "${VARIANTS[@]:1}"; do
    label="POST /orders [${variant%%:*}]"
    AGAINST_FIRST[$label]+="$(awk -v a="${ROUND_RATE[$label]}" \
      -v b="${ROUND_RATE["POST /orders [${VARIANTS[0]%%:*}]"]}" 'BEGIN { printf "%.3f", a / b }') "
  done
done
echo "medians of $ROUNDS rounds (each ratio to the raw baseline of its round, run before it):"
printf '  %-34s %7s /s\n' "raw INSERT (pgbench)" "$(tr ' ' '\n' <<<"$RAWS" | grep . | median)"
for label in "${!RATIOS[@]}"; do
  printf '  %-34s %7s /s  p99 %6s ms  %sx raw\n' "$label" \
    "$(tr ' ' '\n' <<<"${RATES[$label]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${P99S[$label]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${RATIOS[$label]}" | grep . | median)"
done | sort
# Each further variant's rate against the first's in the same round (say, tracing on against
# off): round by round, and the median.
if [ "${#VARIANTS[@]}" -gt 1 ]; then
  echo "against POST /orders [${VARIANTS[0]%%:*}] in the same round:"
  for variant in "${VARIANTS[@]:1}"; do
    label="POST /orders [${variant%%:*}]"
    printf '  %-34s %s-> median %sx\n' "$label" "${AGAINST_FIRST[$label]}" \
      "$(tr ' ' '\n' <<<"${AGAINST_FIRST[$label]}" | grep . | median)"
  done
fi
if [ "$OTLP_SINK" = 1 ]; then
  # The APIs still running send their last spans as they stop, before the receiver counts.
  for pid in "${SIDE_PID[@]}"; do
    stop "$pid"
  done
  stop "$OTLP_PID"
  grep 'received' "$WORK/otlp-sink.log" || echo "the trace receiver printed no count" >&2
fi
