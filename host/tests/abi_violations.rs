//! Guests that break the ABI on purpose: out-of-bounds pointers and lengths wherever the host
//! reads or writes guest memory, and records that do not decode. The SDK cannot produce these,
//! so they are hand-written modules. Each is refused at load with its reason, or fails only its
//! own call with a clear error; the host never panics and never reads outside the guest.

use std::sync::Arc;
use std::time::Duration;

use odeon_host::plugins::{GuestError, GuestLimits, PluginError, Plugins};
use odeon_protocol::abi::{self, Batch, Event, Manifest};

fn limits() -> GuestLimits {
    GuestLimits {
        memory_bytes: 8 << 20,
        call_deadline: Duration::from_millis(100),
        max_instances: 8,
        ..Default::default()
    }
}

/// `bytes` as a WAT string literal.
fn wat_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A one-page module whose manifest is valid (at offset 1024) unless `manifest` overrides what
/// `odeon_manifest` returns; `alloc` and `events` are the bodies of those exports.
fn module(manifest: Option<i64>, alloc: &str, events: &str) -> Vec<u8> {
    let record = abi::encode(&Manifest {
        name: "broken".into(),
        filter_by: vec![],
        sort_by: vec![],
        default_options: vec![0x80],
        has_auth: false,
    });
    let packed = manifest.unwrap_or(abi::pack(1024, record.len() as u32));
    wat::parse_str(format!(
        r#"(module
            (import "{module}" "log" (func $log (param i32 i32 i32)))
            (memory (export "memory") 1)
            (data (i32.const 1024) "{record}")
            (func (export "odeon_abi_version") (result i32) i32.const {abi})
            (func (export "odeon_alloc") (param i32) (result i32) {alloc})
            (func (export "odeon_manifest") (result i64) i64.const {packed})
            (func (export "odeon_auth") (param i32 i32) (result i64) i64.const 0)
            (func (export "odeon_events") (param i32 i32) (result i64) {events}))"#,
        module = abi::IMPORT_MODULE,
        record = wat_string(&record),
        abi = abi::ABI_VERSION,
    ))
    .unwrap()
}

/// Loads `bytes`, creates an instance and delivers one batch; the call's result.
async fn one_call(bytes: Vec<u8>) -> Result<abi::Effects, GuestError> {
    let plugins = Plugins::new(limits()).unwrap();
    let version = plugins.load("broken.wasm", bytes).await.expect("the module loads");
    let mut guest = version.instantiate(Arc::from("broken-room"), limits()).await.unwrap();
    let batch = Batch { now_ms: 0, events: vec![Event::FullState] };
    guest.events(&batch, limits().call_deadline).await
}

#[tokio::test]
async fn a_manifest_pointer_or_length_outside_memory_is_refused_at_load() {
    let plugins = Plugins::new(limits()).unwrap();
    for packed in [abi::pack(0xffff_0000, 16), abi::pack(1024, u32::MAX), abi::pack(65_530, 16)] {
        let err = plugins.load("broken.wasm", module(Some(packed), "i32.const 2048", "i64.const 0")).await;
        let err = err.unwrap_err();
        assert!(matches!(err, PluginError::Canary(GuestError::Abi(_))), "{err}");
        assert!(err.to_string().contains("outside"), "{err}");
    }
    assert!(plugins.names().is_empty());
}

#[tokio::test]
async fn an_input_buffer_outside_memory_fails_only_that_call() {
    let err = one_call(module(None, "i32.const 0xfffffff0", "i64.const 0")).await.unwrap_err();
    assert!(matches!(err, GuestError::Abi(ref m) if m.contains("outside memory")), "{err}");
}

#[tokio::test]
async fn effects_outside_memory_or_undecodable_fail_only_that_call() {
    let outside = format!("i64.const {}", abi::pack(60_000, 10_000));
    let err = one_call(module(None, "i32.const 2048", &outside)).await.unwrap_err();
    assert!(matches!(err, GuestError::Abi(_)), "{err}");
    assert!(err.to_string().contains("outside"), "{err}");
    // The manifest's bytes are not effects.
    let junk = format!("i64.const {}", abi::pack(1024, 8));
    let err = one_call(module(None, "i32.const 2048", &junk)).await.unwrap_err();
    assert!(matches!(err, GuestError::Abi(ref m) if m.contains("undecodable")), "{err}");
}

#[tokio::test]
async fn a_log_call_outside_memory_traps_that_call() {
    let events = "i32.const 2 i32.const 0xffff0000 i32.const 64 call $log i64.const 0";
    let err = one_call(module(None, "i32.const 2048", events)).await.unwrap_err();
    assert!(matches!(err, GuestError::Trap(ref m) if m.contains("outside guest memory")), "{err}");
}
