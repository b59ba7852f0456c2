#!/usr/bin/env bash
# Runs Milestone's whole test suite on a fresh machine: starts PostgreSQL if needed, prepares
# the test login, then formatting, lints and every workspace test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
ensure_postgres

export MILESTONE_TEST_DATABASE_URL="${MILESTONE_TEST_DATABASE_URL:-$DEFAULT_DATABASE_URL}"

# Each test creates its own database named test_<32 hex digits>; drop those of earlier runs.
psql "$MILESTONE_TEST_DATABASE_URL" -Atqc \
  "select datname from pg_database where datname ~ '^test_[0-9a-f]{32}$'" |
  while read -r db; do psql "$MILESTONE_TEST_DATABASE_URL" -qc "drop database if exists $db with (force)"; done

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
