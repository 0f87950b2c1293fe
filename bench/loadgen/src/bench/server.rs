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
    let env = match spec.kind {
        Kind::Colyseus => vec![("PORT", port.to_string())],
        Kind::Odeon => Vec::new(),
    };
    let launch = Launch {
        program: &spec.program,
        args: spec.args_for(port),
        cwd: &spec.cwd,
        env,
        cpu,
        log,
        watch_stdout: spec.kind == Kind::Colyseus,
    };
    let (running, listening) = launch.spawn(port, spec.command_line(port, cpu))?;
    // A debug host compiles every plugin at start-up; allow for it.
    running.wait_until(spec.kind.name(), Duration::from_secs(90), || match spec.kind {
        Kind::Odeon => http_ok(port, "/odeon/health"),
        Kind::Colyseus => listening.load(Ordering::SeqCst) || port_accepts(port),
    })?;
    Ok(running)
}

/// How to start one program under test (a server, redis-server, a proxy): pinned to `cpu` if
/// given, in its own process group, with only PATH and HOME (and `env`) from the environment,
/// stdout and stderr into `log`.
pub struct Launch<'a> {
    /// The program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Variables set besides PATH and HOME.
    pub env: Vec<(&'static str, String)>,
    /// CPU list for `taskset -c`.
    pub cpu: Option<&'a str>,
    /// Where stdout and stderr go.
    pub log: &'a Path,
    /// Copy stdout through a pipe, raising the returned flag at a line containing `listening`.
    pub watch_stdout: bool,
}

impl Launch<'_> {
    /// Spawns the program; `port` and `command_line` are recorded in the guard. The guard kills
    /// the process group on drop.
    pub fn spawn(&self, port: u16, command_line: String) -> anyhow::Result<(Running, Arc<AtomicBool>)> {
        let log_file = File::create(self.log).with_context(|| format!("creating {}", self.log.display()))?;
        let mut cmd = match self.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).arg(self.program);
                c
            }
            None => Command::new(self.program),
        };
        cmd.args(&self.args).current_dir(self.cwd).env_clear();
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::null()).stderr(log_file.try_clone()?);
        let listening = Arc::new(AtomicBool::new(false));
        if self.watch_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(log_file);
        }
        cmd.process_group(0);
        sys::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", self.program.display()))?;
        let pid = child.id();
        if let Some(out) = child.stdout.take() {
            let flag = listening.clone();
            let mut log_file = log_file_for_append(self.log)?;
            std::thread::spawn(move || copy_watching(out, &mut log_file, &flag));
        }
        Ok((Running { child, pid, port, log: self.log.to_owned(), command_line }, listening))
    }
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
pub fn http_ok(port: u16, path: &str) -> bool {
    http_get(port, path).is_some_and(|(status, _)| status == 200)
}

/// `GET path` on 127.0.0.1:port with `Connection: close`: the status and the body (the bytes
/// after the head; small bodies only, read until the server closes, within 2 s).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    // A timeout or reset after some bytes still leaves what arrived.
    let _ = s.take(64 * 1024).read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

/// `POST path` on 127.0.0.1:port with `headers`, `body` (`application/octet-stream`) and
/// `Connection: close`: the status and the body. The answer is read until its Content-Length,
/// or else until the server closes (a chunked body is decoded), within `timeout` for the whole
/// exchange.
pub fn http_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = s.set_nodelay(true);
    s.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).context("sending the request head")?;
    s.write_all(body).context("sending the request body")?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some((status, body)) = complete_response(&raw)? {
            return Ok((status, body));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no complete answer within {} s ({} bytes read)", timeout.as_secs_f64(), raw.len());
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context(format!("reading the answer ({} bytes read)", raw.len())),
        }
    }
    // Closed: whatever arrived is the answer.
    let (status, headers, rest) = split_head(&raw).context("the server closed before a full answer head")?;
    let body =
        if header_is(&headers, "transfer-encoding", "chunked") { dechunk(rest) } else { rest.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Header lines as (lower-cased name, value).
type Headers = Vec<(String, String)>;

/// The status, the header lines and the bytes after the head, once the head is in.
fn split_head(raw: &[u8]) -> Option<(u16, Headers, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_ascii_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers, &raw[end + 4..]))
}

fn header_is(headers: &[(String, String)], name: &str, value: &str) -> bool {
    headers.iter().any(|(n, v)| n == name && v.eq_ignore_ascii_case(value))
}

/// The answer, if `raw` holds all of it by its Content-Length (or a finished chunked body).
fn complete_response(raw: &[u8]) -> anyhow::Result<Option<(u16, String)>> {
    let Some((status, headers, rest)) = split_head(raw) else { return Ok(None) };
    let body = if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.parse().with_context(|| format!("Content-Length {len:?}"))?;
        if rest.len() < len {
            return Ok(None);
        }
        rest[..len].to_vec()
    } else if header_is(&headers, "transfer-encoding", "chunked") && rest.ends_with(b"0\r\n\r\n") {
        dechunk(rest)
    } else {
        return Ok(None);
    };
    Ok(Some((status, String::from_utf8_lossy(&body).into_owned())))
}

/// A chunked body's data (as far as it goes).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { break };
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[..size.min(rest.len())]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Whether 127.0.0.1:port accepts a TCP connection.
pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether process `pid` is gone: no longer in /proc, or a zombie.
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// The last lines of a log, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Running {
    /// Polls `ready` every 100 ms until it holds; fails if the process exits first or `within`
    /// passes.
    pub fn wait_until(
        &self,
        name: &str,
        within: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.exited() {
                bail!("{name} exited during start-up; log {}:\n{}", self.log.display(), log_tail(&self.log));
            }
            if ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{name} was not ready within {} s; log {}:\n{}",
            within.as_secs(),
            self.log.display(),
            log_tail(&self.log)
        )
    }

    /// Whether the process has exited (and is reaped).
    pub fn exited(&self) -> bool {
        // try_wait needs &mut; /proc tells the same without reaping.
        gone(self.pid)
    }

    /// Its exit status, once it has exited by itself (this reaps it).
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_complete_by_length_or_last_chunk() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(complete_response(raw).unwrap(), None);
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(complete_response(raw).unwrap(), Some((200, "hello".to_owned())));
        let raw =
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(complete_response(raw).unwrap(), Some((503, "abcde".to_owned())));
        assert_eq!(complete_response(b"HTTP/1.1 200 OK\r\n\r\nuntil close").unwrap(), None);
    }

    #[test]
    fn posts_a_body_with_headers() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while !raw.ends_with(b"payload") {
                let n = s.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8(raw).unwrap();
            assert!(text.starts_with("POST /up?x=1 HTTP/1.1\r\n"), "{text}");
            assert!(text.contains("\r\nAuthorization: Bearer t\r\n"), "{text}");
            assert!(text.contains("\r\nContent-Length: 7\r\n"), "{text}");
            // No Content-Length: the body ends when the connection closes.
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n{\"ok\":true}").unwrap();
        });
        let answer =
            http_post(port, "/up?x=1", &[("Authorization", "Bearer t")], b"payload", Duration::from_secs(5))
                .unwrap();
        assert_eq!(answer, (200, "{\"ok\":true}".to_owned()));
        server.join().unwrap();
    }
}
