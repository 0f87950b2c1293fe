//! Load-time checks of a plugin: its imports against the allow-list (WASI without files,
//! network or processes, and this ABI's host functions with their exact signatures), its exports,
//! and its manifest.

use odeon_protocol::abi::{self, Manifest};
use wasmtime::{ExternType, Module, ValType};

use super::PluginError;

/// WASI functions a guest may import. They are all harmless without preopens or environment;
/// everything else in WASI (files, sockets, …) is refused at load.
const WASI_ALLOWED: &[&str] = &[
    "fd_write",
    "fd_close",
    "fd_fdstat_get",
    "fd_seek",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "proc_exit",
    "random_get",
    "clock_time_get",
    "clock_res_get",
    "sched_yield",
];

pub(super) fn check_imports(module: &Module) -> Result<(), PluginError> {
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        let refuse =
            |reason: String| PluginError::Import { module: m.to_string(), name: name.to_string(), reason };
        match m {
            "wasi_snapshot_preview1" if WASI_ALLOWED.contains(&name) => {}
            "wasi_snapshot_preview1" => {
                return Err(refuse("guests get no filesystem, network or processes".into()));
            }
            abi::IMPORT_MODULE => {
                let expected: (&[ValKind], &[ValKind]) = match name {
                    abi::imports::LOG => (&[ValKind::I32, ValKind::I32, ValKind::I32], &[]),
                    abi::imports::NOW_MS => (&[], &[ValKind::I64]),
                    _ => return Err(refuse("not a host function of this ABI".into())),
                };
                let ExternType::Func(f) = import.ty() else {
                    return Err(refuse("not a function".into()));
                };
                if !signature_is(&f, expected) {
                    return Err(refuse(format!("wrong signature {f:?}")));
                }
            }
            other if other.starts_with("odeon_room_v") => {
                return Err(refuse(format!(
                    "plugin was built for ABI {other}; this host implements {}",
                    abi::IMPORT_MODULE
                )));
            }
            _ => return Err(refuse("unknown import module".into())),
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValKind {
    I32,
    I64,
}

fn signature_is(f: &wasmtime::FuncType, (params, results): (&[ValKind], &[ValKind])) -> bool {
    let kind = |v: ValType| match v {
        ValType::I32 => Some(ValKind::I32),
        ValType::I64 => Some(ValKind::I64),
        _ => None,
    };
    let p: Vec<_> = f.params().map(kind).collect();
    let r: Vec<_> = f.results().map(kind).collect();
    p.len() == params.len()
        && r.len() == results.len()
        && p.iter().zip(params).all(|(a, b)| *a == Some(*b))
        && r.iter().zip(results).all(|(a, b)| *a == Some(*b))
}

pub(super) fn check_exports(module: &Module) -> Result<(), PluginError> {
    use ValKind::{I32, I64};
    let required: [(&'static str, &[ValKind], &[ValKind]); 5] = [
        (abi::exports::ABI_VERSION, &[], &[I32]),
        (abi::exports::ALLOC, &[I32], &[I32]),
        (abi::exports::MANIFEST, &[], &[I64]),
        (abi::exports::AUTH, &[I32, I32], &[I64]),
        (abi::exports::EVENTS, &[I32, I32], &[I64]),
    ];
    for (name, params, results) in required {
        match module.get_export(name) {
            Some(ExternType::Func(f)) if signature_is(&f, (params, results)) => {}
            Some(ExternType::Func(f)) => {
                return Err(PluginError::Export { name, reason: format!("wrong signature {f:?}") });
            }
            Some(_) => return Err(PluginError::Export { name, reason: "not a function".into() }),
            None => {
                return Err(PluginError::Export {
                    name,
                    reason: "missing (was the room exported with odeon_guest::export_room!?)".into(),
                });
            }
        }
    }
    // Live migration's exports are optional (modules built before it are never migrated), but
    // when present their signatures are checked like the rest.
    let optional: [(&'static str, &[ValKind], &[ValKind]); 2] =
        [(abi::exports::MIGRATE_OUT, &[], &[I64]), (abi::exports::MIGRATE_IN, &[I32, I32], &[I64])];
    for (name, params, results) in optional {
        match module.get_export(name) {
            None => {}
            Some(ExternType::Func(f)) if signature_is(&f, (params, results)) => {}
            Some(_) => return Err(PluginError::Export { name, reason: "wrong signature or kind".into() }),
        }
    }
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => Ok(()),
        _ => Err(PluginError::Export { name: "memory", reason: "missing memory export".into() }),
    }
}

/// Listing fields that cannot be filter keys, as in Colyseus.
const RESERVED_FILTERS: &[&str] =
    &["clients", "locked", "private", "metadata", "name", "processId", "roomId"];

pub(super) fn check_manifest(m: &Manifest) -> Result<(), PluginError> {
    let valid_name = !m.name.is_empty()
        && m.name.len() <= 64
        && m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(PluginError::Manifest(format!("room name {:?} must be 1–64 of [A-Za-z0-9_-]", m.name)));
    }
    if let Some(bad) = m.filter_by.iter().find(|k| RESERVED_FILTERS.contains(&k.as_str())) {
        return Err(PluginError::Manifest(format!("filterBy key {bad:?} is reserved")));
    }
    let defaults: Result<serde_json::Value, _> = rmp_serde::from_slice(&m.default_options);
    match defaults {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(PluginError::Manifest("default options must be a map".into())),
    }
}
