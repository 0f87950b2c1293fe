//! One server on one workload of the server comparison: a fresh server pinned to the first CPU,
//! its empty RSS, then `odeon-loadgen` pinned to the second CPU against it, to its end.

use std::time::Duration;

use anyhow::bail;

use super::{Plan, RunRecord, Workload, loadgen_command_line, read_summary, run_loadgen, server};
use crate::proc::{self, Pid};

/// Runs `workload` against `spec` once.
pub fn run_one(plan: &Plan, spec: &server::Spec, workload: Workload) -> RunRecord {
    let name = format!("{}-{}", spec.kind.name().to_lowercase(), workload.label());
    let mut record = RunRecord {
        workload,
        server: spec.kind,
        summary: None,
        empty_rss_kib: None,
        error: None,
        retried_after: None,
        server_cmd: String::new(),
        loadgen_cmd: String::new(),
    };
    if let Err(e) = run_one_inner(plan, spec, workload, &name, &mut record) {
        record.error = Some(format!("{e:#}"));
    }
    record
}

fn run_one_inner(
    plan: &Plan,
    spec: &server::Spec,
    workload: Workload,
    name: &str,
    record: &mut RunRecord,
) -> anyhow::Result<()> {
    let port = server::free_port()?;
    let log = plan.results_dir.join(format!("{name}.server.log"));
    let (server_cpu, loadgen_cpu) = match &plan.pin {
        Some((s, l)) => (Some(s.as_str()), Some(l.as_str())),
        None => (None, None),
    };
    record.server_cmd = spec.command_line(port, server_cpu);
    let mut running = server::start(spec, port, server_cpu, &log)?;
    // Let start-up allocation settle before taking the empty footprint.
    std::thread::sleep(Duration::from_secs(1));
    record.empty_rss_kib = proc::rss_kib(Pid::Id(running.pid));

    let (active, idle) = workload.clients();
    let json = plan.results_dir.join(format!("{name}.json"));
    let loadgen_args: Vec<String> = vec![
        "--endpoint".into(),
        format!("http://127.0.0.1:{port}"),
        "--room".into(),
        "arena".into(),
        "--clients".into(),
        active.to_string(),
        "--idle".into(),
        idle.to_string(),
        "--rate-hz".into(),
        plan.rate_hz.to_string(),
        "--warmup-secs".into(),
        plan.warmup_secs.to_string(),
        "--measure-secs".into(),
        plan.measure_secs.to_string(),
        "--server-pid".into(),
        running.pid.to_string(),
        "--join-concurrency".into(),
        "50".into(),
        "--json".into(),
        json.display().to_string(),
    ];
    record.loadgen_cmd = loadgen_command_line(plan, loadgen_cpu, &loadgen_args);
    let status = run_loadgen(plan, loadgen_cpu, &loadgen_args, &json)?;
    let server_died = running.exited();
    running.stop();
    record.summary = read_summary(&json)?;
    if server_died {
        bail!("the server exited during the run; log {}:\n{}", log.display(), server::log_tail(&log));
    }
    if !status.success() {
        bail!("loadgen exited with {status}");
    }
    Ok(())
}
