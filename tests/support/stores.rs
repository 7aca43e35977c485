//! Private store servers that a test may kill and restart: a `redis-server` and a
//! PostgreSQL cluster of their own, each on a free port, never the shared servers.
//! Dropping the guard stops the server and removes its files. A missing binary fails
//! the test (never skips it).

use std::{
    net::TcpListener,
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
