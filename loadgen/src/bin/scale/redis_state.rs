//! What the seeded state costs in Redis, read independently of the token store's code:
//! `INFO memory`, `DBSIZE`, and `MEMORY USAGE` of sampled keys grouped by prefix; and
//! the cleanup of what was seeded (every key whose hash tag is a seeded user, and
//! seeded members of keys without one).

use std::collections::{BTreeMap, HashSet};

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use uuid::Uuid;

use crate::cli::Redis;

/// The keys of one logical database of a node, or the one keyspace of a Redis Cluster
/// (then one connection per master, each holding its own slots' keys).
pub struct Keyspace {
    /// `refresh` or `blocklist` on one node; `cluster` on a Redis Cluster.
    pub name: &'static str,
    pub conns: Vec<MultiplexedConnection>,
}

/// Raw connections to where the seeded state lives: its keyspaces, and one connection
/// per server whose memory and command counts are summed (the node; every master).
pub struct Raw {
    pub keyspaces: Vec<Keyspace>,
    pub servers: Vec<MultiplexedConnection>,
    /// `host:port` of every master (a cluster), for the report.
    pub masters: Vec<String>,
}

async fn open(url: &str) -> anyhow::Result<MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

impl Raw {
    pub async fn connect(redis: &Redis<'_>) -> anyhow::Result<Self> {
        match *redis {
            Redis::Node {
                url,
                refresh_db,
                blocklist_db,
            } => {
                let refresh = open(&format!("{url}/{refresh_db}")).await?;
                let blocklist = open(&format!("{url}/{blocklist_db}")).await?;
                Ok(Self {
                    servers: vec![refresh.clone()],
                    keyspaces: vec![
                        Keyspace {
                            name: "refresh",
                            conns: vec![refresh],
                        },
                        Keyspace {
                            name: "blocklist",
                            conns: vec![blocklist],
                        },
                    ],
                    masters: Vec::new(),
                })
            }
            Redis::Cluster(urls) => {
                let masters = cluster_masters(urls).await?;
                let mut conns = Vec::with_capacity(masters.len());
                for address in &masters {
                    conns.push(open(&format!("redis://{address}")).await?);
                }
                Ok(Self {
                    servers: conns.clone(),
                    keyspaces: vec![Keyspace {
                        name: "cluster",
                        conns,
                    }],
                    masters,
                })
            }
        }
    }

    /// Keys of the keyspace `name` (summed over its masters); `None` if there is none.
    pub async fn dbsize(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let Some(keyspace) = self.keyspaces.iter().find(|k| k.name == name) else {
            return Ok(None);
        };
        let mut keys = 0;
        for conn in &keyspace.conns {
            keys += dbsize(&mut conn.clone()).await?;
        }
        Ok(Some(keys))
    }

    /// `used_memory`, summed over the servers.
    pub async fn used_memory(&self) -> anyhow::Result<u64> {
        let mut bytes = 0;
        for conn in &self.servers {
            bytes += used_memory(&mut conn.clone()).await?;
        }
        Ok(bytes)
    }

    /// Calls of `command` since the last `reset_stats`, summed over the servers.
    pub async fn command_calls(&self, command: &str) -> anyhow::Result<u64> {
        let mut calls = 0;
        for conn in &self.servers {
            calls += command_calls(&mut conn.clone(), command).await?;
        }
        Ok(calls)
    }

    /// `CONFIG RESETSTAT` on every server.
    pub async fn reset_stats(&self) -> anyhow::Result<()> {
        for conn in &self.servers {
            reset_stats(&mut conn.clone()).await?;
        }
        Ok(())
    }
}

/// The masters that serve slots (`host:port`), from the first of `urls` that answers
/// `CLUSTER NODES`: every one must be loopback, as the seeds are.
async fn cluster_masters(urls: &[String]) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    for url in urls {
        let asked = async {
            let mut conn = open(url).await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut conn)
                .await
                .with_context(|| {
                    format!("{url} does not answer CLUSTER NODES (is it a Redis Cluster node?)")
                })
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), asked).await {
            Ok(Ok(nodes)) => {
                let masters = masters_of(&nodes);
                anyhow::ensure!(
                    !masters.is_empty(),
                    "{url}: CLUSTER NODES lists no master serving slots"
                );
                if let Some(far) = masters
                    .iter()
                    .find(|m| crate::cli::parse_redis_url(&format!("redis://{m}")).is_err())
                {
                    anyhow::bail!(
                        "the cluster of {url} has a master at {far}: only a loopback Redis may be seeded"
                    );
                }
                return Ok(masters);
            }
            Ok(Err(error)) => failures.push(format!("{error:#}")),
            Err(_) => failures.push(format!("{url}: no answer within 5 s")),
        }
    }
    anyhow::bail!(
        "no seed of --redis-cluster-urls answered: {}",
        failures.join("; ")
    )
}

/// `CLUSTER NODES` lines (`<id> <ip:port@bus[,hostname]> <flags> <master> … [slots…]`):
/// the address of every master that is not failed and serves slots, sorted.
fn masters_of(nodes: &str) -> Vec<String> {
    let mut masters: Vec<String> = nodes
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 8)
        .filter(|f| {
            let flags: Vec<&str> = f[2].split(',').collect();
            flags.contains(&"master") && !flags.iter().any(|x| x.starts_with("fail"))
        })
        .filter_map(|f| f[1].split(['@', ',']).next().map(str::to_owned))
        .collect();
    masters.sort();
    masters
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

/// Accounts every key of each keyspace: scanned in full below `scan_limit` keys,
/// else `samples` keys drawn with RANDOMKEY (on a cluster, from each master in
/// proportion to its keys; and any key holding more than 1,000 elements measured on
/// its own, as the single metrics keys are).
pub async fn account(raw: &Raw, scan_limit: u64, samples: usize) -> anyhow::Result<Vec<Group>> {
    let mut groups = Vec::new();
    for keyspace in &raw.keyspaces {
        let mut sizes = Vec::with_capacity(keyspace.conns.len());
        for conn in &keyspace.conns {
            sizes.push(dbsize(&mut conn.clone()).await?);
        }
        let total: u64 = sizes.iter().sum();
        if total == 0 {
            continue;
        }
        let exact = total <= scan_limit;
        // (prefix, type) → (estimated keys, sampled keys, estimated bytes)
        let mut by_prefix: BTreeMap<(String, String), (f64, usize, f64)> = BTreeMap::new();
        for (conn, size) in keyspace.conns.iter().zip(sizes) {
            if size == 0 {
                continue;
            }
            let mut conn = conn.clone();
            let names: Vec<String> = if exact {
                scan_all(&mut conn).await?
            } else {
                let draws = (samples as u64 * size).div_ceil(total);
                let mut names = Vec::with_capacity(draws as usize);
                for _ in 0..draws {
                    let name: Option<String> =
                        redis::cmd("RANDOMKEY").query_async(&mut conn).await?;
                    names.extend(name);
                }
                names
            };
            // Sampled: untagged keys are few and some are huge (see `big_untagged`).
            let names: Vec<String> = names
                .into_iter()
                .filter(|name| exact || name.contains('{'))
                .collect();
            // Each key sampled here stands for size / sampled keys of this server.
            let scale = if exact {
                1.0
            } else {
                size as f64 / names.len().max(1) as f64
            };
            for name in &names {
                let (key_type, bytes) = usage(&mut conn, name).await?;
                let prefix = name.split('{').next().unwrap_or(name).to_owned();
                let entry = by_prefix.entry((prefix, key_type)).or_default();
                entry.0 += scale;
                entry.1 += 1;
                entry.2 += scale * bytes as f64;
            }
        }
        for ((prefix, key_type), (keys, sampled, total_bytes)) in by_prefix {
            groups.push(Group {
                database: keyspace.name,
                prefix,
                key_type,
                keys,
                sampled,
                mean_bytes: total_bytes / keys,
                total_bytes,
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
    for keyspace in &raw.keyspaces {
        if raw.dbsize(keyspace.name).await?.unwrap_or(0) <= scan_limit {
            continue;
        }
        for conn in &keyspace.conns {
            let mut conn = conn.clone();
            for name in scan_matching(&mut conn, "auth:metrics:*").await? {
                let (key_type, bytes) = usage(&mut conn, &name).await?;
                groups.push(Group {
                    database: keyspace.name,
                    prefix: name,
                    key_type,
                    keys: 1.0,
                    sampled: 1,
                    mean_bytes: bytes as f64,
                    total_bytes: bytes as f64,
                });
            }
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
    // On a cluster each master is scanned for its own keys and unlinks them itself.
    for mut conn in raw.keyspaces.iter().flat_map(|k| k.conns.iter().cloned()) {
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

    #[test]
    fn masters_serving_slots_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002,host2 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7003@17003 master,fail - 0 0 3 connected 10923-16383
r3 127.0.0.1:7006@17006 master - 0 0 4 connected 10923-16383
r1 127.0.0.1:7004@17004 slave a1 0 0 1 connected
old 127.0.0.1:7007@17007 master - 0 0 5 connected
";
        assert_eq!(
            masters_of(nodes),
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7006"]
        );
        assert!(masters_of("").is_empty());
    }
}
