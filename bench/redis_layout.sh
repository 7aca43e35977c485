#!/usr/bin/env bash
# Redis memory per live session of today's key layout and of proposed ones, written
# server-side by one Lua script per layout into an empty logical database of a PRIVATE
# redis-server (bench/scale.sh passes its own), measured with INFO used_memory and
# MEMORY USAGE, then deleted (FLUSHDB of that database only, which must start empty).
#
#   bash bench/redis_layout.sh PORT [SESSIONS (100000)] [DB (9)]
#
# Layouts (docs: BENCHMARKS.md, "How cost grows with state"):
#   today     the first layout: auth:refresh:{uid}:<rjti> hash sid ajti aexp ctime rexp
#             ua name (UUIDs as 36-char text) + auth:sessions:{uid} hash sid -> rjti + a
#             member `uid:sid` of the sorted set auth:metrics:sessions; TTL on the keys
#   no-zset   today without the sorted set (the store's layout until issue 20)
#   compact   no-zset, and the UUIDs inside values and index fields as 16 raw bytes, the
#             refresh key named by a 22-char base64url id, no `rexp` (it is the key's TTL)
#   per-user  one hash per user, the store's layout since issue 20 (its exact bytes:
#             auth-service/src/store/redis/record.rs): field = session id (16 bytes),
#             value = refresh id, access id (16 bytes each), access expiry, refresh
#             expiry, creation (4 bytes each) and the user agent; the name once per user;
#             the key's TTL is the longest session's, and an expired session is dropped
#             by the user's later logins (Redis 7.4's HEXPIRE would give each field its
#             TTL). bench/scale.sh's `memory` part measures the store itself.
set -euo pipefail
PORT="${1:?usage: bench/redis_layout.sh PORT [SESSIONS] [DB]}"
N="${2:-100000}"
DB="${3:-9}"
[[ "$N" =~ ^[1-9][0-9]*$ && "$N" -le 2000000 ]] || { echo "SESSIONS must be 1..2000000" >&2; exit 2; }
[[ "$DB" =~ ^[0-9]+$ ]] || { echo "DB must be a number" >&2; exit 2; }
r() { redis-cli -p "$PORT" -n "$DB" "$@"; }
[[ "$(r DBSIZE)" == 0 ]] || { echo "database $DB of port $PORT is not empty: refusing" >&2; exit 2; }
used() { r INFO memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

LUA='
local n, per, layout = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local function uuid(i, salt) return string.format("%08x-%04x-7%03x-8%03x-%012x", i, salt, i % 4096, salt, i) end
local function raw(i, salt) return struct.pack(">I4I4I4I4", i, salt, i, salt) end
local function b64(i, salt) return string.format("%011x%011x", i, salt) end
local ttl = 30 * 86400 * 1000
for i = 0, n - 1 do
  local u = math.floor(i / per)
  local uid = uuid(u, 1)
  local name = "user" .. u
  if layout == "per-user" then
    local key = "auth:sessions:{" .. uid .. "}"
    redis.call("HSET", key, raw(i, 2), raw(i, 3) .. raw(i, 4) ..
      struct.pack(">I4I4I4", 1764460800 + i % 900, 1764460000 + i, 1767052000 + i) .. "tonic/0.14.2",
      "name", name)
  elseif layout == "compact" then
    local key = "auth:refresh:{" .. uid .. "}:" .. b64(i, 3)
    redis.call("HSET", key, "sid", raw(i, 2), "ajti", raw(i, 4), "aexp", 1764460800 + i % 900,
      "ctime", 1764460000 + i, "ua", "tonic/0.14.2", "name", name)
    redis.call("PEXPIRE", key, ttl)
    redis.call("HSET", "auth:sessions:{" .. uid .. "}", raw(i, 2), b64(i, 3))
  else
    local rjti = uuid(i, 3)
    local key = "auth:refresh:{" .. uid .. "}:" .. rjti
    redis.call("HSET", key, "sid", uuid(i, 2), "ajti", uuid(i, 4), "aexp", 1764460800 + i % 900,
      "ctime", 1764460000 + i, "rexp", 1767052000 + i, "ua", "tonic/0.14.2", "name", name)
    redis.call("PEXPIRE", key, ttl)
    redis.call("HSET", "auth:sessions:{" .. uid .. "}", uuid(i, 2), rjti)
    if layout == "today" then
      redis.call("ZADD", "auth:metrics:sessions", 1767052000 + i, uid .. ":" .. uuid(i, 2))
    end
  end
  redis.call("PEXPIRE", "auth:sessions:{" .. uid .. "}", ttl)
end
return n'

printf '%-8s %9s %6s %12s %14s %14s\n' layout sessions per_user bytes/session refresh_key_B index_key_B
for per_user in ${PER_USER:-1 10 500}; do
  for layout in ${LAYOUTS:-today no-zset compact per-user}; do
    before=$(used)
    r EVAL "$LUA" 0 "$N" "$per_user" "$layout" >/dev/null
    after=$(used)
    refresh=$(r --scan --pattern 'auth:refresh:*' | head -1 || true)
    index=$(r --scan --pattern 'auth:sessions:*' | head -1 || true)
    [[ -n "$refresh" ]] || refresh=none
    printf '%-8s %9s %6s %12s %14s %14s\n' "$layout" "$N" "$per_user" $(((after - before) / N)) \
      "$(r MEMORY USAGE "$refresh" SAMPLES 0)" "$(r MEMORY USAGE "$index" SAMPLES 0)"
    r FLUSHDB >/dev/null
  done
done
