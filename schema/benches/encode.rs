//! Encoding the arena state (`State{players: map<Player{x, y: number}>}`) with 50 players: the
//! full state a joining client gets, and the patch after every player moved once.
//!
//! `cargo bench -p odeon-schema --bench encode` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use odeon_schema::{MapSchema, Schema, Shared, StateEncoder};

#[derive(Schema, Default)]
struct Player {
    x: f64,
    y: f64,
}

#[derive(Schema, Default)]
struct State {
    players: MapSchema<Player>,
}

const PLAYERS: usize = 50;

fn arena() -> (StateEncoder<State>, Vec<Shared<Player>>) {
    let mut enc = StateEncoder::new(State::default());
    let mut players = Vec::new();
    for i in 0..PLAYERS {
        let p = Shared::new(Player { x: i as f64 * 1.5, y: -(i as f64) });
        enc.state_mut().players_mut().insert(format!("player{i:04}"), p.clone());
        players.push(p);
    }
    enc.full_state();
    (enc, players)
}

fn encode(c: &mut Criterion) {
    let (mut enc, players) = arena();
    let full = enc.full_state();
    println!("full state: {} bytes", full.len());
    c.bench_function("full_state_50", |b| b.iter(|| black_box(enc.full_state())));

    let mut step = 0.0;
    let mut move_all = |players: &[Shared<Player>]| {
        step += 0.25;
        for (i, p) in players.iter().enumerate() {
            let mut p = p.borrow_mut();
            p.set_x(i as f64 + step);
            p.set_y(step * 2.0 - i as f64);
        }
    };
    move_all(&players);
    let patch = enc.patch().unwrap_or_default();
    println!("patch after every player moved: {} bytes", patch.len());
    c.bench_function("patch_50_moved", |b| {
        b.iter(|| {
            move_all(&players);
            black_box(enc.patch())
        })
    });
    c.bench_function("patch_50_idle", |b| b.iter(|| black_box(enc.patch())));
}

criterion_group!(benches, encode);
criterion_main!(benches);
