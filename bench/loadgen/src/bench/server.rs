//! Starting a server under test (pinned, clean environment, own process group), waiting until
//! it answers, and stopping it again whatever happens (a guard that kills the group on drop).

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::sys;

/// The two servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `odeon-host` with the arena plugin.
    Odeon,
    /// `node bench/colyseus-peer/server.mjs`.
    Colyseus,
}

impl Kind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Odeon => "Odeon",
            Kind::Colyseus => "Colyseus",
        }
    }
}

/// How to start one server.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Which server.
    pub kind: Kind,
    /// The program (`odeon-host` or `node`).
    pub program: PathBuf,
    /// Its arguments, without the port (see [`Spec::args_for`]).
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
}

impl Spec {
    /// The full argument list for `port`.
    fn args_for(&self, port: u16) -> Vec<OsString> {
        let mut args = self.args.clone();
        if self.kind == Kind::Odeon {
            args.extend(["--port".into(), port.to_string().into()]);
        }
        args
    }

    /// The command line as a shell would show it (for the report).
    pub fn command_line(&self, port: u16, cpu: Option<&str>) -> String {
        let mut parts = Vec::new();
        if self.kind == Kind::Colyseus {
            parts.push(format!("PORT={port}"));
        }
        if let Some(cpu) = cpu {
            parts.push(format!("taskset -c {cpu}"));
        }
        parts.push(self.program.display().to_string());
        parts.extend(self.args_for(port).iter().map(|a| a.to_string_lossy().into_owned()));
        parts.join(" ")
    }
}

/// A free loopback port (bound and released; a tiny race is acceptable here).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A started server; dropping it kills its process group.
pub struct Running {
    child: Child,
    /// The server process (taskset execs it, so this is the host's or node's own pid).
    pub pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// The command line used.
    pub command_line: String,
}

/// Starts `spec` on `port`, pinned to `cpu` if given, with only PATH and HOME from the
/// environment, stdout and stderr into `log`; returns once it answers (or fails).
pub fn start(spec: &Spec, port: u16, cpu: Option<&str>, log: &Path) -> anyhow::Result<Running> {
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(&spec.program);
            c
        }
        None => Command::new(&spec.program),
    };
    cmd.args(spec.args_for(port)).current_dir(&spec.cwd).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    if spec.kind == Kind::Colyseus {
        cmd.env("PORT", port.to_string());
    }
    cmd.stdin(Stdio::null()).stderr(log_file.try_clone()?);
    let listening = Arc::new(AtomicBool::new(false));
    match spec.kind {
        Kind::Odeon => cmd.stdout(log_file),
        Kind::Colyseus => cmd.stdout(Stdio::piped()),
    };
    cmd.process_group(0);
    sys::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("starting {}", spec.program.display()))?;
    let pid = child.id();
    if let Some(out) = child.stdout.take() {
        let flag = listening.clone();
        let mut log_file = log_file_for_append(log)?;
        std::thread::spawn(move || copy_watching(out, &mut log_file, &flag));
    }
    let running =
        Running { child, pid, port, log: log.to_owned(), command_line: spec.command_line(port, cpu) };
    running.wait_ready(spec.kind, &listening)?;
    Ok(running)
}

fn log_file_for_append(log: &Path) -> anyhow::Result<File> {
    File::options().append(true).open(log).with_context(|| format!("opening {}", log.display()))
}

/// Copies the server's stdout into its log and raises `flag` at a line containing `listening`.
fn copy_watching(out: impl Read, log: &mut File, flag: &AtomicBool) {
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.contains("listening") {
                    flag.store(true, Ordering::SeqCst);
                }
                let _ = log.write_all(line.as_bytes());
            }
        }
    }
}

/// `GET path` on 127.0.0.1:port; whether it answered 200.
fn http_ok(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The last lines of a log, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Running {
    fn wait_ready(&self, kind: Kind, listening: &AtomicBool) -> anyhow::Result<()> {
        // A debug host compiles every plugin at start-up; allow for it.
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if self.exited() {
                bail!(
                    "{} exited during start-up; log {}:\n{}",
                    kind.name(),
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            let ready = match kind {
                Kind::Odeon => http_ok(self.port, "/odeon/health"),
                Kind::Colyseus => listening.load(Ordering::SeqCst) || port_accepts(self.port),
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{} did not answer within 90 s; log {}:\n{}",
            kind.name(),
            self.log.display(),
            log_tail(&self.log)
        )
    }

    /// Whether the process has exited (and is reaped).
    pub fn exited(&self) -> bool {
        // try_wait needs &mut; /proc tells the same without reaping.
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Stops the process group: SIGTERM, up to 5 s, then SIGKILL. The leader is reaped only
    /// after the group has been signalled, so the group id cannot have been reused.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = sys::kill_group(self.pid, sys::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.exited() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left in the group (or the leader itself, if it ignored SIGTERM).
        let _ = sys::kill_group(self.pid, sys::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
