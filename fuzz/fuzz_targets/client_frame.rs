//! A client's WebSocket message, as the host parses it under each protocol profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odeon_protocol::frame;
use odeon_protocol::profile::Profile;

fuzz_target!(|bytes: &[u8]| {
    for profile in [Profile::V0_16, Profile::V0_17, Profile::V0_18] {
        let _ = frame::parse_client(bytes, profile);
    }
});
