//! The host imports, and their native stand-ins.
//!
//! On `wasm32` this is the only module that declares imports; on native targets the same functions
//! log to stderr and read the system clock, so rooms run unchanged under [`crate::testing`].

use odeon_protocol::abi::LogLevel;

/// Writes one log line through the host's `log` import.
pub(crate) fn log(level: LogLevel, message: &str) {
    imp::log(level, message);
}

/// The host's wall clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    imp::now_ms()
}

#[cfg(target_arch = "wasm32")]
// Declaring and calling host imports is inherently unsafe; this module is the SDK's single place
// for it and its wrappers only hand the host pointers to live, valid UTF-8 slices.
#[allow(unsafe_code)]
mod imp {
    use odeon_protocol::abi::{IMPORT_MODULE, LogLevel};

    // `wasm_import_module` takes a literal; this keeps it in step with the ABI constant.
    const _: () = assert!(str_eq(IMPORT_MODULE, "odeon_room_v1"));

    #[link(wasm_import_module = "odeon_room_v1")]
    unsafe extern "C" {
        /// # Traps
        /// When `ptr..ptr + len` is outside guest memory or is not UTF-8.
        #[link_name = "log"]
        fn host_log(level: i32, ptr: i32, len: i32);
        #[link_name = "now_ms"]
        safe fn host_now_ms() -> i64;
    }

    pub(super) fn log(level: LogLevel, message: &str) {
        // SAFETY: the pointer and length describe `message`, a live `&str`, for the whole call;
        // wasm32 addresses and lengths fit in `i32`'s 32 bits.
        unsafe { host_log(level as i32, message.as_ptr() as i32, message.len() as i32) }
    }

    pub(super) fn now_ms() -> u64 {
        host_now_ms().max(0) as u64
    }

    const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use odeon_protocol::abi::LogLevel;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub(super) fn log(level: LogLevel, message: &str) {
        eprintln!("[room {level:?}] {message}");
    }

    pub(super) fn now_ms() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}
