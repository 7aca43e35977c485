#!/usr/bin/env bash
# How cost grows with state (issue 20; BENCHMARKS.md, "How cost grows with state").
#
#   bash bench/scale.sh              # full run: 1M sessions, posts at 10k/100k/1M (~30 min)
#   QUICK=1 bash bench/scale.sh      # smoke run: small sizes, 2 s per scenario (~2 min)
#   PARTS="memory sessions" bash bench/scale.sh
#   PARTS=sessions-cluster bash bench/scale.sh   # Introspect past the cache on a Redis Cluster
#
# Everything runs on private servers it starts and removes: a redis-server on a free
# port (--save "" --appendonly no) and PostgreSQL databases bench_scale_<random>_* on
# $PGHOST:$PGPORT, dropped at exit. Nothing is written to the shared Redis.
#
# Parts (PARTS, default all, in this order):
#   memory         Redis bytes per live session (1, 10 and 500 sessions per user, and 500
#                  sessions of one user) and per blocked access token; the same for key
#                  layouts written by Lua
#                  (bench/redis_layout.sh); PostgreSQL and SQLite bytes per user and per post
#   sessions       Introspect over SESSION_SIZES live sessions, uniform and hot draws
#   sessions-cluster  the same on a private Redis Cluster (tests/cluster/redis-cluster.sh:
#                  3 masters + 3 replicas, its directory under this run's work directory,
#                  stopped at exit), auth-service on AUTH_REDIS_CLUSTER_URLS; memory and
#                  command counts summed over the masters. Not in the default PARTS
#                  (another ~5 min, and six more redis-servers on the machine's cores);
#                  results bench/results/scale-sessions-cluster-*.json
#   user-sessions  Login/Refresh/Logout/ListSessions of a user holding LEVELS sessions,
#                  LogoutAll of each, with Introspect running meanwhile
#   posts          ListPosts first and deep pages and GetPost at POST_SIZES posts, on
#                  PostgreSQL and SQLite (POST_BACKENDS)
# Sessions are seeded by `scale` through auth-service's own token store and codec; posts
# in bulk SQL (generate_series / a recursive CTE), one database (or file) and one
# blog-service per size, vacuumed, and on PostgreSQL checkpointed (so that neither
# autovacuum nor the writing of the seeded rows' pages runs in the middle of a
# measurement); the sizes are then measured in turn, POSTS_ROUNDS times, and each figure
# is the median of the rounds (bench/median_rounds.py, which also prints the largest size
# against the smallest, round by round).
# Results: bench/results/scale-*.json (QUICK: bench/results/quick/, not plotted); then
# bench/plot_scale.py redraws bench/plots/scale-*.png from them (PLOT=0 skips that).
#
# Environment: QUICK, PARTS, SESSION_SIZES ("10000 100000 1000000"), POST_SIZES ("10000
# 100000 1000000"), POST_BACKENDS ("postgres sqlite"), LEVELS (1,10,1000), MEMORY_SESSIONS
# (100000), DURATION (10s), WARMUP (2s), CONCURRENCY (32), PGHOST/PGPORT/PGUSER, NO_BUILD=1,
# RESULTS (bench/results), PLOT (1), POST_CACHE_MB (24: blog-service's BLOG_POST_CACHE_MB
# for the posts part; another value writes scale-posts-<backend>-<size>-cache<MB>mb.json),
# POSTS_WARMUP (10s: the posts part's warm-up, long enough for the readers to have visited
# the whole working set once, 50,000 ids and 9,000 deep pages at 1M, so that a cache that
# holds it is measured in its steady state; QUICK: WARMUP), POSTS_ROUNDS (3; QUICK: 1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="${RESULTS:-$ROOT/bench/results}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/release"
PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER
PARTS="${PARTS:-memory sessions user-sessions posts}"   # sessions-cluster: ask for it
if [[ "${QUICK:-0}" == 1 ]]; then
  SESSION_SIZES="${SESSION_SIZES:-2000 20000}" POST_SIZES="${POST_SIZES:-2000 20000}"
  MEMORY_SESSIONS="${MEMORY_SESSIONS:-5000}" LEVELS="${LEVELS:-1,10,100}"
  DURATION="${DURATION:-2s}" WARMUP="${WARMUP:-500ms}" BLOCKED_SHARE=10
  RESULTS="$RESULTS/quick" PLOT=0
else
  SESSION_SIZES="${SESSION_SIZES:-10000 100000 1000000}"
  POST_SIZES="${POST_SIZES:-10000 100000 1000000}"
  MEMORY_SESSIONS="${MEMORY_SESSIONS:-100000}" LEVELS="${LEVELS:-1,10,1000}"
  DURATION="${DURATION:-10s}" WARMUP="${WARMUP:-2s}" BLOCKED_SHARE=10
fi
POST_BACKENDS="${POST_BACKENDS:-postgres sqlite}"
CONCURRENCY="${CONCURRENCY:-32}"
POST_CACHE_MB="${POST_CACHE_MB:-24}"
if [[ "${QUICK:-0}" == 1 ]]; then POSTS_WARMUP="${POSTS_WARMUP:-$WARMUP}"; else POSTS_WARMUP="${POSTS_WARMUP:-10s}"; fi
if [[ "${QUICK:-0}" == 1 ]]; then POSTS_ROUNDS="${POSTS_ROUNDS:-1}"; else POSTS_ROUNDS="${POSTS_ROUNDS:-3}"; fi

fail() { printf 'bench/scale.sh: %s\n' "$*" >&2; exit 2; }
for size in $SESSION_SIZES $POST_SIZES $MEMORY_SESSIONS; do
  [[ "$size" =~ ^[1-9][0-9]*$ && "$size" -le 10000000 ]] || fail "sizes must be whole numbers from 1 to 10000000, not \`$size\`"
done
prev=0
for size in $POST_SIZES; do
  (( size > prev )) || fail "POST_SIZES must grow (the largest is compared with the smallest), not \`$POST_SIZES\`"
  prev=$size
done
for part in $PARTS; do
  case "$part" in memory | sessions | sessions-cluster | user-sessions | posts) ;; *) fail "unknown part \`$part\`: memory, sessions, sessions-cluster, user-sessions, posts" ;; esac
done
for backend in $POST_BACKENDS; do
  case "$backend" in postgres | sqlite) ;; *) fail "POST_BACKENDS: postgres or sqlite, not \`$backend\`" ;; esac
done
[[ "$DURATION" =~ ^[1-9][0-9]*(ms|s|m)$ ]] || fail "DURATION must be e.g. 10s, not \`$DURATION\`"
[[ "$WARMUP" =~ ^[0-9]+(ms|s|m)$ ]] || fail "WARMUP must be e.g. 2s, not \`$WARMUP\`"
[[ "$POSTS_WARMUP" =~ ^[0-9]+(ms|s|m)$ ]] || fail "POSTS_WARMUP must be e.g. 10s, not \`$POSTS_WARMUP\`"
[[ "$POSTS_ROUNDS" =~ ^[1-9][0-9]*$ && "$POSTS_ROUNDS" -le 20 ]] || fail "POSTS_ROUNDS must be a whole number from 1 to 20, not \`$POSTS_ROUNDS\`"
[[ "$CONCURRENCY" =~ ^[1-9][0-9]*$ ]] || fail "CONCURRENCY must be a positive whole number"
[[ "$POST_CACHE_MB" =~ ^[1-9][0-9]*$ && "$POST_CACHE_MB" -le 65536 ]] || fail "POST_CACHE_MB must be a whole number from 1 to 65536, not \`$POST_CACHE_MB\`"
POSTS_SUFFIX=""
[[ "$POST_CACHE_MB" == 24 ]] || POSTS_SUFFIX="-cache${POST_CACHE_MB}mb"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p loadgen -p auth-service -p blog-service --manifest-path "$ROOT/Cargo.toml"
fi
mkdir -p "$RESULTS"
WORK="$(mktemp -d /tmp/bench-scale.XXXXXX)"
TAG="bench_scale_$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PIDS=() DBS=()
# The private Redis Cluster of sessions-cluster (started only by that part).
export REDIS_CLUSTER_DIR="$WORK/redis-cluster"
CLUSTER_SH="$ROOT/tests/cluster/redis-cluster.sh"
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -d "$REDIS_CLUSTER_DIR" ]]; then bash "$CLUSTER_SH" stop 2>/dev/null || true; fi
  for db in "${DBS[@]}"; do dropdb --if-exists "$db" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; fail "nothing listens on port $1"; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
newdb() { createdb "$1"; DBS+=("$1"); }
q() { psql -qAtX -v ON_ERROR_STOP=1 -d "$@"; }

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export AUTH_JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
printf 'private redis on %s, databases %s_*, results in %s\n' "$REDIS_PORT" "$TAG" "$RESULTS"

# start_auth NAME [VAR=VALUE…]: auth-service on the private Redis (the variables given
# replace AUTH_REDIS_URL, e.g. AUTH_REDIS_CLUSTER_URLS=… for the cluster).
start_auth() {
  AUTH_PORT="$(free_port)"
  newdb "${TAG}_auth$1"
  local redis=("${@:2}")
  [[ ${#redis[@]} -gt 0 ]] || redis=("AUTH_REDIS_URL=$REDIS_URL")
  env AUTH_LISTEN_ADDR="127.0.0.1:$AUTH_PORT" AUTH_DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${TAG}_auth$1" \
    "${redis[@]}" AUTH_ACCESS_TOKEN_TTL=2h AUTH_ADDRESS_HASH_LIMIT=1000000 \
    AUTH_ADDRESS_REGISTRATION_LIMIT=1000000 AUTH_LOGIN_THROTTLE=false TOKIO_WORKER_THREADS=1 \
    RUST_LOG=warn "$BIN/auth-service" >"$WORK/auth$1.log" 2>&1 &
  AUTH_PID=$!
  PIDS+=("$AUTH_PID")
  wait_port "$AUTH_PORT"
}
LOAD=(--duration "$DURATION" --warmup "$WARMUP" --concurrency "$CONCURRENCY")
STORE=(--redis-url "$REDIS_URL")

for part in $PARTS; do case "$part" in
memory)
  start_auth m
  for per_user in 1 10 500; do
    "$BIN/scale" sessions --auth-url "http://127.0.0.1:$AUTH_PORT" "${STORE[@]}" --memory-only \
      --sessions "$MEMORY_SESSIONS" --sessions-per-user "$per_user" --blocked $((MEMORY_SESSIONS / BLOCKED_SHARE)) \
      --backend redis --json "$RESULTS/scale-memory-per-user-$per_user.json"
  done
  # The issue's own measure: 500 logins of one user (scripts already loaded, so
  # used_memory counts the sessions only).
  "$BIN/scale" sessions --auth-url "http://127.0.0.1:$AUTH_PORT" "${STORE[@]}" --memory-only \
    --sessions 500 --sessions-per-user 500 --blocked 50 \
    --backend redis --json "$RESULTS/scale-memory-one-user-500.json"
  stop "$AUTH_PID"
  # Today's key layout next to proposed ones, written by Lua into database 9.
  bash "$ROOT/bench/redis_layout.sh" "$REDIS_PORT" "$MEMORY_SESSIONS" 9 | tee "$RESULTS/scale-redis-layouts.txt"
  # SQL bytes per user and per post: the services' own migrations, rows in bulk.
  N="$MEMORY_SESSIONS"
  newdb "${TAG}_rows"
  cat "$ROOT"/migrations/auth/postgres/*.sql "$ROOT"/migrations/blog/postgres/*.sql | q "${TAG}_rows" >/dev/null
  q "${TAG}_rows" <<SQL >/dev/null
INSERT INTO users SELECT gen_random_uuid(), 'user' || g, 'user' || g || '@example.com',
  '\$argon2id\$v=19\$m=19456,t=2,p=1\$' || repeat('s', 22) || '\$' || repeat('h', 43), now(), now()
  FROM generate_series(1, $N) g;
ALTER TABLE posts DISABLE TRIGGER posts_changed;
INSERT INTO posts SELECT gen_random_uuid(), gen_random_uuid(), 'author' || (g % 1000), 'Seeded post ' || g,
  repeat('The quick brown fox jumps over the lazy dog. ', 13), now() - make_interval(secs => g), now()
  FROM generate_series(1, $N) g;
VACUUM ANALYZE users; VACUUM ANALYZE posts;
SQL
  pg_user=$(q "${TAG}_rows" -c "SELECT pg_total_relation_size('users')")
  pg_post=$(q "${TAG}_rows" -c "SELECT pg_total_relation_size('posts')")
  SQLITE="$WORK/rows.db"
  cat "$ROOT"/migrations/auth/sqlite/*.sql "$ROOT"/migrations/blog/sqlite/*.sql | sqlite3 "$SQLITE"
  sqlite3 "$SQLITE" <<SQL
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $N)
INSERT INTO users SELECT randomblob(16), 'user' || n, 'user' || n || '@example.com',
  '\$argon2id\$v=19\$m=19456,t=2,p=1\$' || printf('%.22c', 's') || '\$' || printf('%.43c', 'h'),
  strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'), strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') FROM g;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $N)
INSERT INTO posts SELECT randomblob(16), randomblob(16), 'author' || (n % 1000), 'Seeded post ' || n,
  printf('%.585c', 'x'), strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || n || ' seconds'),
  strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now') FROM g;
VACUUM;
SQL
  sq() { sqlite3 "$SQLITE" "SELECT sum(pgsize) FROM dbstat WHERE name IN ($1)"; }
  sq_user=$(sq "'users','users_username_key','users_email_key','sqlite_autoindex_users_1'")
  sq_post=$(sq "'posts','posts_newest_first_idx','posts_author_newest_first_idx','sqlite_autoindex_posts_1'")
  cat >"$RESULTS/scale-sql-rows.json" <<JSON
{
  "kind": "sql-rows",
  "rows": $N,
  "post_content_chars": 585,
  "postgres": {"users_bytes": $pg_user, "posts_bytes": $pg_post, "bytes_per_user": $((pg_user / N)), "bytes_per_post": $((pg_post / N))},
  "sqlite": {"users_bytes": $sq_user, "posts_bytes": $sq_post, "bytes_per_user": $((sq_user / N)), "bytes_per_post": $((sq_post / N)), "file_bytes": $(stat -c %s "$SQLITE")}
}
JSON
  printf 'SQL bytes per row (%s rows, tables + indexes): postgres user %s post %s; sqlite user %s post %s\n' \
    "$N" $((pg_user / N)) $((pg_post / N)) $((sq_user / N)) $((sq_post / N))
  ;;
sessions)
  for size in $SESSION_SIZES; do
    start_auth "s$size"
    "$BIN/scale" sessions --auth-url "http://127.0.0.1:$AUTH_PORT" "${STORE[@]}" "${LOAD[@]}" \
      --sessions "$size" --blocked $((size / BLOCKED_SHARE)) --backend redis \
      --json "$RESULTS/scale-sessions-$size.json"
    stop "$AUTH_PID"
  done
  ;;
sessions-cluster)
  CLUSTER_URLS="$(bash "$CLUSTER_SH" start)"
  printf 'private Redis Cluster in %s: %s\n' "$REDIS_CLUSTER_DIR" "$CLUSTER_URLS"
  for size in $SESSION_SIZES; do
    start_auth "c$size" AUTH_REDIS_CLUSTER_URLS="$CLUSTER_URLS"
    "$BIN/scale" sessions --auth-url "http://127.0.0.1:$AUTH_PORT" --redis-cluster-urls "$CLUSTER_URLS" "${LOAD[@]}" \
      --sessions "$size" --blocked $((size / BLOCKED_SHARE)) --backend redis-cluster \
      --json "$RESULTS/scale-sessions-cluster-$size.json"
    stop "$AUTH_PID"
  done
  bash "$CLUSTER_SH" stop
  ;;
user-sessions)
  start_auth u
  # Each call of one user is timed one at a time, for this long per operation and level.
  "$BIN/scale" user-sessions --auth-url "http://127.0.0.1:$AUTH_PORT" "${STORE[@]}" \
    --duration "$( [[ "${QUICK:-0}" == 1 ]] && echo 1s || echo 3s )" --warmup "$WARMUP" --concurrency 16 \
    --levels "$LEVELS" --backend redis --json "$RESULTS/scale-user-sessions.json"
  stop "$AUTH_PID"
  ;;
posts)
  # One database (or file) and one blog-service per size, each seeded from empty, then
  # POSTS_ROUNDS rounds that each measure every size in turn: a noisy spell of the shared
  # machine falls on all sizes alike instead of on whichever came last, and no size is
  # measured right after its own seeding. Each figure reported is the median of the
  # rounds; every round is kept in the report ("rounds").
  for backend in $POST_BACKENDS; do
    declare -A BLOG_PORTS=() BLOG_PIDS=() SEED_S=()
    for size in $POST_SIZES; do
      port="$(free_port)"
      if [[ "$backend" == postgres ]]; then
        newdb "${TAG}_blog$size"
        url="postgres://$PGUSER@$PGHOST:$PGPORT/${TAG}_blog$size"
      else
        url="sqlite://$WORK/blog$size.db"
      fi
      BLOG_LISTEN_ADDR="127.0.0.1:$port" BLOG_DATABASE_URL="$url" BLOG_POST_CACHE_MB="$POST_CACHE_MB" \
        BLOG_AUTH_URL="http://127.0.0.1:1" TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
        "$BIN/blog-service" >"$WORK/blog-$backend-$size.log" 2>&1 &
      PIDS+=($!)
      BLOG_PIDS[$size]=$!
      BLOG_PORTS[$size]="$port"
      wait_port "$port"
      started=$(date +%s.%N)
      if [[ "$backend" == postgres ]]; then
        # One '*' notification instead of one per row: blog-service drops its cache once.
        q "${TAG}_blog$size" <<SQL >/dev/null
ALTER TABLE posts DISABLE TRIGGER posts_changed;
INSERT INTO posts SELECT gen_random_uuid(), gen_random_uuid(), 'author' || (g % 1000), 'Seeded post ' || g,
  repeat('The quick brown fox jumps over the lazy dog. ', 13),
  timestamptz '2026-11-01' - make_interval(secs => g), timestamptz '2026-11-01'
  FROM generate_series(1, $size) g;
ALTER TABLE posts ENABLE TRIGGER posts_changed;
NOTIFY blog_posts, '*';
VACUUM ANALYZE posts;
CHECKPOINT;
SQL
      else
        sqlite3 "$WORK/blog$size.db" <<SQL
.timeout 10000
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $size)
INSERT INTO posts SELECT randomblob(16), randomblob(16), 'author' || (n % 1000), 'Seeded post ' || n,
  printf('%.585c', 'x'), strftime('%Y-%m-%dT%H:%M:%f+00:00', '2026-11-01', '-' || n || ' seconds'),
  '2026-11-01T00:00:00.000+00:00' FROM g;
ANALYZE;
SQL
      fi
      SEED_S[$size]=$(echo "$(date +%s.%N) - $started" | bc)
      printf '%s: %s posts (bulk SQL in %.1fs)\n' "$backend" "$size" "${SEED_S[$size]}"
    done
    for round in $(seq 1 "$POSTS_ROUNDS"); do
      for size in $POST_SIZES; do
        printf '%s, round %s of %s: %s posts\n' "$backend" "$round" "$POSTS_ROUNDS" "$size"
        "$BIN/scale" posts --blog-url "http://127.0.0.1:${BLOG_PORTS[$size]}" --duration "$DURATION" \
          --warmup "$POSTS_WARMUP" --concurrency "$CONCURRENCY" --posts "$size" \
          --backend "$backend" --json "$WORK/posts-$backend-$size-round$round.json"
      done
    done
    for size in $POST_SIZES; do stop "${BLOG_PIDS[$size]}"; done
    for size in $POST_SIZES; do
      python3 "$ROOT/bench/median_rounds.py" "$RESULTS/scale-posts-$backend-$size$POSTS_SUFFIX.json" \
        "seed_s=${SEED_S[$size]}" "post_cache_mb=$POST_CACHE_MB" "$WORK/posts-$backend-$size-round"*.json
    done
    python3 "$ROOT/bench/median_rounds.py" --ratios "$RESULTS/scale-posts-$backend"-*"$POSTS_SUFFIX.json" \
      --sizes $POST_SIZES --suffix "$POSTS_SUFFIX"
  done
  ;;
esac; done

if [[ "${PLOT:-1}" != 0 ]]; then
  VENV="$ROOT/bench/.venv"
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib
  fi
  "$VENV/bin/python" "$ROOT/bench/plot_scale.py" "$RESULTS"
fi
