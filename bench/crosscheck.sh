#!/usr/bin/env bash
# Cross-checks loadgen's `health` and `introspect` figures with h2load (Debian package
# nghttp2-client), an HTTP/2 load generator that shares no code with ours: both tools
# load the same auth-service, in turns, with the same shape (4 connections, 32 calls in
# flight), and the script prints each tool's rates and Introspect's ratio to health.
#
#   bash bench/crosscheck.sh                     # embedded auth-service, 2 rounds of 10 s
#   BACKEND=postgres bash bench/crosscheck.sh    # PostgreSQL + Redis (a fresh database)
#   ROUNDS=3 DURATION=5 SERVICE_THREADS=default bash bench/crosscheck.sh
#
# h2load sends gRPC as plain HTTP/2 POSTs of a fixed request body: Health/Check with an
# empty request, Introspect with one live access token (made with `npx buf curl`, so run
# `npm ci` once). It cannot read gRPC trailers, so the script first checks with buf curl
# that this token is active, and after each h2load run that every request got HTTP 200
# and the answer size of an active token. SERVICE_THREADS (1, or default) as in
# bench/run.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
BACKEND="${BACKEND:-embedded}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10}"
SERVICE_THREADS="${SERVICE_THREADS:-1}"
PORT="${PORT:-50451}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
URL="http://127.0.0.1:$PORT"

log() { printf '[crosscheck %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v h2load >/dev/null || die "h2load is missing: apt-get install nghttp2-client"
command -v jq >/dev/null || die "jq is missing"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive whole number"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || die "DURATION must be whole seconds, at least 1"
case "$SERVICE_THREADS" in
  default) THREADS_ENV=() ;;
  *) [[ "$SERVICE_THREADS" =~ ^[1-9][0-9]*$ ]] || die "SERVICE_THREADS must be a number or default"
     THREADS_ENV=(TOKIO_WORKER_THREADS="$SERVICE_THREADS") ;;
esac

TMP="$(mktemp -d "${TMPDIR:-/tmp}/crosscheck.XXXXXX")"
AUTH_PID=""
DATABASE=""
cleanup() {
  local status=$?
  if [[ -n "$AUTH_PID" ]]; then
    kill -TERM "$AUTH_PID" 2>/dev/null || true
    wait "$AUTH_PID" 2>/dev/null || true
  fi
  if [[ -n "$DATABASE" ]]; then
    psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" \
      >/dev/null 2>&1 || log "could not drop database $DATABASE"
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(cd "$ROOT" && cargo build --release -p auth-service -p loadgen)
BACKEND_ENV=()
case "$BACKEND" in
  embedded) ;;
  postgres)
    DATABASE="crosscheck_auth_$(date +%Y%m%d%H%M%S)_$$"
    psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $DATABASE" \
      >/dev/null || die "cannot create database $DATABASE"
    BACKEND_ENV=(AUTH_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DATABASE"
      AUTH_REDIS_URL="$REDIS_URL")
    ;;
  *) die "BACKEND must be embedded or postgres, not \`$BACKEND\`" ;;
esac

(cd "$TMP" && exec env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn "${THREADS_ENV[@]}" \
  "${BACKEND_ENV[@]}" AUTH_LISTEN_ADDR="127.0.0.1:$PORT" \
  AUTH_JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" \
  AUTH_ACCESS_TOKEN_TTL=1h "$BIN/auth-service") >"$TMP/auth.log" 2>&1 &
AUTH_PID=$!
for _ in $(seq 100); do
  AUTH_LISTEN_ADDR="127.0.0.1:$PORT" "$BIN/auth-service" healthcheck >/dev/null 2>&1 && break
  kill -0 "$AUTH_PID" 2>/dev/null || { cat "$TMP/auth.log" >&2; die "auth-service exited"; }
  sleep 0.2
done
log "auth-service ($BACKEND, threads: $SERVICE_THREADS) serving on $URL"

bcurl() { (cd "$ROOT" && npx --no-install buf curl --protocol grpc --http2-prior-knowledge "$@"); }
name="cc$(date +%s)$$"
bcurl --data "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"crosscheck-password-1\"}" \
  "$URL/auth.v1.AuthService/Register" >/dev/null || die "Register failed (did you run npm ci?)"
token="$(bcurl --data "{\"username\":\"$name\",\"password\":\"crosscheck-password-1\"}" \
  "$URL/auth.v1.AuthService/Login" | jq -r .tokens.accessToken)"
[[ -n "$token" && "$token" != null ]] || die "Login gave no access token"
active="$(bcurl --data "{\"token\":\"$token\"}" "$URL/auth.v1.IntrospectionService/Introspect" \
  | jq -r .active)"
[[ "$active" == true ]] || die "the token is not active"

# gRPC frames: a zero flag byte, a 4-byte big-endian length, the protobuf message.
python3 - "$token" "$TMP" <<'EOF'
import struct, sys
token, tmp = sys.argv[1].encode(), sys.argv[2]
def frame(message): return b"\0" + struct.pack(">I", len(message)) + message
def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n: return out
open(f"{tmp}/health.bin", "wb").write(frame(b""))
open(f"{tmp}/introspect.bin", "wb").write(frame(b"\x0a" + varint(len(token)) + token))
EOF

# h2 PATH BODY MIN_BYTES: runs h2load, checks that every answer was HTTP 200 and that
# answers averaged at least MIN_BYTES of DATA (an active Introspect answer carries the
# user; an inactive one is an empty message and an error has none), prints req/s.
h2 () {
  local path="$1" body="$2" min_bytes="$3" out
  out="$(h2load -t 1 -c 4 -m 8 --warm-up-time=2 -D "$DURATION" -d "$body" \
    -H 'content-type: application/grpc' -H 'te: trailers' "$URL$path")"
  echo "$out" >>"$TMP/h2load.txt"
  local done ok
  done="$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' <<<"$out")"
  ok="$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")"
  [[ -n "$done" && "$done" == "$ok" && "$done" -gt 0 ]] || { echo "$out" >&2; die "h2load: not every answer was 200"; }
  local data
  data="$(sed -n 's/^traffic: .* (\([0-9]*\)) data.*/\1/p' <<<"$out")"
  ((data >= done * min_bytes)) || { echo "$out" >&2; die "h2load: answers to $path are too short"; }
  sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out"
}

lg () {
  "$BIN/loadgen" --auth-url "$URL" --scenario "$1" --concurrency 32 --connections 4 \
    --warmup 2s --duration "${DURATION}s" --seed-users 20 --json "$TMP/lg.json" >/dev/null 2>&1 \
    || die "loadgen $1 failed"
  jq -r '.scenarios[0] | if .error_count > 0 then error("errors") else .rps end' "$TMP/lg.json"
}

printf '%-8s %-7s %12s %14s %9s\n' round tool health/s introspect/s ratio
for round in $(seq "$ROUNDS"); do
  hh="$(h2 /grpc.health.v1.Health/Check "$TMP/health.bin" 7)"
  hi="$(h2 /auth.v1.IntrospectionService/Introspect "$TMP/introspect.bin" 40)"
  lh="$(lg health)"
  li="$(lg introspect)"
  awk -v r="$round" -v h="$hh" -v i="$hi" 'BEGIN { printf "%-8s %-7s %12.0f %14.0f %9.3f\n", r, "h2load", h, i, i / h }'
  awk -v r="$round" -v h="$lh" -v i="$li" 'BEGIN { printf "%-8s %-7s %12.0f %14.0f %9.3f\n", r, "loadgen", h, i, i / h }'
done
grep -E '^(finished|status codes|traffic)' "$TMP/h2load.txt" | sed 's/^/  h2load: /' >&2
