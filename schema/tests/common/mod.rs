//! What the encoder test files share: patches written as hex.

use odeon_schema::{Schema, StateEncoder};

/// Bytes as space-separated hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Asserts a patch, written as space-separated hex ("" for no patch).
#[track_caller]
pub fn check_patch<T: Schema>(enc: &mut StateEncoder<T>, expected: &str) {
    assert_eq!(enc.patch().map(|p| hex(&p)).unwrap_or_default(), expected);
}
