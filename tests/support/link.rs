//! A TCP link a test can break without killing anything: a proxy on loopback between
//! a service and what it talks to (Redis, PostgreSQL, the other service).
//!
//! - **Open**: bytes pass as they come.
//! - **Silent**: the link drops every packet, as a pulled cable or a firewall that
//!   drops does: no RST, no FIN, connections stay open, new connections are accepted
//!   (the kernel's backlog does that) and then hear nothing. Bytes sent meanwhile are
//!   held, not lost, as TCP's retransmissions would deliver them once the link heals.
//!   That is the case that matters for "nothing refused is written": a write the
//!   service gave up on may still reach the store after the partition.
//! - **Slow**: every chunk waits the given delay before it is passed on, each way.
//!
//! Each direction of each connection is one task that reads a chunk, waits while the
//! link is silent, sleeps while it is slow, and writes the chunk on. A closed side is
//! passed on after the bytes before it (a FIN after the data, as TCP does).

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::watch,
    task::JoinHandle,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Open,
    Silent,
    Slow(Duration),
}

/// A proxy on a fresh loopback port to `upstream`; dropping it closes every
/// connection through it.
pub struct Link {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Link {
    pub async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a link");
        let addr = listener.local_addr().expect("link address");
        let (mode, watching) = watch::channel(Mode::Open);
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let mut watching = watching.clone();
                connections.spawn(async move {
                    // A silent link does not even get the connection to the other end.
                    wait_while_silent(&mut watching).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    let there = pump(from_client, to_server, watching.clone());
                    let back = pump(from_server, to_client, watching);
                    tokio::join!(there, back);
                });
            }
        });
        Self { addr, mode, accept }
    }

    /// `host:port` of the link.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn silent(&self) {
        self.set(Mode::Silent);
    }

    pub fn slow(&self, delay: Duration) {
        self.set(Mode::Slow(delay));
    }

    pub fn heal(&self) {
        self.set(Mode::Open);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.accept.abort();
    }
}

async fn wait_while_silent(mode: &mut watch::Receiver<Mode>) {
    let _ = mode.wait_for(|mode| *mode != Mode::Silent).await;
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await.unwrap_or(0);
        wait_while_silent(&mut mode).await;
        let current = *mode.borrow();
        if let Mode::Slow(delay) = current {
            tokio::time::sleep(delay).await;
        }
        if read == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
