//! The real odeon-proxy binary started under a low open-file limit (set by a bash wrapper, which
//! `exec`s it so the pid is the proxy's): it raises its soft limit to the hard one and serves
//! `/health` past the old limit, lowers its connection cap with a warning when even the hard
//! limit cannot hold `--max-connections`, and logs an `EMFILE` storm once a second. No Redis is
//! needed: the proxy serves its health path with an empty route table.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_odeon-proxy");

/// A proxy process, killed when dropped (a failing test too), and everything it logged.
struct Proxy {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts the proxy on a free loopback port after `ulimits` (bash `ulimit` commands) and
    /// waits for its health path.
    fn start(ulimits: &str, args: &[&str]) -> Proxy {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("bash")
            .arg("-c")
            // Its log, wherever it writes it, on the one pipe read here.
            .arg(format!("{ulimits} && exec \"$0\" \"$@\" 1>&2"))
            .arg(BIN)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            // Nothing listens on port 1: the proxy starts with no routes and keeps trying.
            .args(["--redis-url", "redis://127.0.0.1:1"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning bash");
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let proxy = Proxy { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while proxy.health(Duration::from_secs(1)).is_none() {
            assert!(Instant::now() < deadline, "the proxy did not start:\n{}", proxy.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        proxy
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `GET /health`: the status line and body, or `None` when no answer came within `wait`.
    fn health(&self, wait: Duration) -> Option<String> {
        let mut sock = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), wait).ok()?;
        sock.set_read_timeout(Some(wait)).unwrap();
        sock.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut out = String::new();
        sock.read_to_string(&mut out).ok()?;
        (!out.is_empty()).then_some(out)
    }

    /// Opens `n` connections that send nothing.
    fn idle(&self, n: usize) -> Vec<TcpStream> {
        (0..n).map(|_| TcpStream::connect(("127.0.0.1", self.port)).expect("connecting")).collect()
    }

    /// The soft and hard "Max open files" of the proxy process.
    fn open_files_limit(&self) -> (u64, u64) {
        limits(&std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap())
    }
}

fn limits(proc_limits: &str) -> (u64, u64) {
    let line = proc_limits.lines().find(|l| l.starts_with("Max open files")).expect("a Max open files line");
    let mut values = line["Max open files".len()..].split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (values.next().unwrap(), values.next().unwrap())
}

/// This test process's own hard limit, its soft limit raised to it first (the tests open
/// hundreds of sockets, side by side).
fn own_hard_limit() -> u64 {
    odeon_proxy::os::raise_open_files_limit();
    limits(&std::fs::read_to_string("/proc/self/limits").unwrap()).1
}

#[test]
fn raises_its_soft_limit_to_the_hard_one_and_serves_health_past_the_old_soft_limit() {
    let hard = own_hard_limit().min(4096);
    if hard < 1024 {
        eprintln!("skipped: the hard open-file limit here is {hard}");
        return;
    }
    let proxy =
        Proxy::start(&format!("ulimit -Sn 256 && ulimit -Hn {hard}"), &["--header-timeout-secs", "60"]);
    assert_eq!(proxy.open_files_limit(), (hard, hard), "{}", proxy.log());
    // 600 sockets that send nothing: under the old soft limit of 256 the proxy could not accept
    // them all, nor the health request behind them, until the 60 s header timeout cut them.
    let _idle = proxy.idle(600);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = proxy.health(Duration::from_secs(5));
        let answer = answer.unwrap_or_else(|| panic!("no /health answer within 5 s:\n{}", proxy.log()));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let body: serde_json::Value =
            serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        if body["connections"].as_u64().unwrap() > 600 {
            break;
        }
        assert!(Instant::now() < deadline, "the idle sockets were not all accepted: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!proxy.log().contains("accept failed"), "{}", proxy.log());
}

#[test]
fn warns_and_lowers_its_cap_when_the_hard_limit_cannot_hold_max_connections() {
    if own_hard_limit() < 512 {
        eprintln!("skipped: the hard open-file limit here is below 512");
        return;
    }
    let proxy =
        Proxy::start("ulimit -n 512", &["--max-connections", "100000", "--header-timeout-secs", "60"]);
    let log = proxy.log();
    assert!(
        log.contains("open-file limit 512 is below the 200256 descriptors --max-connections 100000 needs")
            && log.contains("serving at most 128 connections"),
        "{log}"
    );
    // The lowered cap is the one enforced: past 128 connections the answer is the cap's 503,
    // while descriptors are still left to give it.
    let _idle = proxy.idle(140);
    std::thread::sleep(Duration::from_millis(300));
    let answer = proxy.health(Duration::from_secs(5)).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("connection limit"), "{answer}");
}

#[test]
fn an_accept_storm_is_logged_once_a_second_with_a_count() {
    if own_hard_limit() < 128 {
        eprintln!("skipped: the hard open-file limit here is below 128");
        return;
    }
    let proxy = Proxy::start("ulimit -n 128", &["--header-timeout-secs", "60"]);
    // More idle sockets than descriptors (the rest wait in the listen queue of 128): accept
    // fails with EMFILE until they are cut.
    let _idle = proxy.idle(200);
    let failures = |log: &str| {
        log.lines().filter(|l| l.contains("accept failed")).map(str::to_owned).collect::<Vec<_>>()
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = failures(&proxy.log()).len();
    std::thread::sleep(Duration::from_secs(3));
    let lines = failures(&proxy.log());
    assert!(!lines.is_empty(), "no accept failure logged:\n{}", proxy.log());
    // One line a second over these 3 s (4 with the boundaries), not one per failed accept.
    let logged = lines.len() - before;
    assert!(logged <= 4, "{logged} lines in 3 s:\n{}", lines.join("\n"));
    assert!(lines.iter().skip(1).any(|l| !l.contains("unlogged=0")), "{}", lines.join("\n"));
}
