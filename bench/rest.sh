#!/usr/bin/env bash
# The REST gateway under wrk (Debian package wrk), PostgreSQL + Redis: GET /api/v1/posts (a
# page of 20 of 1,000 posts) and GET /api/v1/users/me, 32 connections, next to the same
# calls made directly over gRPC with h2load (nghttp2-client): ListPosts and GetProfile.
#
#   bash bench/rest.sh                  # release build, 2 rounds of 10 s per route
#   ROUNDS=1 DURATION=5 bash bench/rest.sh
#
# One process runs the pair and the gateway (target/release/auth-blog) on fresh databases
# and the local Redis; loadgen seeds 1,000 posts. wrk and h2load each report non-2xx
# answers: the script fails if there was any.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10}"
PGHOST="${PGHOST:-127.0.0.1}"
PGUSER="${PGUSER:-postgres}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
AUTH=127.0.0.1:50491 BLOG=127.0.0.1:50492 GATEWAY=127.0.0.1:8491

log() { printf '[rest %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in wrk h2load jq curl psql; do command -v "$tool" >/dev/null || die "$tool is missing"; done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/rest-bench.XXXXXX")"
PID="" DATABASES=()
cleanup() {
  local status=$?
  [[ -n "$PID" ]] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  for db in "${DATABASES[@]}"; do
    psql -h "$PGHOST" -U "$PGUSER" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT

[[ -n "${SKIP_BUILD:-}" ]] || (cd "$ROOT" && cargo build --release -p auth-blog -p loadgen)
stamp="$(date +%Y%m%d%H%M%S)_$$"
for name in auth blog; do
  DATABASES+=("rest_${name}_$stamp")
  psql -h "$PGHOST" -U "$PGUSER" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE rest_${name}_$stamp" >/dev/null
done
# Every client here is 127.0.0.1: the per-address hashing budgets would stop the seeding.
(cd "$TMP" && exec env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn \
  AUTH_LISTEN_ADDR=$AUTH BLOG_LISTEN_ADDR=$BLOG GATEWAY_LISTEN_ADDR=$GATEWAY \
  AUTH_DATABASE_URL="postgres://$PGUSER@$PGHOST:5432/rest_auth_$stamp" AUTH_REDIS_URL="$REDIS_URL" \
  AUTH_REDIS_REFRESH_DB=9 AUTH_REDIS_BLOCKLIST_DB=10 \
  AUTH_JWT_SECRET="rest-bench-secret-rest-bench-secret-0123" \
  AUTH_ADDRESS_REGISTRATION_LIMIT=0 AUTH_ADDRESS_HASH_LIMIT=0 AUTH_ADDRESS_HASHES_IN_FLIGHT=0 \
  BLOG_DATABASE_URL="postgres://$PGUSER@$PGHOST:5432/rest_blog_$stamp" \
  "$BIN/auth-blog") >"$TMP/pair.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://$GATEWAY/healthz" && break; sleep 0.2; done
curl -sf -o /dev/null "http://$GATEWAY/healthz" || { cat "$TMP/pair.log" >&2; die "the gateway is not healthy"; }

log "seeding 1,000 posts (loadgen)"
"$BIN/loadgen" --auth-url "http://$AUTH" --blog-url "http://$BLOG" --scenario list-posts \
  --seed-users 10 --seed-posts 1000 --duration 1s --warmup 0s >/dev/null

user="rest$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
curl -sf -X POST "http://$GATEWAY/api/v1/signup" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$user\",\"email\":\"$user@example.com\",\"password\":\"rest bench passphrase\"}" >/dev/null
token=$(curl -sf -X POST "http://$GATEWAY/api/v1/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$user\",\"password\":\"rest bench passphrase\"}" | jq -r .access_token)
count=$(curl -sf "http://$GATEWAY/api/v1/posts" | jq '.posts | length')
[[ "$count" == 20 ]] || die "a page has $count posts, not 20"
printf '\0\0\0\0\0' >"$TMP/empty.grpc"   # an empty gRPC message: ListPosts (page 20), GetProfile

wrk_run() { # wrk_run NAME URL [HEADER]: prints "NAME rps p50 p99 non2xx"
  local out
  out=$(wrk -t1 -c32 -d"${DURATION}s" --latency ${3:+-H "$3"} "$2")
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF} /Socket errors/ {print "socket:" $0}' <<<"$out")
  printf '%-28s %10s req/s  p50 %-9s p99 %-9s %s\n' "$1" "$rps" "$p50" "$p99" "${bad:-no errors}"
  [[ -z "$bad" ]] || die "$1: $bad"
}
h2_run() { # h2_run NAME URL [HEADER]: direct gRPC with h2load, 4 connections, 32 in flight
  local out
  out=$(h2load -c4 -m8 -t1 -D"$DURATION" -d "$TMP/empty.grpc" -H 'content-type: application/grpc' \
    -H 'te: trailers' ${3:+-H "$3"} "$2")
  local rps ok
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  ok=$(awk '/^status codes:/ {print $3, $5}' <<<"$out")
  printf '%-28s %10s req/s  (2xx, 3xx: %s)\n' "$1" "$rps" "$ok"
}

for round in $(seq 1 "$ROUNDS"); do
  log "round $round"
  wrk_run "GET /api/v1/posts" "http://$GATEWAY/api/v1/posts"
  h2_run "gRPC ListPosts (direct)" "http://$BLOG/blog.v1.BlogService/ListPosts"
  wrk_run "GET /api/v1/users/me" "http://$GATEWAY/api/v1/users/me" "Authorization: Bearer $token"
  h2_run "gRPC GetProfile (direct)" "http://$AUTH/auth.v1.AuthService/GetProfile" "authorization: Bearer $token"
done
