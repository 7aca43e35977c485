//! What the seeded state costs in Redis, read independently of the token store's code:
//! `INFO memory`, `DBSIZE`, and `MEMORY USAGE` of sampled keys grouped by prefix; and
//! the cleanup of what was seeded (every key whose hash tag is a seeded user, and
//! seeded members of keys without one).

use std::collections::{BTreeMap, HashSet};

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use uuid::Uuid;

/// One raw connection per logical database.
pub struct Raw {
    pub refresh: MultiplexedConnection,
    pub blocklist: MultiplexedConnection,
}

impl Raw {
    pub async fn connect(url: &str, refresh_db: u8, blocklist_db: u8) -> anyhow::Result<Self> {
        let open = |db: u8| async move {
            redis::Client::open(format!("{url}/{db}"))?
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("cannot connect to {url} (database {db})"))
        };
        Ok(Self {
            refresh: open(refresh_db).await?,
            blocklist: open(blocklist_db).await?,
        })
    }

    pub fn both(&self) -> [(&'static str, MultiplexedConnection); 2] {
        [
            ("refresh", self.refresh.clone()),
            ("blocklist", self.blocklist.clone()),
        ]
    }
}

pub async fn dbsize(conn: &mut MultiplexedConnection) -> anyhow::Result<u64> {
    Ok(redis::cmd("DBSIZE").query_async(conn).await?)
}

/// `used_memory` of `INFO memory`, in bytes.
pub async fn used_memory(conn: &mut MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info_field(&info, "used_memory")
        .and_then(|v| v.parse().ok())
        .context("INFO memory has no used_memory")
}

pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Calls of `command` since the last `CONFIG RESETSTAT` (`INFO commandstats`).
pub async fn command_calls(conn: &mut MultiplexedConnection, command: &str) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(info_field(&info, &format!("cmdstat_{command}"))
        .and_then(|v| v.split(',').next()?.strip_prefix("calls=")?.parse().ok())
        .unwrap_or(0))
}

pub async fn reset_stats(conn: &mut MultiplexedConnection) -> anyhow::Result<()> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// The keys of one prefix (the text before the first `{`, or the whole name) in one
/// database: how many (exact when every key was scanned, else estimated from samples)
/// and their `MEMORY USAGE` (SAMPLES 0: exact).
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub database: &'static str,
    pub prefix: String,
    pub key_type: String,
    pub keys: f64,
    pub sampled: usize,
    pub mean_bytes: f64,
    /// keys × mean_bytes.
    pub total_bytes: f64,
}

/// Accounts every key of each database: scanned in full below `scan_limit` keys,
/// else `samples` keys drawn with RANDOMKEY (and any key holding more than 1,000
/// elements measured on its own, as the single metrics keys are).
pub async fn account(raw: &Raw, scan_limit: u64, samples: usize) -> anyhow::Result<Vec<Group>> {
    let mut groups = Vec::new();
    for (database, mut conn) in raw.both() {
        let size = dbsize(&mut conn).await?;
        if size == 0 {
            continue;
        }
        let (names, exact): (Vec<String>, bool) = if size <= scan_limit {
            (scan_all(&mut conn).await?, true)
        } else {
            let mut names = Vec::with_capacity(samples);
            for _ in 0..samples {
                let name: Option<String> = redis::cmd("RANDOMKEY").query_async(&mut conn).await?;
                names.extend(name);
            }
            (names, false)
        };
        // Sampled: untagged keys are few and some are huge (see `big_untagged`).
        let names: Vec<String> = names
            .into_iter()
            .filter(|name| exact || name.contains('{'))
            .collect();
        let mut by_prefix: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        for name in &names {
            let (key_type, bytes) = usage(&mut conn, name).await?;
            let prefix = name.split('{').next().unwrap_or(name).to_owned();
            by_prefix.entry((prefix, key_type)).or_default().push(bytes);
        }
        let sampled_total = names.len().max(1) as f64;
        for ((prefix, key_type), sizes) in by_prefix {
            let keys = if exact {
                sizes.len() as f64
            } else {
                size as f64 * sizes.len() as f64 / sampled_total
            };
            let mean = sizes.iter().sum::<u64>() as f64 / sizes.len() as f64;
            groups.push(Group {
                database,
                prefix,
                key_type,
                keys,
                sampled: sizes.len(),
                mean_bytes: mean,
                total_bytes: keys * mean,
            });
        }
    }
    Ok(groups)
}

/// The type of `name` and its exact `MEMORY USAGE`.
async fn usage(conn: &mut MultiplexedConnection, name: &str) -> anyhow::Result<(String, u64)> {
    let key_type: String = redis::cmd("TYPE").arg(name).query_async(conn).await?;
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(name)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await?;
    Ok((key_type, bytes.unwrap_or(0)))
}

/// The metrics keys (untagged, one for all users) of each database that `account`
/// sampled (more than `scan_limit` keys): RANDOMKEY almost never draws them, so they are
/// found by name.
pub async fn big_untagged(raw: &Raw, scan_limit: u64) -> anyhow::Result<Vec<Group>> {
    let mut groups = Vec::new();
    for (database, mut conn) in raw.both() {
        if dbsize(&mut conn).await? <= scan_limit {
            continue;
        }
        for name in scan_matching(&mut conn, "auth:metrics:*").await? {
            let (key_type, bytes) = usage(&mut conn, &name).await?;
            groups.push(Group {
                database,
                prefix: name,
                key_type,
                keys: 1.0,
                sampled: 1,
                mean_bytes: bytes as f64,
                total_bytes: bytes as f64,
            });
        }
    }
    Ok(groups)
}

async fn scan_all(conn: &mut MultiplexedConnection) -> anyhow::Result<Vec<String>> {
    scan_matching(conn, "*").await
}

async fn scan_matching(
    conn: &mut MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut names = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(5000)
            .query_async(conn)
            .await?;
        names.extend(batch);
        if next == 0 {
            return Ok(names);
        }
        cursor = next;
    }
}

/// The user id in a key's hash tag `{<uuid>}`, if any.
fn tagged_user(name: &str) -> Option<Uuid> {
    let start = name.find('{')?;
    let end = start + name[start..].find('}')?;
    name[start + 1..end].parse().ok()
}

/// Removes what was seeded for `users`: every key tagged with one of them, and every
/// member of an untagged sorted set or hash that starts with one of their ids. Returns
/// (keys unlinked, members removed).
pub async fn clean_up(raw: &Raw, users: &HashSet<Uuid>) -> anyhow::Result<(u64, u64)> {
    let (mut keys, mut members) = (0u64, 0u64);
    for (_, mut conn) in raw.both() {
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(5000)
                .query_async(&mut conn)
                .await?;
            let mut pipe = redis::pipe();
            for name in &batch {
                match tagged_user(name) {
                    Some(user) if users.contains(&user) => {
                        pipe.cmd("UNLINK").arg(name).ignore();
                        keys += 1;
                    }
                    Some(_) => {}
                    None => members += remove_members(&mut conn, name, users).await?,
                }
            }
            if !pipe.is_empty() {
                pipe.query_async::<()>(&mut conn).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok((keys, members))
}

async fn remove_members(
    conn: &mut MultiplexedConnection,
    name: &str,
    users: &HashSet<Uuid>,
) -> anyhow::Result<u64> {
    let key_type: String = redis::cmd("TYPE").arg(name).query_async(conn).await?;
    let (scan, remove) = match key_type.as_str() {
        "zset" => ("ZSCAN", "ZREM"),
        "hash" => ("HSCAN", "HDEL"),
        _ => return Ok(0),
    };
    let seeded = |member: &str| {
        member
            .get(..36)
            .and_then(|id| id.parse::<Uuid>().ok())
            .is_some_and(|id| users.contains(&id))
    };
    let mut removed = 0;
    let mut cursor: u64 = 0;
    loop {
        let (next, flat): (u64, Vec<String>) = redis::cmd(scan)
            .arg(name)
            .arg(cursor)
            .arg("COUNT")
            .arg(5000)
            .query_async(conn)
            .await?;
        let doomed: Vec<&String> = flat.iter().step_by(2).filter(|m| seeded(m)).collect();
        if !doomed.is_empty() {
            removed += doomed.len() as u64;
            redis::cmd(remove)
                .arg(name)
                .arg(&doomed)
                .query_async::<()>(conn)
                .await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_and_info_fields_are_read() {
        let user = Uuid::now_v7();
        assert_eq!(
            tagged_user(&format!("auth:refresh:{{{user}}}:x")),
            Some(user)
        );
        assert_eq!(tagged_user("auth:metrics:sessions"), None);
        assert_eq!(tagged_user("auth:limit:{a:127.0.0.1}:hashes"), None);
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1024"));
        let stats = "cmdstat_hmget:calls=42,usec=1,usec_per_call=0.1\r\n";
        assert_eq!(
            info_field(stats, "cmdstat_hmget"),
            Some("calls=42,usec=1,usec_per_call=0.1")
        );
    }
}
