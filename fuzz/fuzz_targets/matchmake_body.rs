//! A matchmaking request body, read as the host reads it (`odeon_protocol::matchmake::options`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = odeon_protocol::matchmake::options(bytes);
});
