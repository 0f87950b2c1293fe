//! What the proxy asks of the operating system: enough file descriptors for its connections.
//! The only `unsafe` in the proxy, each call with its reason.
//!
//! Every relayed client holds two descriptors (its own socket and the one to its host), and a
//! default soft limit of 1024 would let a few hundred idle sockets starve `accept` long before
//! `--max-connections`. So the soft limit is raised to the hard limit at start, and when even
//! the hard limit cannot hold `--max-connections` the cap is lowered to what fits (new clients
//! then get the cap's clear 503 instead of hanging in the listen queue on `EMFILE`).

/// Descriptors kept for everything but relayed connections: stdio, the listeners, the event
/// loop, Redis, certificate reloads, and connections accepted past the cap while they are
/// answered 503.
pub const SPARE_FILES: u64 = 256;

/// The open-file limit after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit found at start.
    pub was: u64,
    /// The soft limit in force now.
    pub soft: u64,
    /// The hard limit (the most the soft limit can be raised to without privileges).
    pub hard: u64,
}

/// Raises the soft limit on open files to the hard limit. `None` when the limit could not be
/// read; when it cannot be raised, the limit in force is returned unchanged.
#[allow(unsafe_code)]
pub fn raise_open_files_limit() -> Option<FileLimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct through a pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let was = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one rlimit struct from a pointer to a live local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Some(FileLimit { was, soft: lim.rlim_cur, hard: lim.rlim_max })
}

/// Descriptors `max_connections` connections need: two each (client and host side) plus
/// [`SPARE_FILES`].
pub fn files_needed(max_connections: usize) -> u64 {
    (max_connections as u64).saturating_mul(2).saturating_add(SPARE_FILES)
}

/// The connection cap that fits in `files` descriptors: `max_connections` when it fits,
/// otherwise as many as fit (at least one).
pub fn connections_within(files: u64, max_connections: usize) -> usize {
    if files >= files_needed(max_connections) {
        return max_connections;
    }
    let fit = files.saturating_sub(SPARE_FILES) / 2;
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, max_connections.max(1))
}

/// Raises the open-file limit and returns the connection cap to serve with: `max_connections`,
/// or less (with a warning saying why and what to do) when the limit cannot hold it.
pub fn fit_connections(max_connections: usize) -> usize {
    let Some(limit) = raise_open_files_limit() else {
        tracing::warn!(
            "open-file limit unreadable; serving with --max-connections {max_connections} unchecked"
        );
        return max_connections;
    };
    tracing::info!(soft = limit.soft, hard = limit.hard, was = limit.was, "open-file limit");
    let cap = connections_within(limit.soft, max_connections);
    if cap < max_connections {
        tracing::warn!(
            "open-file limit {} is below the {} descriptors --max-connections {max_connections} needs \
             (two per relayed client plus {SPARE_FILES}): serving at most {cap} connections. Raise the \
             hard limit (ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=) or lower \
             --max-connections",
            limit.soft,
            files_needed(max_connections),
        );
    }
    cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_kept_when_it_fits_and_lowered_to_what_fits_otherwise() {
        assert_eq!(files_needed(100_000), 200_256);
        assert_eq!(connections_within(1 << 20, 100_000), 100_000);
        assert_eq!(connections_within(200_256, 100_000), 100_000);
        assert_eq!(connections_within(200_255, 100_000), 99_999);
        assert_eq!(connections_within(1024, 100_000), 384);
        assert_eq!(connections_within(1024, 300), 300);
        // Never zero: a tiny limit still serves (and warns).
        assert_eq!(connections_within(10, 100_000), 1);
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_files_limit().expect("getrlimit works");
        assert!(limit.soft >= limit.was);
        // An unlimited hard limit cannot be the soft one; the limit then stays as it was.
        assert!(limit.soft == limit.hard || limit.hard == libc::RLIM_INFINITY, "{limit:?}");
    }
}
