#!/usr/bin/env bash
# Starts the pair and its REST gateway (target/debug/auth-blog, built beforehand with
# `cargo build --workspace`) in a temporary directory on non-default ports, waits until
# both servers are SERVING and the gateway's /healthz answers 200, runs
# tests/clients/run.sh against them, and stops them whatever happens.
#
#   tests/clients/with_pair.sh        # AUTH_ADDR / BLOG_ADDR / GATEWAY_ADDR default
#                                     # 127.0.0.1:50061 / :50062 / :8061
#
# The pair gets no AUTH_* / BLOG_* / GATEWAY_* configuration from the caller's environment
# but the listen addresses, an Ed25519 signing key made with openssl in the temporary
# directory (so the clients check EdDSA tokens against ListKeys), and no per-address
# hashing budgets (every client of the suite calls from 127.0.0.1): embedded SQLite in the
# temporary directory, in-process tokens.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

export AUTH_ADDR=${AUTH_ADDR:-127.0.0.1:50061}
export BLOG_ADDR=${BLOG_ADDR:-127.0.0.1:50062}
export GATEWAY_ADDR=${GATEWAY_ADDR:-127.0.0.1:8061}
bin=${CARGO_TARGET_DIR:-$root/target}/debug
case $bin in /*) ;; *) bin=$root/$bin ;; esac
for binary in auth-blog auth-service blog-service; do
  [ -x "$bin/$binary" ] || { echo "with_pair: $bin/$binary is missing: run cargo build --workspace" >&2; exit 1; }
done

auth_healthy() { AUTH_LISTEN_ADDR=$AUTH_ADDR "$bin/auth-service" healthcheck >/dev/null 2>&1; }
blog_healthy() { BLOG_LISTEN_ADDR=$BLOG_ADDR "$bin/blog-service" healthcheck >/dev/null 2>&1; }
gateway_healthy() { curl -sf -o /dev/null --max-time 2 "http://$GATEWAY_ADDR/healthz"; }
gateway_answers() { curl -s -o /dev/null --max-time 2 "http://$GATEWAY_ADDR/healthz"; }
if auth_healthy || blog_healthy || gateway_answers; then
  echo "with_pair: a server already answers on $AUTH_ADDR, $BLOG_ADDR or $GATEWAY_ADDR; set AUTH_ADDR/BLOG_ADDR/GATEWAY_ADDR" >&2
  exit 1
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/auth-blog-pair.XXXXXX")
pid=
runner=
stop_pair() {
  local status=$?
  if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
    kill -TERM "$runner" 2>/dev/null || true
    wait "$runner" 2>/dev/null || true
  fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    echo "== stop the pair (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "with_pair: the pair did not stop within 10 s of SIGTERM: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$workdir/pair.log" ]; then
    echo "== the pair's log (last 60 lines)" >&2
    tail -n 60 "$workdir/pair.log" >&2
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap stop_pair EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v openssl >/dev/null || { echo "with_pair: openssl is required to make the signing key" >&2; exit 1; }
openssl genpkey -algorithm ed25519 -out "$workdir/signing-key.pem"
# The Python client tests check that the tokens are EdDSA, verified by the JWK Set.
export EXPECTED_TOKEN_ALG=EdDSA

echo "== start the pair: auth $AUTH_ADDR, blog $BLOG_ADDR, gateway $GATEWAY_ADDR, in $workdir (EdDSA)"
(
  cd "$workdir"
  listen_auth=$AUTH_ADDR listen_blog=$BLOG_ADDR listen_gateway=$GATEWAY_ADDR
  while IFS= read -r variable; do unset "$variable"; done < <(compgen -e | grep -E '^(AUTH|BLOG|GATEWAY)_' || true)
  export AUTH_LISTEN_ADDR=$listen_auth BLOG_LISTEN_ADDR=$listen_blog GATEWAY_LISTEN_ADDR=$listen_gateway
  export AUTH_JWT_PRIVATE_KEYS=$workdir/signing-key.pem
  # Every client here calls from 127.0.0.1: the per-address budgets of password hashing
  # (registrations an hour, hashes a minute) would count the whole suite as one client.
  export AUTH_ADDRESS_REGISTRATION_LIMIT=0 AUTH_ADDRESS_HASH_LIMIT=0
  exec "$bin/auth-blog"
) >"$workdir/pair.log" 2>&1 &
pid=$!

echo "== wait until both servers are SERVING and the gateway is healthy"
for _ in $(seq 1 120); do
  kill -0 "$pid" 2>/dev/null || { echo "with_pair: the pair exited during startup" >&2; exit 1; }
  auth_healthy && blog_healthy && gateway_healthy && break
  sleep 0.5
done
auth_healthy && blog_healthy && gateway_healthy ||
  { echo "with_pair: the pair and gateway are not SERVING after 60 s" >&2; exit 1; }
echo "all SERVING"

# Bounded: every call has its own deadline, and the whole run at most 15 minutes. In the
# background, so that a signal to this script stops the run and the pair at once.
timeout 900 bash tests/clients/run.sh &
runner=$!
wait "$runner"
