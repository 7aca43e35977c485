#!/usr/bin/env bash
# Overload with bounded memory (issue 19, part 5): floods a release auth-service
# (embedded stores) with h2load, N HTTP/2 connections with STREAMS Health/Check calls each
# in flight, while a probe times one Health/Check on a connection of its own every
# 200 ms (as a Kubernetes gRPC probe does: a new connection per check), and samples the
# server's resident memory. Once with the limits off (the behaviour before them) and once
# with the defaults.
#
#   bash bench/overload.sh                    # 2000 and 8000 connections, 15 s each
#   DURATION=30 STREAMS=20 bash bench/overload.sh 2000 8000 12000
#   MODES="on" bash bench/overload.sh 8000
#   MODES=on ON_ENV="AUTH_MAX_STREAMS_PER_CONNECTION=4" bash bench/overload.sh 2000
#   MODES=on HEALTH_PORT=50471 bash bench/overload.sh   # probes on AUTH_HEALTH_ADDR
#
# Prints per run: h2load's requests/s, succeeded and failed requests, failed connections
# and mean/max latency, the probe's checks (ok/all) and latency p50/p99/max (each probe
# is `auth-service healthcheck`, so it includes that process's start, a few ms), and the
# server's RSS before the flood and at its peak (VmHWM). The open-file limit is raised
# to the hard limit for both sides.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
DURATION="${DURATION:-15}"
STREAMS="${STREAMS:-20}"
MODES="${MODES:-off on}"
PORT="${PORT:-50461}"
CONNECTIONS=("$@")
# HEALTH_PORT: serve health on a listener of its own there (AUTH_HEALTH_ADDR) and probe
# it; the flood stays on the main listener.
HEALTH=()
[[ -n "${HEALTH_PORT:-}" ]] && HEALTH=(AUTH_HEALTH_ADDR="127.0.0.1:$HEALTH_PORT")
[[ ${#CONNECTIONS[@]} -gt 0 ]] || CONNECTIONS=(2000 8000)

log() { printf '[overload %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v h2load >/dev/null || die "h2load is missing: apt-get install nghttp2-client"
ulimit -n "$(ulimit -Hn)"
log "open-file limit: $(ulimit -n)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/overload.XXXXXX")"
SERVER_PID=""
cleanup() {
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
[[ -x "$BIN/auth-service" ]] || (cd "$ROOT" && cargo build --release -p auth-service)
printf '\0\0\0\0\0' >"$TMP/health.bin"   # a gRPC frame of an empty HealthCheckRequest

rss_kb() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }

printf '%-6s %6s %10s %9s %9s %8s %9s %9s %9s %20s %9s %9s\n' limits conns req/s ok failed conn_err mean_ms max_ms probes "probe p50/p99/max ms" rss0_MB peak_MB
for mode in $MODES; do
  case "$mode" in
    off) LIMITS=(AUTH_MAX_CONNECTIONS=0 AUTH_MAX_CALLS_IN_FLIGHT=0 AUTH_MAX_STREAMS_PER_CONNECTION=200) ;;
    on) read -ra LIMITS <<<"${ON_ENV:-}" ;;
    *) die "MODES lists off and/or on" ;;
  esac
  for conns in "${CONNECTIONS[@]}"; do
    rm -rf "$TMP/data"
    (cd "$TMP" && exec env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn "${LIMITS[@]}" "${HEALTH[@]}" \
      AUTH_LISTEN_ADDR="127.0.0.1:$PORT" AUTH_JWT_SECRET="overload-bench-secret-overload-bench" \
      "$BIN/auth-service") >"$TMP/auth.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
      AUTH_LISTEN_ADDR="127.0.0.1:$PORT" "$BIN/auth-service" healthcheck >/dev/null 2>&1 && break
      kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/auth.log" >&2; die "auth-service exited"; }
      sleep 0.2
    done
    rss0="$(rss_kb "$SERVER_PID" VmRSS)"
    h2load -t 1 -c "$conns" -m "$STREAMS" -D "$DURATION" -d "$TMP/health.bin" \
      -H 'content-type: application/grpc' -H 'te: trailers' \
      "http://127.0.0.1:$PORT/grpc.health.v1.Health/Check" >"$TMP/h2load.txt" 2>&1 &
    H2_PID=$!
    : >"$TMP/probes.txt"
    sleep 1
    while kill -0 "$H2_PID" 2>/dev/null; do
      start=$(date +%s%N)
      if env AUTH_LISTEN_ADDR="127.0.0.1:$PORT" "${HEALTH[@]}" timeout 5 "$BIN/auth-service" healthcheck >/dev/null 2>&1; then
        echo "ok $(( ($(date +%s%N) - start) / 1000000 ))" >>"$TMP/probes.txt"
      else
        echo "failed $(( ($(date +%s%N) - start) / 1000000 ))" >>"$TMP/probes.txt"
      fi
      sleep 0.2
    done
    wait "$H2_PID" || true
    peak="$(rss_kb "$SERVER_PID" VmHWM)"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    out="$(cat "$TMP/h2load.txt")"
    rate="$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")"
    succeeded="$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")"
    failed="$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' <<<"$out")"
    conn_err="$(sed -n 's/^requests: .* \([0-9]*\) errored.*/\1/p' <<<"$out")"
    read -r mean max < <(awk '/^time for request:/ { print $6, $5 }' <<<"$out")
    to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.1f", v / 1000; else if (v ~ /ms$/) printf "%.1f", v + 0; else if (v ~ /s$/) printf "%.1f", v * 1000; else print "?" }'; }
    probes="$(awk '$1 == "ok" { ok++ } END { printf "%d/%d", ok, NR }' "$TMP/probes.txt")"
    lat="$(awk '{ print $2 }' "$TMP/probes.txt" | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } p50 = v[int((NR + 1) * 0.5)]; i = int(NR * 0.99 + 0.999); if (i < 1) i = 1; printf "%d/%d/%d", p50, v[i], v[NR] }')"
    printf '%-6s %6s %10s %9s %9s %8s %9s %9s %9s %20s %9.1f %9.1f\n' "$mode" "$conns" "${rate:-?}" \
      "${succeeded:-?}" "${failed:-?}" "${conn_err:-?}" "$(to_ms "${mean:-?}")" "$(to_ms "${max:-?}")" \
      "$probes" "$lat" "$(awk -v k="$rss0" 'BEGIN { print k / 1024 }')" "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')"
    grep -E '^(requests|status codes|time for request):' "$TMP/h2load.txt" | sed "s/^/  [$mode $conns] /" >&2
  done
done
