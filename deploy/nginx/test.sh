#!/usr/bin/env bash
# Two auth-service replicas and a blog-service behind nginx (deploy/nginx/auth-blog.conf),
# one auth replica killed under load. Needs `cargo build --workspace` first (auth-service,
# blog-service, loadgen) and `npm ci` (buf), nginx (Debian's nginx-light), jq, psql,
# python3, and the shared PostgreSQL and Redis the tests use (TEST_POSTGRES_URL,
# TEST_REDIS_URL).
#
#   deploy/nginx/test.sh
#
# What it runs, all on 127.0.0.1, ports picked free:
# - nginx with the shipped configuration, rendered for this test's ports, under a temp dir
#   (its own pid file, logs and temp paths);
# - auth-service twice, one fresh PostgreSQL database, the shared Redis, one JWT secret;
# - blog-service, reaching auth-service through nginx (BLOG_AUTH_URL = the balancer);
# - loadgen through nginx: Introspect under a flood of Logins. KILL_AFTER seconds into
#   the measured window one auth replica gets SIGKILL.
#
# Failed calls are bounded by the number of loadgen tasks (CONCURRENCY + LOGIN_CONCURRENCY):
# each task has at most one call in flight, so at the kill at most that many calls are on
# the dead replica; the first failure takes it out of the rotation (max_fails=1) for 5 s,
# and a connect it refuses afterwards is retried on the other replica. Only calls already
# sent to the dead replica may fail, and they must fail as UNAVAILABLE.
#
# Bounded (every wait has a limit, loadgen runs DURATION), cleans up whatever happens,
# exits non-zero if any check failed, and ends with `N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

CONCURRENCY=${CONCURRENCY:-16}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-2}
DURATION=${DURATION:-8}
KILL_AFTER=${KILL_AFTER:-3}
postgres=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
postgres=${postgres%/}
redis=${TEST_REDIS_URL:-redis://127.0.0.1:6379}

bin=${CARGO_TARGET_DIR:-$root/target}/debug
case $bin in /*) ;; *) bin=$root/$bin ;; esac

say() { echo "nginx-test: $*"; }
die() { echo "nginx-test: $*" >&2; exit 1; }

for binary in auth-service blog-service loadgen; do
  [ -x "$bin/$binary" ] || die "$bin/$binary is missing: run cargo build --workspace"
done
for tool in nginx jq psql ss python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install nginx-light jq postgresql-client iproute2 python3)"
done
buf=$root/node_modules/.bin/buf
[ -x "$buf" ] || die "$buf is missing: run npm ci at the repository root (buf is pinned in package.json)"


passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok: $what"
  else
    failed=$((failed + 1)); echo "FAILED: $what"
  fi
}

# Free ports below the ephemeral range, so no outgoing connection takes one meanwhile.
picked=()
pick_port() {
  local port
  for _ in $(seq 1 500); do
    port=$((23000 + RANDOM % 9000))
    [[ " ${picked[*]} " == *" $port "* ]] && continue
    if [ -z "$(ss -Htan "( sport = :$port )")" ]; then picked+=("$port"); echo "$port"; return; fi
  done
  die "no free port in 23000-31999"
}
auth1_port=$(pick_port); auth2_port=$(pick_port); blog_port=$(pick_port)
lb_auth_port=$(pick_port); lb_blog_port=$(pick_port)
auth1=127.0.0.1:$auth1_port auth2=127.0.0.1:$auth2_port blog=127.0.0.1:$blog_port
lb_auth=127.0.0.1:$lb_auth_port lb_blog=127.0.0.1:$lb_blog_port

workdir=$(mktemp -d "${TMPDIR:-/tmp}/auth-blog-nginx.XXXXXX")
# nginx's workers run as nobody when the master is root: they must reach the temp paths.
chmod 755 "$workdir"
suffix=$(basename "$workdir" | tr -dc 'a-zA-Z0-9' | tr 'A-Z' 'a-z')
auth_db=nginx_auth_$suffix
blog_db=nginx_blog_$suffix
pids=()
loadgen_pid=
databases_created=

cleanup() {
  local status=$? pid
  [ -n "$loadgen_pid" ] && kill -TERM "$loadgen_pid" 2>/dev/null || true
  if [ -f "$workdir/nginx/nginx.pid" ]; then
    kill -TERM "$(cat "$workdir/nginx/nginx.pid")" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$databases_created" ]; then
    psql -q "$postgres/postgres" -c "DROP DATABASE IF EXISTS $auth_db WITH (FORCE)" \
      -c "DROP DATABASE IF EXISTS $blog_db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
    for log in "$workdir"/*.log "$workdir"/nginx/logs/error.log; do
      [ -s "$log" ] || continue
      echo "== $log (last 20 lines)" >&2
      tail -n 20 "$log" >&2
    done
  fi
  if [ -n "${KEEP_WORKDIR:-}" ]; then echo "nginx-test: kept $workdir" >&2; else rm -rf "$workdir"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== the shipped configuration"
check "deploy/nginx/auth-blog.conf is the template rendered with the defaults" \
  cmp -s deploy/nginx/auth-blog.conf <(bash deploy/nginx/render.sh)

mkdir -p "$workdir/nginx/logs" "$workdir/nginx/temp"
AUTH_LISTEN=$lb_auth BLOG_LISTEN=$lb_blog AUTH_REPLICAS="$auth1 $auth2" BLOG_REPLICAS=$blog \
  ACCESS_LOG=$workdir/nginx/logs/access.log bash deploy/nginx/render.sh >"$workdir/nginx/auth-blog.conf"
cat >"$workdir/nginx/nginx.conf" <<EOF
# The test's main file: its own pid, logs and temp paths; the shipped file inside http { }.
worker_processes 2;
pid $workdir/nginx/nginx.pid;
error_log $workdir/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $workdir/nginx/temp/body;
    proxy_temp_path $workdir/nginx/temp/proxy;
    fastcgi_temp_path $workdir/nginx/temp/fastcgi;
    uwsgi_temp_path $workdir/nginx/temp/uwsgi;
    scgi_temp_path $workdir/nginx/temp/scgi;
    include $workdir/nginx/auth-blog.conf;
}
EOF
nginx_cmd=(nginx -p "$workdir/nginx" -c "$workdir/nginx/nginx.conf")
check "nginx -t accepts the configuration" "${nginx_cmd[@]}" -t -q

echo "== databases $auth_db, $blog_db"
psql -q -v ON_ERROR_STOP=1 "$postgres/postgres" -c "CREATE DATABASE $auth_db" -c "CREATE DATABASE $blog_db" >/dev/null
databases_created=1

# Starts `env "$@"` in the background with only the settings given (none of the caller's
# AUTH_* / BLOG_*), logging to $1. The subshell execs it, so its pid is the service's.
spawn() {
  local log=$1
  shift
  (
    while IFS= read -r variable; do unset "$variable"; done < <(compgen -e | grep -E '^(AUTH|BLOG)_' || true)
    exec env "$@"
  ) >"$log" 2>&1 &
  pids+=($!)
}
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
# loadgen is one client address: limits per client address on password hashing and
# registration would shed its seeding and its Logins, so they are off (0). auth-service
# ignores the AUTH_* variables it does not know yet.
start_auth() {
  local address=$1 name=$2
  spawn "$workdir/$name.log" AUTH_LISTEN_ADDR="$address" AUTH_DATABASE_URL="$postgres/$auth_db" \
    AUTH_REDIS_URL="$redis" AUTH_JWT_SECRET="$secret" AUTH_TRUSTED_PROXIES=127.0.0.1 \
    AUTH_ADDRESS_HASHES_IN_FLIGHT=0 AUTH_ADDRESS_HASH_LIMIT=0 AUTH_ADDRESS_REGISTRATION_LIMIT=0 \
    AUTH_HASH_CONCURRENCY=1 TOKIO_WORKER_THREADS=2 RUST_LOG=warn "$bin/auth-service"
}
serving() { local var=$1 address=$2 binary=$3; env "$var=$address" "$bin/$binary" healthcheck >/dev/null 2>&1; }
wait_serving() {
  local var=$1 address=$2 binary=$3
  for _ in $(seq 1 120); do
    serving "$var" "$address" "$binary" && return 0
    sleep 0.25
  done
  return 1
}

echo "== auth-service replicas $auth1 and $auth2, blog-service $blog, nginx $lb_auth / $lb_blog"
# One after the other: the first applies the migrations to the fresh database.
start_auth "$auth1" auth1
auth1_pid=${pids[-1]}
wait_serving AUTH_LISTEN_ADDR "$auth1" auth-service || die "auth replica 1 is not SERVING after 30 s"
start_auth "$auth2" auth2
wait_serving AUTH_LISTEN_ADDR "$auth2" auth-service || die "auth replica 2 is not SERVING after 30 s"
spawn "$workdir/blog.log" BLOG_LISTEN_ADDR="$blog" BLOG_DATABASE_URL="$postgres/$blog_db" \
  BLOG_AUTH_URL="http://$lb_auth" TOKIO_WORKER_THREADS=2 RUST_LOG=warn "$bin/blog-service"
"${nginx_cmd[@]}" -g 'daemon off;' >"$workdir/nginx.log" 2>&1 &
pids+=($!)
wait_serving BLOG_LISTEN_ADDR "$blog" blog-service || die "blog-service is not SERVING after 30 s"
check "auth-service answers SERVING through nginx" wait_serving AUTH_LISTEN_ADDR "$lb_auth" auth-service
check "blog-service answers SERVING through nginx" wait_serving BLOG_LISTEN_ADDR "$lb_blog" blog-service

access_log=$workdir/nginx/logs/access.log
# Calls in the access log (after line $1) answered by upstream $2 with gRPC status 0.
ok_calls_by() { tail -n +"$(($1 + 1))" "$access_log" | grep -F "upstream=$2 " | grep -c ' grpc=0 ' || true; }
loadgen() {
  "$bin/loadgen" --auth-url "http://$lb_auth" --blog-url "http://$lb_blog" --call-timeout 5s "$@"
}

echo "== Introspect under a Login flood through nginx; auth replica 1 gets SIGKILL ${KILL_AFTER}s into ${DURATION}s"
loadgen --scenario introspect-under-login-flood --concurrency "$CONCURRENCY" \
  --login-concurrency "$LOGIN_CONCURRENCY" --hash-permits 2 --connections 4 \
  --seed-users 16 --warmup 1s --duration "${DURATION}s" --wait-ready 10s \
  --json "$workdir/kill.json" >"$workdir/loadgen-kill.out" 2>"$workdir/loadgen-kill.log" &
loadgen_pid=$!
# Seeding (register + log in 16 users) takes a variable time: wait for the scenario.
for _ in $(seq 1 600); do
  grep -q '^running ' "$workdir/loadgen-kill.log" 2>/dev/null && break
  kill -0 "$loadgen_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q '^running ' "$workdir/loadgen-kill.log" || die "loadgen did not start its scenario within 60 s"
sleep $((1 + KILL_AFTER))
lines_before_kill=$(wc -l <"$access_log")
check "before the kill both auth replicas answered calls" \
  test "$(ok_calls_by 0 "$auth1")" -gt 0 -a "$(ok_calls_by 0 "$auth2")" -gt 0
kill -KILL "$auth1_pid"
wait "$auth1_pid" 2>/dev/null || true
say "killed auth replica 1 ($auth1, pid $auth1_pid) ${KILL_AFTER}s into the measured window"
if ! timeout $((DURATION + 30)) tail --pid="$loadgen_pid" -f /dev/null; then
  die "loadgen did not end within $((DURATION + 30)) s"
fi
wait "$loadgen_pid" && loadgen_status=0 || loadgen_status=$?
loadgen_pid=
check "loadgen ran to the end (exit $loadgen_status)" test "$loadgen_status" -eq 0
cat "$workdir/loadgen-kill.out"

report=$workdir/kill.json
introspect_calls=$(jq '.scenarios[0].calls' "$report")
introspect_failed=$(jq '.scenarios[0].error_count' "$report")
login_calls=$(jq '.scenarios[0].login_flood.login.calls' "$report")
login_failed=$(jq '.scenarios[0].login_flood.login.error_count' "$report")
# Errors by code, Introspect's and Login's added up.
errors_by_code='[.scenarios[0].errors, .scenarios[0].login_flood.login.errors | to_entries[]]
  | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)})'
codes=$(jq -r "$errors_by_code"' | map("\(.key)=\(.value)") | join(" ")' "$report")
not_unavailable=$(jq "$errors_by_code"' | map(select(.key != "UNAVAILABLE" and .key != "INTERNAL") | .value) | add // 0' "$report")
internal=$(jq "$errors_by_code"' | map(select(.key == "INTERNAL") | .value) | add // 0' "$report")
failed_calls=$((introspect_failed + login_failed))
bound=$((CONCURRENCY + LOGIN_CONCURRENCY))
lines_after_kill=$(($(wc -l <"$access_log") - lines_before_kill))
survivor_after_kill=$(ok_calls_by "$lines_before_kill" "$auth2")
balancer_unavailable=$(tail -n +"$((lines_before_kill + 1))" "$access_log" | grep -cE '" 200 grpc=14 .*upstream_status=([0-9]+, )*50[234] ' || true)
# A call whose answer the killed replica had begun (headers sent, trailers not) cannot be
# answered UNAVAILABLE any more: nginx resets the stream, which gRPC clients read as
# INTERNAL (RST_STREAM INTERNAL_ERROR). nginx logs it with the replica's 200 and no gRPC
# status. Such calls are allowed, exactly as many as nginx logged.
cut_by_kill=$(tail -n +"$((lines_before_kill + 1))" "$access_log" | grep -F "upstream=$auth1 " | grep -cE '" 200 grpc=- .*upstream_status=200 ' || true)
echo "failed calls during the kill: $failed_calls of $((introspect_calls + login_calls))" \
  "(Introspect $introspect_failed of $introspect_calls, Login $login_failed of $login_calls;" \
  "codes: ${codes:-none}); bound $bound (one per loadgen task)"
echo "nginx after the kill: $lines_after_kill calls, $survivor_after_kill OK from replica 2," \
  "$balancer_unavailable answered UNAVAILABLE by nginx, $cut_by_kill cut mid-answer by the kill"
check "calls were measured across the kill (calls after it: $lines_after_kill)" \
  test "$lines_after_kill" -gt 100 -a "$introspect_calls" -gt 0
check "failed calls ($failed_calls) are at most one per loadgen task ($bound)" \
  test "$failed_calls" -le "$bound"
check "every failed call is UNAVAILABLE, or INTERNAL for an answer the kill cut (others: $not_unavailable)" \
  test "$not_unavailable" -eq 0
check "INTERNAL only for answers nginx saw cut by the kill ($internal of $cut_by_kill)" \
  test "$internal" -eq "$cut_by_kill"
check "the remaining replica answered calls after the kill ($survivor_after_kill)" \
  test "$survivor_after_kill" -gt 100
check "nginx answered UNAVAILABLE or cut as often as loadgen saw a call fail ($balancer_unavailable + $cut_by_kill)" \
  test "$((balancer_unavailable + cut_by_kill))" -eq "$failed_calls"

echo "== after the kill: Introspect, Login, and CreatePost (blog -> nginx -> auth), no error allowed"
check "loadgen after the kill" loadgen --scenario introspect,login,create-post --concurrency 4 \
  --connections 2 --seed-users 4 --hash-permits 1 --warmup 0s --duration 2s \
  --json "$workdir/after.json" >"$workdir/loadgen-after.out" 2>"$workdir/loadgen-after.log"
jq -r '.scenarios[] | "  \(.scenario): \(.calls) calls, \(.error_count) failed \(.errors)"' "$workdir/after.json" 2>/dev/null || true
check "every call after the kill succeeded" \
  test "$(jq '[.scenarios[] | .error_count] | add' "$workdir/after.json" 2>/dev/null || echo 1)" -eq 0
check "calls were made after the kill, create-post included" \
  test "$(jq '[.scenarios[] | select(.calls > 0)] | length' "$workdir/after.json" 2>/dev/null || echo 0)" -eq 3

echo "== the size limit and reflection through nginx (buf curl)"
# A real gRPC client, found by reflection through nginx: a 64 KiB message is answered,
# one byte more is RESOURCE_EXHAUSTED (from nginx or the replica, whichever counts first).
buf_introspect() {
  python3 -c 'import json, sys; print(json.dumps({"token": "a" * int(sys.argv[1])}))' "$1" >"$workdir/introspect-$1.json"
  timeout 30 "$buf" curl --protocol grpc --http2-prior-knowledge -d @"$workdir/introspect-$1.json" \
    "http://$lb_auth/auth.v1.IntrospectionService/Introspect" 2>&1 | tr -d '\n ' || true
}
largest=$(buf_introspect 65532)   # a 65536-byte message, a 65541-byte request body
too_large=$(buf_introspect 65533) # one byte more
echo "  65536-byte message: ${largest:0:120}"
echo "  65537-byte message: ${too_large:0:120}"
check "a 64 KiB message passes nginx and is answered" test "$largest" = "{}"
check "one byte more is RESOURCE_EXHAUSTED" grep -q '"code":"resource_exhausted"' <<<"$too_large"

echo "== the access log"
check "no authorization metadata in the access log" \
  bash -c "! grep -qiE 'bearer|authorization|eyJ' '$access_log'"
check "blog-service's Introspect calls went through nginx" \
  grep -q '"POST /auth.v1.IntrospectionService/Introspect HTTP/2.0"' "$access_log"

echo "== no auth replica left: nginx answers UNAVAILABLE at once"
kill -KILL "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
loadgen --scenario health --concurrency 1 --connections 1 --warmup 0s --duration 1s \
  --json "$workdir/none.json" >/dev/null 2>"$workdir/loadgen-none.log" || true
none_calls=$(jq '.scenarios[0].calls // 0' "$workdir/none.json" 2>/dev/null || echo 0)
none_unavailable=$(jq '.scenarios[0].errors.UNAVAILABLE // 0' "$workdir/none.json" 2>/dev/null || echo 0)
echo "  $none_calls calls in 1 s, $none_unavailable UNAVAILABLE"
check "every call is UNAVAILABLE, none hangs" test "$none_calls" -gt 10 -a "$none_unavailable" -eq "$none_calls"

echo
echo "nginx-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
