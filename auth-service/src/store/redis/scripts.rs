//! The Lua scripts of the Redis token store, and how one is called. Each declares every
//! key it touches, all under one user's hash tag (one Redis Cluster slot).

use redis::{Cmd, Script};

/// A script call: its keys (all of one user: one slot) and arguments.
pub(super) struct ScriptCall<'a> {
    pub(super) script: &'a Script,
    pub(super) keys: Vec<String>,
    args: Vec<String>,
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

    pub(super) fn arg(mut self, arg: impl ToString) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub(super) fn evalsha(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

/// How often a rotation re-reads the session's current refresh token when it changed
/// between the read and the script (each time, another rotation of the session won).
pub(super) const ROTATE_ATTEMPTS: usize = 5;

/// Every key it touches is in KEYS (one user's hash tag, so one Redis Cluster slot):
/// index, presented refresh, new refresh, retry pair of the presented refresh, and the
/// refresh key of the session's current token as the caller last read it (ARGV[8], ''
/// for none); if that is no longer current the script changes nothing and answers
/// {'retry'}. ARGV: sid, presented refresh jti, new refresh jti, new access jti, new
/// access exp, new refresh exp, ttl ms, current refresh jti as read, reuse-is-theft
/// flag, retry window ms, new access token, new refresh token.
/// Returns {outcome, old access jti, old access exp} or {'replayed', access, refresh}.
pub(super) const ROTATE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if (current or '') ~= ARGV[8] then return {'retry'} end
if not current then return {'gone'} end
if current ~= ARGV[2] then
  if ARGV[9] ~= '1' then return {'gone'} end
  local kept = redis.call('HMGET', KEYS[4], 'sid', 'next', 'access', 'refresh')
  if kept[1] == ARGV[1] and kept[2] == current and redis.call('EXISTS', KEYS[5]) == 1 then
    return {'replayed', kept[3], kept[4]}
  end
  local old = redis.call('HMGET', KEYS[5], 'ajti', 'aexp')
  redis.call('DEL', KEYS[5], KEYS[4])
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'reused', old[1] or '', old[2] or ''}
end
local old = redis.call('HMGET', KEYS[2], 'ajti', 'aexp', 'ctime', 'ua', 'name')
if not old[1] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'gone'}
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], 'sid', ARGV[1], 'ajti', ARGV[4], 'aexp', ARGV[5],
  'ctime', old[3], 'rexp', ARGV[6], 'ua', old[4], 'name', old[5])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if ARGV[10] ~= '0' then
  redis.call('HSET', KEYS[4], 'sid', ARGV[1], 'next', ARGV[3], 'access', ARGV[11],
    'refresh', ARGV[12])
  redis.call('PEXPIRE', KEYS[4], ARGV[10])
end
return {'rotated', old[1], old[2]}
";

/// KEYS: the new refresh key, the index. ARGV: sid, access jti, access exp, creation
/// time, refresh exp, user agent, username, refresh jti, ttl ms. The first pair of a new
/// session. Returns {'opened'}.
pub(super) const OPEN: &str = r"
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'ajti', ARGV[2], 'aexp', ARGV[3],
  'ctime', ARGV[4], 'rexp', ARGV[5], 'ua', ARGV[6], 'name', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[9])
return {'opened'}
";

/// The user's index as the caller read it, checked by REVOKE_ALL and RENAME before they
/// change anything: ARGV[2..] are `sid, refresh jti` pairs, KEYS[2..] the refresh keys
/// of those jtis, in the same order. Answers true if the index still holds exactly
/// those pairs.
pub(super) const INDEX_UNCHANGED: &str = r"
local function index_unchanged()
  local n = (#ARGV - 1) / 2
  if redis.call('HLEN', KEYS[1]) ~= n then return false end
  for i = 1, n do
    if redis.call('HGET', KEYS[1], ARGV[2 * i]) ~= ARGV[2 * i + 1] then return false end
  end
  return true
end
";

/// KEYS: index, then the refresh key of each session of the index as read. ARGV: new
/// name, then `sid, refresh jti` pairs as read. Writes the name into every live refresh
/// token of the user (never creating a key that has expired). Returns {'done'}, or
/// {'retry'} if the index changed since it was read.
pub(super) const RENAME: &str = r"
if not index_unchanged() then return {'retry'} end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 'name', ARGV[1])
  end
end
return {'done'}
";

/// KEYS: index, the refresh key of the session's current token as read. ARGV: sid, that
/// refresh jti. Returns {'revoked', access jti, access exp}, {'gone'} if the session was
/// not live, or {'retry'} if its current token changed since it was read.
pub(super) const REVOKE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return {'gone'} end
if current ~= ARGV[2] then return {'retry'} end
local old = redis.call('HMGET', KEYS[2], 'ajti', 'aexp')
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], ARGV[1])
if not old[1] then return {'gone'} end
return {'revoked', old[1], old[2]}
";

/// KEYS: index, then the refresh key of each session of the index as read. ARGV: sid
/// to keep (or ''), then `sid, refresh jti` pairs as read. Returns {'done', then sid,
/// access jti, access exp of every session it revoked}, or {'retry'} if the index
/// changed since it was read.
pub(super) const REVOKE_ALL: &str = r"
if not index_unchanged() then return {'retry'} end
local out = {'done'}
for i = 2, #KEYS do
  local sid = ARGV[2 * (i - 1)]
  if sid ~= ARGV[1] then
    local old = redis.call('HMGET', KEYS[i], 'ajti', 'aexp')
    redis.call('DEL', KEYS[i])
    redis.call('HDEL', KEYS[1], sid)
    if old[1] then
      table.insert(out, sid)
      table.insert(out, old[1])
      table.insert(out, old[2])
    end
  end
end
return out
";

/// Whether a script's reply acknowledges a change that must not be lost: not a session
/// that was already gone, a pair answered again, a refusal to act on a stale read, or a
/// revocation of nothing.
pub(super) fn changed(reply: &[String]) -> bool {
    match reply.first().map(String::as_str) {
        Some("gone" | "replayed" | "retry") => false,
        Some("done") => reply.len() > 1,
        _ => true,
    }
}
