//! Private store servers that a test may kill and restart: a `redis-server` and a
//! PostgreSQL cluster of their own, each on a free port, never the shared servers.
//! Dropping the guard stops the server and removes its files. A missing binary fails
//! the test (never skips it).

use std::{
    net::{SocketAddr, TcpListener},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Where Debian puts the PostgreSQL 15 server binaries; override with TEST_PG_BIN.
fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let path = Path::new(&dir).join(tool);
    assert!(
        path.exists(),
        "{} is required for the fault tests (set TEST_PG_BIN to its directory)",
        path.display()
    );
    path
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// A loopback port that refuses every connection and that no other test can
/// take while the guard lives: the socket is bound but never listens. (A port
/// from [`free_port`] is free only until someone else binds it, and a parallel
/// test's server once did, turning "nothing there" into a wrong answer.)
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a closed port");
        let port = socket.local_addr().expect("local addr").port();
        Self {
            _socket: socket,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn fresh_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `command`, failing the test with its output if it does not succeed.
fn run(mut command: Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Polls `ready` every 50 ms until it holds, failing after `limit`.
fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` of our own, without persistence (`--save '' --appendonly no`): a
/// restart starts empty, as a Redis that lost its memory does.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let port = self.port;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server is required for the fault tests: {e}"));
        self.child = Some(child);
        tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(10), "redis-server answers PING", || {
                redis_ping(port)
            });
        })
        .await
        .expect("wait for redis-server");
    }

    /// SIGKILL, as a crash: every connection drops at once. Returns once the process has
    /// exited (and its port is closed).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections but answers nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after `freeze`.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let mut kill = Command::new("kill");
        kill.args([signal, &child.id().to_string()]);
        run(kill, "signalling redis-server");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen server ignores nothing but SIGKILL; wake it anyway for tidiness.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// Whether a Redis on `port` answers PING with PONG.
fn redis_ping(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A PostgreSQL cluster of our own (initdb in a temp dir, trust auth, listening on
/// 127.0.0.1 and a socket in that dir only), run as user `postgres` when we are root,
/// since PostgreSQL refuses to run as root. Dropping it stops the server and removes
/// the cluster.
pub struct PrivatePostgres {
    cluster: Cluster,
}

/// Where a cluster lives; cheap to clone into blocking tasks.
#[derive(Clone)]
struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `tool` of PostgreSQL, as user `postgres` if we are root.
    fn command(&self, tool: &str) -> Command {
        let binary = pg_bin(tool);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        // Somewhere user `postgres` may read (the test's own directory may not be).
        command.current_dir(&self.dir);
        command
    }

    fn init(&self) {
        if running_as_root() {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(&self.dir);
            run(chown, "chown of the PostgreSQL temp dir");
        }
        let mut initdb = self.command("initdb");
        initdb
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run(initdb, "initdb");
    }

    fn start(&self) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
                self.port,
                self.dir.display()
            ))
            .arg("start");
        run(pg_ctl, "pg_ctl start");
    }

    fn stop_immediately(&self) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-m", "immediate", "stop"]);
        run(pg_ctl, "pg_ctl stop -m immediate");
    }
}

impl PrivatePostgres {
    /// initdb + start; waits until the server accepts connections.
    pub async fn start() -> Self {
        let cluster = Cluster {
            dir: fresh_dir("auth-blog-pg"),
            port: free_port(),
        };
        // The guard exists before initdb, so a failure still removes the directory.
        let postgres = Self {
            cluster: cluster.clone(),
        };
        tokio::task::spawn_blocking(move || {
            cluster.init();
            cluster.start();
        })
        .await
        .expect("start PostgreSQL");
        postgres
    }

    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// The server URL without a database name.
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.cluster.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(&self, prefix: &str) -> String {
        use sqlx::{Connection as _, Executor as _};
        let server = self.server_url();
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| panic!("private PostgreSQL at {server}: {e}"));
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create database");
        let _ = admin.close().await;
        format!("{server}/{name}")
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, with no
    /// checkpoint, as in a crash; the next start runs crash recovery. Returns once the
    /// server is gone.
    pub async fn crash(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.stop_immediately())
            .await
            .expect("crash PostgreSQL");
    }

    /// Starts the server again on the same port and data; returns once it accepts
    /// connections.
    pub async fn restart(&self) {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || cluster.start())
            .await
            .expect("restart PostgreSQL");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.cluster.data().join("postmaster.pid").exists() {
            let mut pg_ctl = self.cluster.command("pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(self.cluster.data())
                .args(["-w", "-t", "30", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = pg_ctl.status();
        }
        let _ = std::fs::remove_dir_all(&self.cluster.dir);
    }
}

/// A Redis Cluster of our own (three masters, a replica each), started by
/// `tests/cluster/redis-cluster.sh` in a directory of its own, stopped when dropped.
/// For tests that kill or freeze its nodes: never the cluster other tests share.
pub struct PrivateCluster {
    dir: PathBuf,
    urls: Vec<String>,
}

/// One shard of a cluster: the ports of its master and of its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub master: u16,
    pub replicas: Vec<u16>,
}

const CLUSTER_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/cluster/redis-cluster.sh"
);

impl PrivateCluster {
    pub async fn start() -> Self {
        let dir = fresh_dir("redis-cluster");
        let script_dir = dir.clone();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .args([CLUSTER_SCRIPT, "start"])
                .env("REDIS_CLUSTER_DIR", &script_dir)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
        })
        .await
        .expect("start the cluster")
        .expect("bash runs tests/cluster/redis-cluster.sh");
        let mut cluster = Self {
            dir,
            urls: Vec::new(),
        };
        assert!(
            output.status.success(),
            "redis-cluster.sh start: {}",
            output.status
        );
        cluster.urls = String::from_utf8_lossy(&output.stdout)
            .trim()
            .split(',')
            .map(str::to_owned)
            .collect();
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// The shard that holds `key`'s slot, once a live node reports it with a replica.
    pub async fn shard_of(&self, key: &str) -> Shard {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shard = self.reported_shard_of(key).await;
            if !shard.replicas.is_empty() {
                return shard;
            }
            assert!(
                Instant::now() < deadline,
                "the shard of {key} has a replica within 20 s: {shard:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The shard that holds `key`'s slot, as a live node reports it.
    async fn reported_shard_of(&self, key: &str) -> Shard {
        let mut last = String::new();
        for url in &self.urls {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                continue;
            };
            let Ok(Ok(mut conn)) = tokio::time::timeout(
                Duration::from_secs(1),
                client.get_multiplexed_async_connection(),
            )
            .await
            else {
                continue;
            };
            let asked = async {
                let slot: i64 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query_async(&mut conn)
                    .await?;
                let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>((slot, ranges))
            };
            match tokio::time::timeout(Duration::from_secs(1), asked).await {
                Ok(Ok((slot, ranges))) => {
                    if let Some(shard) = shard_in(slot, &ranges) {
                        return shard;
                    }
                    last = format!("no range holds slot {slot}");
                }
                Ok(Err(error)) => last = error.to_string(),
                Err(_) => last = "timeout".into(),
            }
        }
        panic!("no node of the cluster told the shard of {key}: {last}")
    }

    fn pid(&self, port: u16) -> String {
        std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid"))
            .unwrap_or_else(|e| panic!("pid file of node {port}: {e}"))
            .trim()
            .to_owned()
    }

    fn signal(&self, port: u16, signal: &str) {
        let mut kill = Command::new("kill");
        kill.args([signal, &self.pid(port)]);
        run(kill, "signalling a cluster node");
    }

    /// SIGKILL: a crash of node `port`.
    pub fn kill(&self, port: u16) {
        self.signal(port, "-KILL");
    }

    /// Starts killed node `port` again: it rejoins the cluster (a killed master as a
    /// replica of the replica that took over).
    pub async fn restart(&self, port: u16) {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut restart = Command::new("bash");
            restart
                .args([CLUSTER_SCRIPT, "restart-node", &port.to_string()])
                .env("REDIS_CLUSTER_DIR", &dir);
            run(restart, "restarting a cluster node");
        })
        .await
        .expect("restart a node");
    }

    /// SIGSTOP: node `port` keeps its connections and answers nothing.
    pub fn freeze(&self, port: u16) {
        self.signal(port, "-STOP");
    }

    /// SIGCONT after `freeze`.
    pub fn thaw(&self, port: u16) {
        self.signal(port, "-CONT");
    }

    /// Waits until replica `port` has taken over as a master; how long that took.
    pub async fn wait_promoted(&self, port: u16) -> Duration {
        let started = Instant::now();
        loop {
            if info_replication(port).await.contains("role:master") {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "replica {port} promoted within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `port` is a replica in sync with its master.
    pub async fn wait_replica(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = info_replication(port).await;
            if info.contains("role:slave") && info.contains("master_link_status:up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {port} a replica in sync within 30 s: {info}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every replica is in sync with its master (a replica that never
    /// synced could not take over).
    pub async fn wait_in_sync(&self) {
        let ports: Vec<u16> = self
            .urls
            .iter()
            .filter_map(|url| url.rsplit(':').next()?.parse().ok())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut synced = true;
            for port in &ports {
                let info = info_replication(*port).await;
                if info.contains("role:slave") && !info.contains("master_link_status:up") {
                    synced = false;
                }
            }
            if synced {
                return;
            }
            assert!(Instant::now() < deadline, "replicas in sync within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn info_replication(port: u16) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let asked = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg("replication")
            .query_async::<String>(&mut conn)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(1), asked).await {
        Ok(Ok(info)) => info,
        _ => String::new(),
    }
}

/// The shard of `slot` in a `CLUSTER SLOTS` reply.
fn shard_in(slot: i64, ranges: &[redis::Value]) -> Option<Shard> {
    let port = |node: &redis::Value| -> Option<u16> {
        let redis::Value::Array(node) = node else {
            return None;
        };
        match node.get(1)? {
            redis::Value::Int(port) => u16::try_from(*port).ok(),
            _ => None,
        }
    };
    ranges.iter().find_map(|range| {
        let redis::Value::Array(range) = range else {
            return None;
        };
        let (redis::Value::Int(start), redis::Value::Int(end)) = (range.first()?, range.get(1)?)
        else {
            return None;
        };
        if !(*start..=*end).contains(&slot) {
            return None;
        }
        Some(Shard {
            master: port(range.get(2)?)?,
            replicas: range[3..].iter().filter_map(port).collect(),
        })
    })
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Frozen nodes ignore SIGTERM: wake every node so the script can stop it.
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if let Ok(pid) = std::fs::read_to_string(entry.path().join("redis.pid")) {
                let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
            }
        }
        let _ = Command::new("bash")
            .args([CLUSTER_SCRIPT, "stop"])
            .env("REDIS_CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
