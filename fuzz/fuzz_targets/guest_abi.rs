//! Records a guest hands the host: its effects, manifest and auth decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odeon_protocol::abi;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(effects) = abi::decode_effects(bytes, 1024) {
        assert!(effects.effects.len() <= 1024);
    }
    let _ = abi::decode::<abi::Manifest>(bytes);
    let _ = abi::decode::<abi::AuthDecision>(bytes);
});
