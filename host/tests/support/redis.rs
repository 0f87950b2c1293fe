//! A real `redis-server` for tests: started on a free loopback port without persistence, waited
//! for until that very process answers, and killed by its PID when dropped (also when a test
//! fails). The binary is `redis-server` from `PATH`, or `$ODEON_REDIS_SERVER`.

#![allow(dead_code)] // each test crate uses part of it

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A `redis-server` child process on a loopback port, killed (by its PID) when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port, trying another port if one was taken meanwhile.
    pub fn start() -> Self {
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn_redis(port) {
                return Self { port, child: Some(child) };
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL to the child's PID) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn revive(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.child = Some(spawn_redis(self.port).expect("restarting redis-server on its port"));
    }

    pub fn restart(&mut self) {
        self.kill();
        self.revive();
    }

    /// Sends a signal (`STOP`, `CONT`) to the server's PID.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("the server is running").id().to_string();
        let status = Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("running kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// A field of `INFO <section>`, read over a connection of the harness's own.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info = info(self.port, section)?;
        info.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server` on `port` and waits until that very process answers; `None` if it exited
/// or never answered (the port was taken, say).
fn spawn_redis(port: u16) -> Option<Child> {
    let bin = std::env::var("ODEON_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let port_arg = port.to_string();
    let mut child = Command::new(&bin)
        .args(["--port", &port_arg, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{bin}`: {e}. The Redis presence tests need a real redis-server: \
                 install it (`apt-get install -y redis-server`) or set ODEON_REDIS_SERVER to its path"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        // Ask for the process id, so a server of another test on the same port does not count.
        let pid = info(port, "server").and_then(|i| {
            i.lines().find_map(|l| l.strip_prefix("process_id:").map(|v| v.trim().to_string()))
        });
        if pid == Some(child.id().to_string()) {
            return Some(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `INFO <section>` over a fresh connection; `None` if nothing answers.
fn info(port: u16, section: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut con = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    con.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    con.write_all(format!("INFO {section}\r\n").as_bytes()).ok()?;
    // The answer is a bulk string: `$<length>\r\n<body>\r\n`.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = con.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((header, body)) = text.split_once("\r\n") {
            let len: usize = header.strip_prefix('$')?.parse().ok()?;
            if body.len() >= len {
                return Some(body[..len].to_string());
            }
        }
    }
}
