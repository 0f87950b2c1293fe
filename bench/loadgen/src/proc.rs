//! Process figures from /proc: CPU time (utime + stime, and stime alone) and resident memory
//! (VmRSS).

use std::time::Duration;

use crate::sys;

/// Which process to read: a pid, or the loadgen itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// `/proc/self`.
    SelfProcess,
    /// `/proc/<pid>`.
    Id(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::SelfProcess => "/proc/self".to_owned(),
            Pid::Id(pid) => format!("/proc/{pid}"),
        }
    }
}

/// CPU time the process (all its threads) has used so far: user plus system, and system
/// (kernel) alone.
pub fn cpu_times(pid: Pid) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir())).ok()?;
    let (utime, stime) = parse_stat_ticks(&stat)?;
    let per_sec = sys::clock_ticks_per_sec();
    let time = |ticks: u64| Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_sec);
    Some((time(utime + stime), time(stime)))
}

/// User plus system CPU time the process (all its threads) has used so far.
pub fn cpu_time(pid: Pid) -> Option<Duration> {
    cpu_times(pid).map(|(total, _)| total)
}

/// utime and stime (fields 14 and 15) in clock ticks. The command name (field 2) is in
/// parentheses and may contain spaces, so fields are counted after the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the `)`: field 3 (state) is the first; utime is field 14, i.e. the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Resident set size in KiB (VmRSS).
pub fn rss_kib(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir())).ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:   1234 kB` line of /proc/PID/status.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].split_ascii_whitespace().next()?.parse().ok()
}

/// Time the process's threads spent runnable but waiting for a CPU (the second field of
/// /proc/PID/task/*/schedstat, summed): CPU contention, e.g. other work on a pinned core.
pub fn runqueue_wait(pid: Pid) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("{}/task", pid.dir())).ok()? {
        let Ok(task) = task else { continue };
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        total += parse_schedstat_wait(&text).unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
}

/// `run_ns wait_ns slices`: the wait.
pub fn parse_schedstat_wait(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Busy CPU time of the whole machine (all cores: user, nice, system, irq, softirq, steal),
/// from the first line of /proc/stat.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = parse_machine_busy(stat.lines().next()?)?;
    Some(Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / sys::clock_ticks_per_sec()))
}

/// `cpu  user nice system idle iowait irq softirq steal …`: everything but idle and iowait.
pub fn parse_machine_busy(line: &str) -> Option<u64> {
    let mut f = line.strip_prefix("cpu ")?.split_ascii_whitespace().map(|v| v.parse::<u64>().ok());
    let mut next = || f.next().flatten();
    let (user, nice, system, _idle, _iowait) = (next()?, next()?, next()?, next()?, next()?);
    let (irq, softirq) = (next()?, next()?);
    let steal = next().unwrap_or(0);
    Some(user + nice + system + irq + softirq + steal)
}

/// CPU and memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was taken.
    pub at: std::time::Instant,
    /// CPU time used so far.
    pub cpu: Option<Duration>,
    /// The part of it spent in the kernel (stime).
    pub sys: Option<Duration>,
    /// Time spent waiting for a CPU so far.
    pub wait: Option<Duration>,
}

impl Sample {
    /// Reads `pid` now.
    pub fn take(pid: Pid) -> Self {
        let times = cpu_times(pid);
        Sample {
            at: std::time::Instant::now(),
            cpu: times.map(|(total, _)| total),
            sys: times.map(|(_, sys)| sys),
            wait: runqueue_wait(pid),
        }
    }

    /// CPU use between `self` and `later` as a percentage of one core.
    pub fn cpu_pct_until(&self, later: &Sample) -> Option<f64> {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let used = later.cpu?.checked_sub(self.cpu?)?.as_secs_f64();
        (wall > 0.0).then(|| used / wall * 100.0)
    }

    /// Time spent runnable but not running between `self` and `later`, % of the wall time
    /// (summed over threads).
    pub fn wait_pct_until(&self, later: &Sample) -> Option<f64> {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let waited = later.wait?.checked_sub(self.wait?)?.as_secs_f64();
        (wall > 0.0).then(|| waited / wall * 100.0)
    }

    /// CPU time used between `self` and `later`.
    pub fn cpu_until(&self, later: &Sample) -> Option<Duration> {
        later.cpu?.checked_sub(self.cpu?)
    }

    /// Kernel CPU time used between `self` and `later`.
    pub fn sys_until(&self, later: &Sample) -> Option<Duration> {
        later.sys?.checked_sub(self.sys?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (odeon host) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 \
                    123 456 789";
        assert_eq!(parse_stat_ticks(stat), Some((250, 75)));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tnode\nVmPeak:\t  9000 kB\nVmRSS:\t   51234 kB\nThreads:\t7\n";
        assert_eq!(parse_vm_rss(status), Some(51234));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn schedstat_wait_is_the_second_field() {
        assert_eq!(parse_schedstat_wait("863086 1144474 3\n"), Some(1_144_474));
        assert_eq!(parse_schedstat_wait("1"), None);
        assert!(runqueue_wait(Pid::SelfProcess).is_some());
    }

    #[test]
    fn machine_busy_skips_idle_and_iowait() {
        assert_eq!(parse_machine_busy("cpu  100 5 20 9000 50 1 2 3 0 0"), Some(131));
        assert_eq!(parse_machine_busy("cpu0 1 2 3 4 5 6 7"), None);
        assert!(machine_busy().is_some());
    }

    #[test]
    fn own_process_is_readable() {
        assert!(cpu_time(Pid::SelfProcess).is_some());
        assert!(rss_kib(Pid::SelfProcess).unwrap() > 0);
    }
}
