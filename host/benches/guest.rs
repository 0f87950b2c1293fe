//! The host's guest boundary under the real engine: what one room costs to create and what one
//! guest call costs, with the compiled example plugins.
//!
//! - `room_create`: instantiate the arena plugin, deliver `Create` (its `on_create`, which also
//!   announces the serializer), drop the instance.
//! - `call_echo_100b`: one `Guest::events` call on an echo room with one `echo` message whose
//!   MessagePack payload is 100 bytes; the room answers with one `Send` of the same bytes.
//! - `batch_50_moves`: one call on an arena room with 50 joined players carrying one `move {x, y}`
//!   per player.
//! - `patch_50_moved`: after those 50 moves, the `Patch` call in which the guest encodes the patch.
//!
//! The plugins come from `$ODEON_PLUGINS_DIR` (default `$CARGO_TARGET_DIR/plugins`, else
//! `target/plugins`), built by `just plugins`. Run from the repository root:
//!
//! `just plugins && cargo bench -p odeon-host --bench guest` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use odeon_host::plugins::{Guest, GuestLimits, PluginVersion, Plugins};
use odeon_protocol::abi::{Batch, Effect, Event, MessageType};
use tokio::runtime::Runtime;

const PLAYERS: usize = 50;

fn plugins_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ODEON_PLUGINS_DIR") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("plugins")
}

/// Loads one compiled plugin (validation and canary included) into `plugins`.
fn load(rt: &Runtime, plugins: &Arc<Plugins>, name: &str) -> Arc<PluginVersion> {
    let path = plugins_dir().join(format!("{name}.wasm"));
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `just plugins` first", path.display()));
    rt.block_on(plugins.load(name, bytes)).unwrap_or_else(|e| panic!("{name}.wasm refused: {e}"))
}

fn batch(events: Vec<Event>) -> Batch {
    Batch { now_ms: 1_700_000_000_000, events }
}

fn create_event(name: &str) -> Event {
    // An empty MessagePack map: no options.
    Event::Create { room_id: format!("bench-{name}"), room_name: name.into(), options: vec![0x80] }
}

fn join(session_id: &str) -> Event {
    Event::Join { session_id: session_id.into(), options: vec![0x80], auth: Vec::new() }
}

fn message(session_id: &str, kind: &str, payload: Vec<u8>) -> Event {
    Event::Message { session_id: session_id.into(), kind: MessageType::Str(kind.into()), payload }
}

/// `{x, y}` as a MessagePack map of two float64, as the official SDK sends a move.
fn move_payload(x: f64, y: f64) -> Vec<u8> {
    let mut p = Vec::with_capacity(23);
    p.extend_from_slice(&[0x82, 0xa1, b'x', 0xcb]);
    p.extend_from_slice(&x.to_be_bytes());
    p.extend_from_slice(&[0xa1, b'y', 0xcb]);
    p.extend_from_slice(&y.to_be_bytes());
    p
}

/// A fresh room: the instance plus its delivered `Create`.
fn room(rt: &Runtime, plugin: &PluginVersion, limits: GuestLimits) -> Guest {
    rt.block_on(async {
        let name = &plugin.manifest.name;
        let mut guest =
            plugin.instantiate(format!("bench-{name}").into(), limits).await.expect("instantiate");
        guest.events(&batch(vec![create_event(name)]), limits.create_deadline).await.expect("on_create");
        guest
    })
}

fn call(rt: &Runtime, guest: &mut Guest, batch: &Batch, deadline: Duration) -> Vec<Effect> {
    rt.block_on(guest.events(batch, deadline)).expect("guest call").effects
}

fn guest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let limits = GuestLimits::default();
    let plugins = Plugins::new(limits).expect("engine");
    let arena = load(&rt, &plugins, "arena");
    let echo = load(&rt, &plugins, "echo");

    // 1. Room creation.
    let effects = {
        let mut guest = rt.block_on(arena.instantiate("bench-arena".into(), limits)).expect("instantiate");
        call(&rt, &mut guest, &batch(vec![create_event("arena")]), limits.create_deadline)
    };
    assert!(effects.iter().any(|e| matches!(e, Effect::SetSerializer { .. })), "arena announces its state");
    c.bench_function("room_create", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut guest = arena.instantiate("bench-arena".into(), limits).await.expect("instantiate");
                let create = batch(vec![create_event("arena")]);
                black_box(guest.events(&create, limits.create_deadline).await.expect("on_create"));
            })
        })
    });

    // 2. One host→guest call carrying 100 bytes of payload.
    let mut echo_room = room(&rt, &echo, limits);
    call(&rt, &mut echo_room, &batch(vec![join("client001")]), limits.call_deadline);
    let mut payload = vec![0xd9, 98]; // str8 of 98 bytes
    payload.resize(100, b'x');
    let one = batch(vec![message("client001", "echo", payload.clone())]);
    let effects = call(&rt, &mut echo_room, &one, limits.call_deadline);
    let echoed = matches!(&effects[..], [Effect::Send { message, .. }]
        if message.payload.as_deref().map(|p| &p[..]) == Some(&payload[..]));
    assert!(echoed, "echo answers with one Send of the same 100 bytes: {effects:?}");
    c.bench_function("call_echo_100b", |b| {
        b.iter(|| black_box(call(&rt, &mut echo_room, &one, limits.call_deadline)))
    });
    drop(echo_room);

    // 3 and 4. The arena with 50 players: a batch of 50 moves, then the patch it causes. Every
    // round moves every player somewhere new and is followed by its patch, as in a live room.
    let mut arena_room = room(&rt, &arena, limits);
    let sessions: Vec<String> = (0..PLAYERS).map(|i| format!("player{i:03}")).collect();
    let joins = batch(sessions.iter().map(|s| join(s)).collect());
    call(&rt, &mut arena_room, &joins, limits.call_deadline);
    call(&rt, &mut arena_room, &batch(vec![Event::FullState]), limits.call_deadline);
    let patch = batch(vec![Event::Patch]);
    call(&rt, &mut arena_room, &patch, limits.call_deadline);

    let mut round = 0u32;
    let mut moves = move || {
        round += 1;
        let step = f64::from(round) * 0.25;
        let events = sessions
            .iter()
            .enumerate()
            .map(|(i, s)| message(s, "move", move_payload(i as f64 + step, step * 2.0 - i as f64)))
            .collect();
        batch(events)
    };

    let first = moves();
    let effects = call(&rt, &mut arena_room, &first, limits.call_deadline);
    assert!(matches!(&effects[..], [Effect::StateChanged]), "50 moves change the state: {effects:?}");
    let effects = call(&rt, &mut arena_room, &patch, limits.call_deadline);
    let Some(Effect::StatePatch(bytes)) = effects.first() else {
        panic!("Patch after 50 moves answers with a StatePatch: {effects:?}")
    };
    println!("patch after every player moved: {} bytes", bytes.len());

    c.bench_function("batch_50_moves", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let input = moves();
                let start = Instant::now();
                black_box(call(&rt, &mut arena_room, &input, limits.call_deadline));
                spent += start.elapsed();
                call(&rt, &mut arena_room, &patch, limits.call_deadline);
            }
            spent
        })
    });
    c.bench_function("patch_50_moved", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let input = moves();
                call(&rt, &mut arena_room, &input, limits.call_deadline);
                let start = Instant::now();
                black_box(call(&rt, &mut arena_room, &patch, limits.call_deadline));
                spent += start.elapsed();
            }
            spent
        })
    });
}

criterion_group!(benches, guest);
criterion_main!(benches);
