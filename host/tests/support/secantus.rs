//! A real MongoDB-wire server for tests: SecantusDB's `secantusd-py` (PyPI `secantusdb==0.7.0b3`),
//! started on a free loopback port with a fresh data directory, waited for until it answers a
//! ping, and killed by its process id when dropped (also when a test fails). The binary is
//! `$SECANTUSD_PY`, else `secantusd-py` on `PATH`, else `~/.cache/odeon/secantus-venv/bin/secantusd-py`
//! (where `just setup` installs it).

#![allow(dead_code)] // each test crate uses part of it

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use odeon_host::driver::MongoDriver;

use super::free_port;
pub const INSTALL: &str = "just setup (or: python3 -m venv ~/.cache/odeon/secantus-venv && \
    ~/.cache/odeon/secantus-venv/bin/pip install 'secantusdb==0.7.0b3')";

/// A running `secantusd-py` with its own port and data directory.
pub struct Secantus {
    child: Option<Child>,
    port: u16,
    /// Holds `data/`, the server's log and an empty config file (so none on the machine is read).
    dir: PathBuf,
}

impl Secantus {
    /// Starts a server on a free loopback port and waits until it answers a ping.
    pub async fn start() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "odeon-driver-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("secantusd.toml"), "").unwrap();
        let mut server = Self { child: None, port: free_port(), dir };
        server.spawn();
        server.wait_ready().await;
        server
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(binary())
            .arg("--config")
            .arg(self.dir.join("secantusd.toml"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.join("data"))
            // Durable on commit, like mongod's journaled writes: the outage test kills the server.
            .args(["--sync-on-commit", "--cache-size", "64M", "--log-level", "WARNING"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start secantusd-py: {e}; install it with: {INSTALL}"));
        self.child = Some(child);
    }

    pub async fn wait_ready(&mut self) {
        let client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("secantusd-py exited with {status} before answering; its log:\n{}", self.log());
            }
            if client.database("admin").run_command(doc! { "ping": 1 }).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "secantusd-py did not answer a ping in 30 s; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server process (by its id) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// A plain client for looking at documents and waiting for the server.
    pub async fn client(&self) -> mongodb::Client {
        let uri = format!("{}/?directConnection=true&serverSelectionTimeoutMS=500", self.uri());
        mongodb::Client::with_uri_str(uri).await.unwrap()
    }

    pub async fn driver(&self) -> MongoDriver {
        MongoDriver::connect(&self.uri()).await.unwrap()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("secantusd.log")
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        let tail = text.len().saturating_sub(4000);
        text[text.ceil_char_boundary(tail)..].to_string()
    }
}

impl Drop for Secantus {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$SECANTUSD_PY`, else `secantusd-py` on `PATH`, else the venv the install command makes.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SECANTUSD_PY") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SECANTUSD_PY={} is not a file; install secantusd-py with: {INSTALL}",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("secantusd-py")).collect::<Vec<_>>())
        .unwrap_or_default();
    let venv =
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/odeon/secantus-venv/bin/secantusd-py"));
    on_path.into_iter().chain(venv).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "secantusd-py (SecantusDB's MongoDB-wire server) is not installed; these tests need it. \
             Install it with: {INSTALL} (or set SECANTUSD_PY to its path)"
        )
    })
}
