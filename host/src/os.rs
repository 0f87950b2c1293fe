//! What the host asks of the operating system: enough file descriptors for its clients, and
//! heap pages it no longer uses handed back. The only `unsafe` in the host, each call with its
//! reason.

/// Raises the soft limit on open files to the hard limit, since each client is a socket (a
/// default soft limit of 1024 would cap a host at about a thousand players). Returns the limit
/// in force.
#[allow(unsafe_code)]
pub fn raise_open_files_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct through a pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one rlimit struct from a pointer to a live local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Some(lim.rlim_cur)
}

/// Hands the heap pages freed after a plugin compilation back to the OS. Cranelift allocates
/// tens of megabytes while compiling on its worker threads, and glibc keeps what they free in
/// per-thread arenas; without this an idle host holds about 15 MiB it will not use again.
#[allow(unsafe_code)]
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the kernel; it
    // takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
