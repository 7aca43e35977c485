//! The Lua scripts of the Redis token store, and how one is called. A user's sessions
//! are one hash (`auth:sessions:{<user id>}`, see `record`), so every script changes
//! one key of one user, plus (a rotation) that user's retry key: both declared, both
//! under the user's hash tag (one Redis Cluster slot).

use redis::{Cmd, Script};

/// A script call: its keys (all of one user: one slot) and arguments.
pub(super) struct ScriptCall<'a> {
    pub(super) script: &'a Script,
    pub(super) keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl<'a> ScriptCall<'a> {
    pub(super) fn new(script: &'a Script) -> Self {
        Self {
            script,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(super) fn key(mut self, key: String) -> Self {
        self.keys.push(key);
        self
    }

    pub(super) fn arg(self, arg: impl ToString) -> Self {
        self.bytes(arg.to_string().into_bytes())
    }

    pub(super) fn bytes(mut self, arg: impl Into<Vec<u8>>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The call, with `deadline` (Unix milliseconds) as its last argument: `GUARD`.
    pub(super) fn evalsha(&self, deadline: u128) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args)
            .arg(deadline.to_string());
        cmd
    }
}

/// What every script runs first: nothing, answering {'late'}, once Redis's clock is past
/// the caller's deadline (the last argument, Unix milliseconds: when the caller stops
/// waiting). A write whose bytes were held up (a silent or slow link that then heals,
/// as TCP delivers them) would otherwise be applied after its caller was answered
/// UNAVAILABLE: a refused logout done anyway, or a refused rotation that spends the
/// refresh token the client still holds. Exact to the clocks' difference: a Redis
/// clock behind ours by d lets a write land up to d late.
pub(super) const GUARD: &str = r"
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > tonumber(ARGV[#ARGV]) then
  return {'late'}
end
";

/// What every script below starts with: how it reads a session's packed value (`record`:
/// ids at bytes 1–16 and 17–32, access exp at 33, refresh exp at 37, creation time at
/// 41, big-endian u32), and how it removes one. A field of 16 bytes is a session (its
/// id); the others (`name`, `sweep`) are the user's. `now` is the caller's Unix second.
pub(super) const COMMON: &str = r"
local function live(v, now)
  return v ~= false and v ~= nil and #v >= 44 and struct.unpack('>I4', v, 37) > now
end
local function hex(s)
  return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))
end
local function access_of(v)
  return hex(string.sub(v, 17, 32)), tostring(struct.unpack('>I4', v, 33))
end
local function drop_if_empty(key)
  if redis.call('HLEN', key) > 2 then return end
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if #field == 16 then return end
  end
  redis.call('DEL', key)
end
local function drop(key, sid)
  redis.call('HDEL', key, sid)
  drop_if_empty(key)
end
local function extend(key, ttl)
  if redis.call('PTTL', key) < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
end
";

/// KEYS: the user's sessions, the retry key of the presented refresh token. ARGV: sid,
/// presented refresh jti, the new pair (`record::pair`), ttl ms, reuse-is-theft flag,
/// retry window ms, new access token, new refresh token, now. Returns {outcome, old
/// access jti, old access exp} or {'replayed', access, refresh}.
pub(super) const ROTATE: &str = r"
local now = tonumber(ARGV[9])
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not live(v, now) then
  if v then drop(KEYS[1], ARGV[1]) end
  return {'gone'}
end
local current = string.sub(v, 1, 16)
if current ~= ARGV[2] then
  if ARGV[5] ~= '1' then return {'gone'} end
  local kept = redis.call('HMGET', KEYS[2], 'sid', 'next', 'access', 'refresh')
  if kept[1] == ARGV[1] and kept[2] == current then
    return {'replayed', kept[3], kept[4]}
  end
  redis.call('DEL', KEYS[2])
  drop(KEYS[1], ARGV[1])
  local jti, exp = access_of(v)
  return {'reused', jti, exp}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. string.sub(v, 41))
extend(KEYS[1], ARGV[4])
if ARGV[6] ~= '0' then
  redis.call('HSET', KEYS[2], 'sid', ARGV[1], 'next', string.sub(ARGV[3], 1, 16),
    'access', ARGV[7], 'refresh', ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
local jti, exp = access_of(v)
return {'rotated', jti, exp}
";

/// KEYS: the user's sessions. ARGV: sid, the packed session (`record`), username, ttl
/// ms, now. Adds the session and keeps the key alive as long as its newest session.
/// Returns {'opened'}.
///
/// This is the only script that adds a session, so it is the one that drops the user's
/// expired sessions, and it does so only once the hash has grown to `sweep` fields (8
/// when absent): a sweep reads every field, so sweeping at every login would cost a
/// user with n sessions O(n) per login; doubling the threshold after each sweep makes it
/// O(1) a login on average, and the hash never holds more than twice the fields it had
/// live at its last sweep (or 8).
pub(super) const OPEN: &str = r"
local now = tonumber(ARGV[5])
if redis.call('HLEN', KEYS[1]) >= tonumber(redis.call('HGET', KEYS[1], 'sweep') or '8') then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if #all[i] == 16 and not live(all[i + 1], now) then
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
  local left = redis.call('HLEN', KEYS[1])
  if 2 * left > 8 then
    redis.call('HSET', KEYS[1], 'sweep', 2 * left)
  else
    redis.call('HDEL', KEYS[1], 'sweep')
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'name', ARGV[3])
extend(KEYS[1], ARGV[4])
return {'opened'}
";

/// KEYS: the user's sessions. ARGV: new name. Writes the name the user's live sessions
/// answer Introspect with, never creating a key that has expired. Returns {'done'}.
pub(super) const RENAME: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'name', ARGV[1])
end
return {'done'}
";

/// KEYS: the user's sessions. ARGV: sid, now. Returns {'revoked', access jti, access
/// exp}, or {'gone'} if the session was not live.
pub(super) const REVOKE: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'gone'} end
drop(KEYS[1], ARGV[1])
if not live(v, tonumber(ARGV[2])) then return {'gone'} end
local jti, exp = access_of(v)
return {'revoked', jti, exp}
";

/// KEYS: the user's sessions. ARGV: sid to keep (or ''), now. Returns {'done', then
/// sid, access jti, access exp of every live session it revoked}.
pub(super) const REVOKE_ALL: &str = r"
local now = tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local out = {'done'}
for i = 1, #all, 2 do
  local sid, v = all[i], all[i + 1]
  if #sid == 16 and sid ~= ARGV[1] then
    redis.call('HDEL', KEYS[1], sid)
    if live(v, now) then
      local jti, exp = access_of(v)
      table.insert(out, hex(sid))
      table.insert(out, jti)
      table.insert(out, exp)
    end
  end
end
drop_if_empty(KEYS[1])
return out
";

/// Whether a script's reply acknowledges a change that must not be lost: not a session
/// that was already gone, a pair answered again, or a revocation of nothing.
pub(super) fn changed(reply: &[String]) -> bool {
    match reply.first().map(String::as_str) {
        Some("gone" | "replayed" | "late") => false,
        Some("done") => reply.len() > 1,
        _ => true,
    }
}
