#!/usr/bin/env bash
# Benchmarks the auth + blog pair with loadgen, once per backend set.
#
#   bash bench/run.sh                # full run: 2s warm-up + 10s per scenario
#   QUICK=1 bash bench/run.sh        # smoke test: short durations, small seeds
#   BACKENDS=embedded bash bench/run.sh
#   BACKENDS=cluster bash bench/run.sh   # PostgreSQL + the local Redis Cluster
#   BACKENDS=cluster BENCH_MIN_REPLICAS=0 bash bench/run.sh   # … without WAIT
#   SOAK=1 bash bench/run.sh         # the benchmark, then the soak, on each backend
#   SOAK=only bash bench/run.sh      # only the soak (bench/soak.sh does this)
#   FLOOD=only bash bench/run.sh     # only login under a flood from one address
#   SIGNING=eddsa bash bench/run.sh  # auth-service signs with an Ed25519 key (default hs256)
#
# For each backend (embedded: SQLite in a temp dir + in-process token store;
# postgres: fresh databases bench_auth_<ts> / bench_blog_<ts> + Redis) it starts
# target/release/auth-service and target/release/blog-service on their own ports (not
# the defaults, so a running dev pair is left alone), runs every scenario at 32 calls in
# flight, then introspect at 256 in flight, records the peak RSS of each service, writes
# bench/results/<backend>.json (+ .txt tables, service logs) and stops the services.
#
# The soak (SOAK=1 or SOAK=only) starts a fresh pair on the same stores and runs
# loadgen's soak scenario: SOAK_CONCURRENCY (64) calls in flight for SOAK_DURATION (60s;
# loadgen is stopped after 1200s in all, seeding included), a checked mix of
# introspect, list-posts, get-post, create-post, refresh, login and logout where each
# task keeps its own session. It writes bench/results/soak-<backend>.json (+ .txt,
# service logs). Any unexpected error fails the soak: the script goes on with the next
# backend, then exits 1 naming the backends that failed.
#
# Threads: each service runs SERVICE_THREADS Tokio workers (TOKIO_WORKER_THREADS; default
# 1) and loadgen LOADGEN_THREADS (default 1), so that loadgen and the service under test
# each have a core of this 2-core machine, as `cpus: 1` containers would. With Tokio's
# default (a worker per core, SERVICE_THREADS=default) the processes together run more
# busy threads than there are cores, and a thread that loses its core waits for the
# scheduler's next 4 ms tick: BENCHMARKS.md shows what that does to p99.
#
# Environment: QUICK=1, BACKENDS ("embedded postgres"), SERVICE_THREADS (1, or default),
# LOADGEN_THREADS (1), PGHOST/PGPORT/PGUSER
# (127.0.0.1/5432/postgres), BENCH_REDIS_URL (redis://127.0.0.1:6379), KEEP_DB=1 (keep
# the bench databases), BENCH_RUST_LOG (warn), LOADGEN_ARGS (extra loadgen flags),
# SOAK (unset, 1 or only), SOAK_CONCURRENCY (64), SOAK_DURATION (60s; QUICK: 10s),
# SOAK_ARGS (extra loadgen flags of the soak, e.g. --soak-mix login=2), SOAK_FAULT (a
# shell command run SOAK_FAULT_AT (20s) into the soak's window; UNAVAILABLE is expected
# for SOAK_FAULT_WINDOW (15s) after it; results go to soak-failover-BACKEND; see
# bench/soak-failover.sh), FLOOD (unset, 1
# or only: login under a flood from one address, after the rest), FLOOD_CONCURRENCY (128).
# SOAK_ARGS (extra loadgen flags of the soak, e.g. --soak-mix login=2), SIGNING (hs256:
# a random AUTH_JWT_SECRET; eddsa: a new Ed25519 key in AUTH_JWT_PRIVATE_KEYS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="$ROOT/bench/results"
BIN="$ROOT/target/release"
BACKENDS="${BACKENDS:-embedded postgres}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
LOG_FILTER="${BENCH_RUST_LOG:-warn}"
read -r -a EXTRA_ARGS <<<"${LOADGEN_ARGS:-}"
read -r -a SOAK_EXTRA_ARGS <<<"${SOAK_ARGS:-}"
SOAK="${SOAK:-}"
SIGNING="${SIGNING:-hs256}"
case "$SIGNING" in
  hs256 | eddsa) ;;
  *) printf 'SIGNING must be hs256 or eddsa, not `%s`\n' "$SIGNING" >&2; exit 2 ;;
esac
case "$SOAK" in
  "" | 0 | 1 | only) ;;
  *) printf 'SOAK must be unset, 1 or only, not `%s`\n' "$SOAK" >&2; exit 2 ;;
esac
FLOOD="${FLOOD:-}"
case "$FLOOD" in
  "" | 0 | 1 | only) ;;
  *) printf 'FLOOD must be unset, 1 or only, not `%s`\n' "$FLOOD" >&2; exit 2 ;;
esac
FLOOD_CONCURRENCY="${FLOOD_CONCURRENCY:-128}"
[[ "$FLOOD_CONCURRENCY" =~ ^[1-9][0-9]*$ ]] || {
  printf 'FLOOD_CONCURRENCY must be a positive whole number, not `%s`\n' "$FLOOD_CONCURRENCY" >&2
  exit 2
}

if [[ "${QUICK:-0}" == 1 ]]; then
  WARMUP=500ms DURATION=2s SEED_USERS=20 SEED_POSTS=500 LOADGEN_LIMIT=300
  SOAK_DURATION="${SOAK_DURATION:-10s}" SOAK_SEED_POSTS=200
else
  WARMUP=2s DURATION=10s SEED_USERS=200 SEED_POSTS=10000 LOADGEN_LIMIT=1200
  SOAK_DURATION="${SOAK_DURATION:-60s}" SOAK_SEED_POSTS=2000
fi
SERVICE_THREADS="${SERVICE_THREADS:-1}"
LOADGEN_THREADS="${LOADGEN_THREADS:-1}"
if [[ "$SERVICE_THREADS" == default ]]; then
  THREADS_ENV=()
elif [[ "$SERVICE_THREADS" =~ ^[1-9][0-9]*$ ]]; then
  THREADS_ENV=(TOKIO_WORKER_THREADS="$SERVICE_THREADS")
else
  printf 'SERVICE_THREADS must be a positive whole number or default, not `%s`\n' "$SERVICE_THREADS" >&2
  exit 2
fi
[[ "$LOADGEN_THREADS" =~ ^[1-9][0-9]*$ ]] || {
  printf 'LOADGEN_THREADS must be a positive whole number, not `%s`\n' "$LOADGEN_THREADS" >&2
  exit 2
}
EXTRA_ARGS=(--threads "$LOADGEN_THREADS" "${EXTRA_ARGS[@]}")
CONCURRENCY=32
HIGH_CONCURRENCY=256
SOAK_CONCURRENCY="${SOAK_CONCURRENCY:-64}"
SOAK_FAILED=()

TMP="$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")"
AUTH_PID=""
BLOG_PID=""
LOADGEN_PID=""
DATABASES=()

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Sends SIGTERM, waits up to 10 s, then SIGKILL.
stop_process() {
  local pid="$1" name="$2"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

stop_services() {
  stop_process "$BLOG_PID" blog-service
  BLOG_PID=""
  stop_process "$AUTH_PID" auth-service
  AUTH_PID=""
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_process "$LOADGEN_PID" loadgen
  stop_services
  if [[ "${KEEP_DB:-0}" != 1 ]]; then
    for db in "${DATABASES[@]}"; do
      psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
        >/dev/null 2>&1 || log "could not drop database $db"
    done
  elif ((${#DATABASES[@]})); then
    log "kept databases: ${DATABASES[*]}"
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# "<VmHWM kB> <VmRSS kB>" of a process.
memory_kb() {
  awk '/^VmHWM:/ { hwm = $2 } /^VmRSS:/ { rss = $2 } END { printf "%s %s", hwm + 0, rss + 0 }' \
    "/proc/$1/status"
}

# run_loadgen TABLE_FILE ARGS…: runs loadgen in the background and waits for it (so a
# signal to this script is handled at once), then appends its table to TABLE_FILE.
run_loadgen() {
  local table="$1" status=0
  shift
  timeout "$LOADGEN_LIMIT" "$BIN/loadgen" "$@" >"$TMP/table" &
  LOADGEN_PID=$!
  wait "$LOADGEN_PID" || status=$?
  LOADGEN_PID=""
  cat "$TMP/table" >>"$table"
  cat "$TMP/table"
  return "$status"
}

show_logs() {
  local backend="$1"
  for service in auth blog; do
    log "last lines of $RESULTS/$backend-$service.log:"
    tail -n 20 "$RESULTS/$backend-$service.log" >&2 || true
  done
}

# start_pair BACKEND AUTH_PORT BLOG_PORT WORKDIR [VAR=VALUE…]: starts both services with
# a clean environment plus the given variables, in WORKDIR (./data/ goes there). loadgen
# is one client address that seeds hundreds of users and logs in as fast as it can, so
# the per-address limits in front of hashing are off unless the caller's VAR=VALUE sets
# them (address_flood does).
start_pair() {
  local backend="$1" auth_port="$2" blog_port="$3" workdir="$4"
  shift 4
  local port
  for port in "$auth_port" "$blog_port"; do
    port_in_use "$port" && die "port $port is already in use; stop whatever listens there"
  done
  local signing_key
  if [[ "$SIGNING" == eddsa ]]; then
    openssl genpkey -algorithm ed25519 -out "$TMP/signing-key.pem"
    signing_key=(AUTH_JWT_PRIVATE_KEYS="$TMP/signing-key.pem")
  else
    signing_key=(AUTH_JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')")
  fi
  local common=(PATH="$PATH" HOME="$HOME" RUST_LOG="$LOG_FILTER" "${THREADS_ENV[@]}" "$@")
  mkdir -p "$workdir"
  # The limits first: a VAR=VALUE of the caller's (in common) comes later and wins.
  (cd "$workdir" && exec env -i \
    AUTH_ADDRESS_HASHES_IN_FLIGHT=0 AUTH_ADDRESS_HASH_LIMIT=0 AUTH_ADDRESS_REGISTRATION_LIMIT=0 \
    "${common[@]}" \
    AUTH_LISTEN_ADDR="127.0.0.1:$auth_port" \
    "${signing_key[@]}" \
    AUTH_ACCESS_TOKEN_TTL=1h \
    AUTH_REFRESH_TOKEN_TTL=2h \
    "$BIN/auth-service") >"$RESULTS/$backend-auth.log" 2>&1 &
  AUTH_PID=$!
  (cd "$workdir" && exec env -i "${common[@]}" \
    BLOG_LISTEN_ADDR="127.0.0.1:$blog_port" \
    BLOG_AUTH_URL="http://127.0.0.1:$auth_port" \
    "$BIN/blog-service") >"$RESULTS/$backend-blog.log" 2>&1 &
  BLOG_PID=$!
  log "$backend: auth-service pid $AUTH_PID on :$auth_port, blog-service pid $BLOG_PID on :$blog_port"

  # Each service answers grpc.health.v1.Health: probe each with loadgen's health
  # scenario (pointed at that service), retrying while the processes are alive.
  local started=$SECONDS port
  for port in "$auth_port" "$blog_port"; do
    until "$BIN/loadgen" --auth-url "http://127.0.0.1:$port" --wait-ready 2s --scenario health \
      --warmup 0s --duration 100ms --concurrency 1 --connections 1 >/dev/null 2>&1; do
      kill -0 "$AUTH_PID" 2>/dev/null || { show_logs "$backend"; die "auth-service exited at start"; }
      kill -0 "$BLOG_PID" 2>/dev/null || { show_logs "$backend"; die "blog-service exited at start"; }
      ((SECONDS - started < 60)) || { show_logs "$backend"; die "127.0.0.1:$port not ready in 60s"; }
    done
  done
  log "$backend: both services are serving after $((SECONDS - started))s"
}

# bench BACKEND AUTH_PORT BLOG_PORT WORKDIR [VAR=VALUE…]
bench() {
  local backend="$1" auth_port="$2" blog_port="$3"
  start_pair "$@"
  local urls=(--auth-url "http://127.0.0.1:$auth_port" --blog-url "http://127.0.0.1:$blog_port")
  local common=("${urls[@]}" --warmup "$WARMUP" --duration "$DURATION" --seed-users "$SEED_USERS" "${EXTRA_ARGS[@]}")

  log "$backend: all scenarios at $CONCURRENCY in flight"
  : >"$RESULTS/$backend.txt"
  run_loadgen "$RESULTS/$backend.txt" "${common[@]}" --scenario all --concurrency "$CONCURRENCY" \
    --seed-posts "$SEED_POSTS" --json "$TMP/$backend-all.json" \
    || { show_logs "$backend"; die "$backend: loadgen failed"; }
  local auth_after_all blog_after_all
  auth_after_all="$(memory_kb "$AUTH_PID")"
  blog_after_all="$(memory_kb "$BLOG_PID")"

  # Reset the peak-RSS counters (VmHWM) so the next reading covers the 256 run only.
  local reset=true
  for pid in "$AUTH_PID" "$BLOG_PID"; do
    echo 5 2>/dev/null >"/proc/$pid/clear_refs" || reset=false
  done
  log "$backend: introspect at $HIGH_CONCURRENCY in flight"
  run_loadgen "$RESULTS/$backend.txt" "${common[@]}" --scenario introspect \
    --concurrency "$HIGH_CONCURRENCY" --json "$TMP/$backend-256.json" \
    || { show_logs "$backend"; die "$backend: loadgen failed"; }
  local auth_after_high blog_after_high
  auth_after_high="$(memory_kb "$AUTH_PID")"
  blog_after_high="$(memory_kb "$BLOG_PID")"
  stop_services

  local out="$RESULTS/$backend.json"
  {
    printf '{"backend": "%s", "quick": %s, "git_commit": "%s", "service_threads": "%s", "signing": "%s",\n' \
      "$backend" "$([[ "${QUICK:-0}" == 1 ]] && echo true || echo false)" \
      "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$SERVICE_THREADS" "$SIGNING"
    printf '"memory_kb": {"hwm_reset_before_256": %s,\n' "$reset"
    local name values
    for name in auth_after_all blog_after_all auth_after_high blog_after_high; do
      read -r -a values <<<"${!name}"
      printf '  "%s": {"peak_rss": %s, "rss": %s}%s\n' "$name" "${values[0]}" "${values[1]}" \
        "$([[ $name == blog_after_high ]] || echo ,)"
    done
    printf '},\n"all_scenarios": '
    cat "$TMP/$backend-all.json"
    printf ',\n"introspect_%s": ' "$HIGH_CONCURRENCY"
    cat "$TMP/$backend-256.json"
    printf '}\n'
  } >"$out.tmp"
  if command -v jq >/dev/null; then
    jq . "$out.tmp" >"$out" && rm "$out.tmp"
  else
    mv "$out.tmp" "$out"
  fi
  read -r -a a1 <<<"$auth_after_all"
  read -r -a b1 <<<"$blog_after_all"
  read -r -a a2 <<<"$auth_after_high"
  read -r -a b2 <<<"$blog_after_high"
  log "$backend: peak RSS after all scenarios: auth ${a1[0]} kB, blog ${b1[0]} kB;" \
    "during introspect@$HIGH_CONCURRENCY: auth ${a2[0]} kB, blog ${b2[0]} kB (reset: $reset)"
  log "$backend: wrote $out"
}

# soak BACKEND AUTH_PORT BLOG_PORT WORKDIR [VAR=VALUE…]: a fresh pair on the backend's
# stores, loadgen's soak scenario, bench/results/soak-BACKEND.json.
soak() {
  local backend="$1" auth_port="$2" blog_port="$3" workdir="$4"
  shift 4
  local name="soak-$backend" fault=()
  if [[ -n "${SOAK_FAULT:-}" ]]; then
    name="soak-failover-$backend"
    fault=(--fault-command "$SOAK_FAULT" --fault-at "${SOAK_FAULT_AT:-20s}"
      --fault-window "${SOAK_FAULT_WINDOW:-15s}")
  fi
  start_pair "$name" "$auth_port" "$blog_port" "$workdir" "$@"
  log "$backend: soak at $SOAK_CONCURRENCY in flight for $SOAK_DURATION"
  : >"$RESULTS/$name.txt"
  local status=0
  # One task per user, so that every task is its own client of its own user.
  run_loadgen "$RESULTS/$name.txt" \
    --auth-url "http://127.0.0.1:$auth_port" --blog-url "http://127.0.0.1:$blog_port" \
    --scenario soak --concurrency "$SOAK_CONCURRENCY" --warmup "$WARMUP" \
    --duration "$SOAK_DURATION" --seed-users "$SOAK_CONCURRENCY" \
    --seed-posts "$SOAK_SEED_POSTS" --json "$TMP/$name.json" "${SOAK_EXTRA_ARGS[@]}" \
    "${fault[@]}" \
    || status=$?
  case "$status" in
    0) ;;
    2) log "$backend: SOAK FAILED: unexpected errors (see $RESULTS/$name.txt)"
       SOAK_FAILED+=("$backend") ;;
    *) show_logs "$name"; die "$backend: loadgen failed (status $status) during the soak" ;;
  esac
  local auth_memory blog_memory
  auth_memory="$(memory_kb "$AUTH_PID")"
  blog_memory="$(memory_kb "$BLOG_PID")"
  stop_services

  local out="$RESULTS/$name.json" a b
  read -r -a a <<<"$auth_memory"
  read -r -a b <<<"$blog_memory"
  {
    printf '{"backend": "%s", "quick": %s, "git_commit": "%s", "passed": %s,\n' "$backend" \
      "$([[ "${QUICK:-0}" == 1 ]] && echo true || echo false)" \
      "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
      "$([[ $status == 0 ]] && echo true || echo false)"
    printf '"memory_kb": {"auth": {"peak_rss": %s, "rss": %s}, "blog": {"peak_rss": %s, "rss": %s}},\n' \
      "${a[0]}" "${a[1]}" "${b[0]}" "${b[1]}"
    printf '"loadgen": '
    cat "$TMP/$name.json"
    printf '}\n'
  } >"$out.tmp"
  if command -v jq >/dev/null; then
    jq . "$out.tmp" >"$out" && rm "$out.tmp"
  else
    mv "$out.tmp" "$out"
  fi
  log "$backend: soak peak RSS: auth ${a[0]} kB, blog ${b[0]} kB; at the end: auth ${a[1]} kB, blog ${b[1]} kB"
  log "$backend: wrote $out"
}

# address_flood BACKEND AUTH_PORT BLOG_PORT WORKDIR [VAR=VALUE…]: a fresh pair with the
# per-address limits at their defaults; one user logs in every 200 ms, alone and then
# while FLOOD_CONCURRENCY (128) tasks connected from 127.0.0.2 log in with unknown names.
# bench/results/address-flood-BACKEND.json (+ .txt).
address_flood() {
  local backend="$1" auth_port="$2" blog_port="$3" workdir="$4"
  shift 4
  local name="address-flood-$backend"
  start_pair "$name" "$auth_port" "$blog_port" "$workdir" "$@" \
    AUTH_ADDRESS_HASHES_IN_FLIGHT=4 AUTH_ADDRESS_HASH_LIMIT=60 AUTH_ADDRESS_REGISTRATION_LIMIT=20
  log "$backend: login every 200 ms, idle then under a flood of $FLOOD_CONCURRENCY from 127.0.0.2"
  : >"$RESULTS/$name.txt"
  run_loadgen "$RESULTS/$name.txt" --auth-url "http://127.0.0.1:$auth_port" \
    --scenario login-under-address-flood --flood-concurrency "$FLOOD_CONCURRENCY" \
    --flood-source 127.0.0.2 --seed-users 1 --warmup "$WARMUP" --duration "$DURATION" \
    --json "$RESULTS/$name.json" --threads "$LOADGEN_THREADS" \
    || { show_logs "$name"; die "$backend: loadgen failed during the address flood"; }
  local cpu
  cpu="$(awk '{print $14 + $15}' "/proc/$AUTH_PID/stat")"
  log "$backend: auth-service CPU after the flood: $((cpu * 1000 / $(getconf CLK_TCK))) ms"
  stop_services
  log "$backend: wrote $RESULTS/$name.json"
}

# run_backend BACKEND AUTH_PORT BLOG_PORT WORKDIR [VAR=VALUE…]: the benchmark and/or the
# soak, as SOAK asks (the soak on the next two ports), and the address flood as FLOOD asks
# (on the two after).
run_backend() {
  local backend="$1" auth_port="$2" blog_port="$3" workdir="$4"
  shift 4
  if [[ "$SOAK" != only && "$FLOOD" != only ]]; then
    bench "$backend" "$auth_port" "$blog_port" "$workdir" "$@"
  fi
  if [[ "$SOAK" == 1 || "$SOAK" == only ]]; then
    soak "$backend" "$((auth_port + 2))" "$((blog_port + 2))" "$workdir" "$@"
  fi
  if [[ "$FLOOD" == 1 || "$FLOOD" == only ]]; then
    address_flood "$backend" "$((auth_port + 4))" "$((blog_port + 4))" "$workdir" "$@"
  fi
}

mkdir -p "$RESULTS"
log "building release binaries"
(cd "$ROOT" && cargo build --release --workspace)
for binary in auth-service blog-service loadgen; do
  [[ -x "$BIN/$binary" ]] || die "$BIN/$binary is missing after the build"
done

for backend in $BACKENDS; do
  case "$backend" in
    embedded)
      run_backend embedded 50151 50152 "$TMP/embedded"
      ;;
    postgres)
      command -v psql >/dev/null || die "postgres backend: psql is not installed"
      ts="$(date +%Y%m%d%H%M%S)_$$"
      for service in auth blog; do
        psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -v ON_ERROR_STOP=1 -qc \
          "CREATE DATABASE bench_${service}_$ts" >/dev/null \
          || die "cannot create database bench_${service}_$ts on $PGHOST:$PGPORT as $PGUSER"
        DATABASES+=("bench_${service}_$ts")
      done
      run_backend postgres 50251 50252 "$TMP/postgres" \
        AUTH_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/bench_auth_$ts" \
        AUTH_REDIS_URL="$REDIS_URL" \
        BLOG_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/bench_blog_$ts"
      ;;
    cluster)
      # PostgreSQL + the local Redis Cluster of this checkout (started if it is not up).
      command -v psql >/dev/null || die "cluster backend: psql is not installed"
      cluster_urls="$(bash "$ROOT/tests/cluster/redis-cluster.sh" start)" \
        || die "cluster backend: tests/cluster/redis-cluster.sh start failed"
      ts="$(date +%Y%m%d%H%M%S)_$$"
      for service in auth blog; do
        psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -v ON_ERROR_STOP=1 -qc \
          "CREATE DATABASE benchc_${service}_$ts" >/dev/null \
          || die "cannot create database benchc_${service}_$ts on $PGHOST:$PGPORT as $PGUSER"
        DATABASES+=("benchc_${service}_$ts")
      done
      replicas=()
      [[ -n "${BENCH_MIN_REPLICAS:-}" ]] && replicas=(AUTH_REDIS_MIN_REPLICAS="$BENCH_MIN_REPLICAS")
      run_backend "cluster${BENCH_MIN_REPLICAS:+-wait$BENCH_MIN_REPLICAS}" 50351 50352 "$TMP/cluster" \
        AUTH_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/benchc_auth_$ts" \
        AUTH_REDIS_CLUSTER_URLS="$cluster_urls" "${replicas[@]}" \
        BLOG_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/benchc_blog_$ts"
      ;;
    *)
      die "unknown backend \`$backend\` in BACKENDS: use embedded, postgres and/or cluster"
      ;;
  esac
done
log "done: results in $RESULTS"
if ((${#SOAK_FAILED[@]})); then
  log "the soak saw unexpected errors on: ${SOAK_FAILED[*]}"
  exit 1
fi
