//! The few libc calls the bench needs, each a safe wrapper around one syscall.
//!
//! This is the crate's only `unsafe`: every call below takes plain integers or a pointer to a
//! local struct, so there is no aliasing or lifetime to get wrong.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns `(soft, hard)` after the change.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit read by the kernel only during the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = raised;
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes an integer name and has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// Sends `signal` to every process in process group `pgid`.
pub fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| io::Error::other("pid out of range"))?;
    if pgid <= 1 {
        return Err(io::Error::other("refusing to signal process group <= 1"));
    }
    // SAFETY: kill takes integers; a negative pid addresses exactly the group we created.
    if unsafe { libc::kill(-pgid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the child get SIGKILL when the spawning thread dies (e.g. the bench is killed with
/// Ctrl-C before its guards can run), so no server outlives the bench.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl, which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub use libc::{SIGKILL, SIGTERM};
