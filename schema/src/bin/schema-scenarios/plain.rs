//! The `plain` scenario: the state changed as plain Rust values (`state.turn = ..`,
//! `state.board[4] = 1`, `map.get_mut(k)?.x = ..`) rather than through setters, with the root
//! detached from the encoder between patches as a room's state is. Its steps are the plain
//! assignments a Colyseus room makes, so the patches must match the official encoder's.

use odeon_schema::{ArraySchema, MapSchema, Schema, Shared};

use crate::Recorder;

#[derive(Schema, Default)]
struct Seat {
    name: String,
    mark: u8,
}

#[derive(Schema, Default)]
struct Game {
    turn: String,
    round: u32,
    winner: Option<String>,
    board: ArraySchema<u8>,
    scores: MapSchema<i32>,
    seats: MapSchema<Seat>,
    lead: Option<Shared<Seat>>,
}

pub(crate) fn plain() -> String {
    let mut r = Recorder::new(Game { board: [0u8; 9].into_iter().collect(), ..Game::default() });
    r.step_plain("turn=a", |s| s.turn = "a".into());
    r.step_plain("turn=a again", |s| s.turn = "a".into());
    r.step_plain("round,winner", |s| {
        s.round = 2;
        s.winner = Some("b".into());
    });
    r.step_plain("winner=undefined", |s| s.winner = None);
    r.step_plain("board[4]=1", |s| s.board[4] = 1);
    r.step_plain("board[4]=1 again", |s| s.board[4] = 1);
    r.step_plain("board[0]=2,[8]=1", |s| {
        s.board[0] = 2;
        *s.board.get_mut(8).expect("9 cells") = 1;
    });
    r.step_plain("seats a,b", |s| {
        s.seats.insert("a", Seat { name: "ann".into(), mark: 0 });
        s.seats.insert("b", Seat { name: "bob".into(), mark: 0 });
    });
    r.step_plain("a.mark=1", |s| s.seats.get_mut("a").expect("a").mark = 1);
    r.step_plain("scores x,y", |s| {
        s.scores.insert("x", 1);
        s.scores.insert("y", 2);
    });
    r.step_plain("scores.x+=5", |s| *s.scores.get_mut("x").expect("x") += 5);
    r.step_plain("lead=a", |s| s.lead = s.seats.get("a").cloned());
    r.step_plain("lead.name", |s| s.lead.as_ref().expect("lead").borrow_mut().name = "anne".into());
    r.step_plain("lead=undefined", |s| s.lead = None);
    r.step_plain("every mark+1", |s| {
        for mut seat in s.seats.values_mut() {
            seat.mark += 1;
        }
    });
    r.step_plain("board=new", |s| s.board = [0u8; 9].into_iter().collect());
    r.step_plain("every cell=2", |s| {
        for cell in s.board.iter_mut() {
            *cell = 2;
        }
    });
    r.finish("plain")
}
