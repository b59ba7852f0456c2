# Sourced by the run and test scripts: makes sure a PostgreSQL server answers on 127.0.0.1:5432
# with the password login the project uses by default.
DEFAULT_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"

ensure_postgres() {
  if [ -n "${MILESTONE_SKIP_POSTGRES_SETUP:-}" ]; then
    return 0
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    :
  elif command -v pg_ctlcluster >/dev/null 2>&1; then
    local version
    version="$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" { print $1; exit }')"
    if [ -z "$version" ]; then
      echo "no PostgreSQL cluster found: install PostgreSQL 15 (apt-get install postgresql)" >&2
      return 1
    fi
    echo "starting PostgreSQL $version (cluster main)"
    if [ "$(id -u)" = 0 ]; then
      pg_ctlcluster "$version" main start || true
    else
      sudo pg_ctlcluster "$version" main start || true
    fi
    for _ in $(seq 1 30); do
      pg_isready -q -h 127.0.0.1 -p 5432 && break
      sleep 1
    done
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is not available;" >&2
    echo "start PostgreSQL yourself or set MILESTONE_TEST_DATABASE_URL / DATABASE_URL" >&2
    return 1
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; return 1; }
  # Local default login: user postgres, password postgres (only if we can act as postgres).
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    su postgres -c "psql -q -c \"alter user postgres password 'postgres'\"" >/dev/null
  fi
}
