//! Running `odeon-loadgen` from the bench: to its end ([`run_loadgen`]), or in the background
//! while the bench does something else to the server ([`Background`], the deploy workload), and
//! reading its JSON summary back.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Plan;
use crate::summary::Summary;
use crate::sys;

/// The loadgen's command line as a shell would show it (for the report).
pub fn loadgen_command_line(plan: &Plan, cpu: Option<&str>, args: &[String]) -> String {
    format!(
        "{}{} {}",
        cpu.map(|c| format!("taskset -c {c} ")).unwrap_or_default(),
        plan.loadgen.display(),
        args.join(" ")
    )
}

/// Runs the loadgen with `args`, pinned to `cpu` if given, to its end (it bounds itself; a
/// backstop kills it); `json` is its `--json` file, removed first.
pub fn run_loadgen(
    plan: &Plan,
    cpu: Option<&str>,
    args: &[String],
    json: &Path,
) -> anyhow::Result<ExitStatus> {
    Background::spawn(plan, cpu, args, json, plan.warmup_secs + plan.measure_secs)?.wait()
}

/// The loadgen's summary from its `--json` file, if it wrote one.
pub fn read_summary(json: &Path) -> anyhow::Result<Option<Summary>> {
    match std::fs::read_to_string(json) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?))
        }
        Err(_) => Ok(None),
    }
}

/// A running loadgen. Its stderr is copied to the bench's, line by line, watching for the end
/// of its active clients' join phase. Dropped before it ends, it is killed.
pub struct Background {
    child: Option<Child>,
    /// Its stdin, when it runs with `--end-on-stdin-close`: closing it ends the window.
    stdin: Option<ChildStdin>,
    joined: Arc<AtomicBool>,
    deadline: Instant,
}

impl Background {
    /// Starts the loadgen with `args`, pinned to `cpu` if given; `json` is its `--json` file,
    /// removed first; `run_secs` is its warm-up and window, for the backstop.
    pub fn spawn(
        plan: &Plan,
        cpu: Option<&str>,
        args: &[String],
        json: &Path,
        run_secs: f64,
    ) -> anyhow::Result<Background> {
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).arg(&plan.loadgen);
                c
            }
            None => Command::new(&plan.loadgen),
        };
        let end_on_stdin = args.iter().any(|a| a == "--end-on-stdin-close");
        let stdin = if end_on_stdin { Stdio::piped() } else { Stdio::null() };
        cmd.args(args).stdin(stdin).stdout(Stdio::null()).stderr(Stdio::piped());
        sys::die_with_parent(&mut cmd);
        let _ = std::fs::remove_file(json);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", plan.loadgen.display()))?;
        let joined = Arc::new(AtomicBool::new(false));
        if let Some(err) = child.stderr.take() {
            let flag = joined.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    // `odeon-loadgen: active: 500 of 500 joined in 2.1 s`
                    if line.contains(": active: ") && line.contains(" joined in ") {
                        flag.store(true, Ordering::SeqCst);
                    }
                    eprintln!("{line}");
                }
            });
        }
        // The loadgen bounds itself; this is the backstop (its default join phase + window +
        // slack).
        let deadline = Instant::now() + Duration::from_secs_f64(240.0 + 30.0 + run_secs + 120.0);
        let stdin = child.stdin.take();
        Ok(Background { child: Some(child), stdin, joined, deadline })
    }

    /// Ends its measure window now (with `--end-on-stdin-close`; otherwise it ends on time).
    pub fn end_window(&mut self) {
        self.stdin.take();
    }

    /// Its pid (taskset execs it, so the loadgen's own).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether its active clients' join phase has ended (joined or not).
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::SeqCst)
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for its end, and kills it at the backstop deadline.
    pub fn wait(mut self) -> anyhow::Result<ExitStatus> {
        self.end_window();
        let Some(mut child) = self.child.take() else { bail!("the loadgen was already waited for") };
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > self.deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("loadgen did not finish in time (killed)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
