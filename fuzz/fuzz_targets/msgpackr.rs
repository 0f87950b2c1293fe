//! A message payload through the msgpackr normaliser, which must stay within its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odeon_protocol::msgpackr;

fuzz_target!(|bytes: &[u8]| {
    const MAX: usize = 256 * 1024;
    if let Ok(out) = msgpackr::normalize_within(bytes, MAX) {
        assert!(out.len() <= MAX);
    }
});
