# Development keys and tokens for local runs, made with openssl alone: an RSA key pair created
# once in MILESTONE_DEV_KEYS_DIR (default .milestone/dev-keys, git-ignored) and reused after, its
# public half as a JSON Web Key Set, and RS256 tokens for any role. Sourced by scripts/run.sh and
# scripts/fuzz-command-api.sh; a real deployment gets its tokens from an identity provider.
#
#   ensure_dev_keys           makes (or reuses) the keys; exports MILESTONE_AUTH_JWKS_FILE,
#                             MILESTONE_AUTH_ISSUER and MILESTONE_AUTH_AUDIENCE for the services
#   dev_token ROLE [CUSTOMER] prints a token for ROLE (a customer's names CUSTOMER), valid 24 h

DEV_KEYS_DIR="${MILESTONE_DEV_KEYS_DIR:-$PWD/.milestone/dev-keys}"
DEV_ISSUER="milestone-dev"
DEV_AUDIENCE="milestone"
DEV_ROLES="shop payment inventory warehouse carrier refunds support analyst customer"

_b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

ensure_dev_keys() {
  if ! command -v openssl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing openssl (Debian package) for the development keys"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
    else
      echo "openssl is needed for the development keys: apt-get install openssl" >&2; return 1
    fi
  fi
  mkdir -p "$DEV_KEYS_DIR"
  chmod 700 "$DEV_KEYS_DIR"
  DEV_KEY="$DEV_KEYS_DIR/dev-key.pem"
  if [ ! -s "$DEV_KEY" ]; then
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$DEV_KEY" 2>/dev/null)
  fi
  local hex n
  hex="$(openssl rsa -in "$DEV_KEY" -noout -modulus | cut -d= -f2)"
  n="$(printf '%b' "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | _b64url)"
  # The key's id follows from the key: a new key is never mistaken for an old one.
  DEV_KID="dev-$(printf '%s' "$hex" | sha256sum | cut -c1-16)"
  printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"%s","n":"%s","e":"AQAB"}]}\n' \
    "$DEV_KID" "$n" > "$DEV_KEYS_DIR/jwks.json"
  export MILESTONE_AUTH_JWKS_FILE="$DEV_KEYS_DIR/jwks.json"
  export MILESTONE_AUTH_ISSUER="$DEV_ISSUER"
  export MILESTONE_AUTH_AUDIENCE="$DEV_AUDIENCE"
}

dev_token() {
  local role="$1" customer="${2:-}" now header claims signature
  now="$(date +%s)"
  header="$(printf '{"alg":"RS256","typ":"JWT","kid":"%s"}' "$DEV_KID" | _b64url)"
  claims="$(printf '{"sub":"dev-%s","role":"%s","iss":"%s","aud":"%s","iat":%s,"nbf":%s,"exp":%s%s}' \
    "$role" "$role" "$DEV_ISSUER" "$DEV_AUDIENCE" "$now" "$now" "$((now + 86400))" \
    "${customer:+,\"customer_id\":\"$customer\"}" | _b64url)"
  signature="$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$DEV_KEY" | _b64url)"
  printf '%s.%s.%s\n' "$header" "$claims" "$signature"
}
