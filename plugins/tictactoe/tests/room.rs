//! The room played in `TestRoom`: a whole game, every refusal, a rematch, a player who drops
//! and comes back, and one who leaves for good.

use odeon_guest::INVALID_PAYLOAD;
use odeon_guest::Room;
use odeon_guest::testing::{ROOM_LOCKED, RequestStatus, TestRoom};
use serde_json::{Value as Json, json};
use tictactoe::*;

/// A room where `a` (mark 1, to move) and `b` (mark 2) have joined.
fn game() -> TestRoom<TicTacToe> {
    let mut room = TestRoom::<TicTacToe>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.join("b", ()).unwrap();
    room
}

/// `moves` played in turn, from `a`'s move at `moves[0]` on.
fn play(room: &mut TestRoom<TicTacToe>, moves: &[usize]) {
    for (i, index) in moves.iter().enumerate() {
        room.message(["a", "b"][i % 2], "move", &json!({ "index": index }));
    }
}

/// The state as `sid`'s client decoded it, checked against the room's own.
fn seen_by(room: &TestRoom<TicTacToe>, sid: &str) -> Json {
    assert_eq!(room.client_state(sid), room.state_json(), "what {sid} decoded is the room's state");
    serde_json::from_str(&room.client_state(sid)).unwrap()
}

#[test]
fn a_game_starts_when_the_second_player_joins_and_ends_with_a_line() {
    let mut room = TestRoom::<TicTacToe>::create(()).unwrap();
    assert_eq!(room.max_clients(), Some(2));
    room.join("a", ()).unwrap();
    assert_eq!(seen_by(&room, "a")["turn"], "", "one player: no game yet");
    room.join("b", ()).unwrap();
    let state = seen_by(&room, "b");
    assert_eq!((state["turn"].clone(), state["players"].clone()), (json!("a"), json!({"a": 1, "b": 2})));
    play(&mut room, &[0, 3, 1, 4]);
    assert_eq!(seen_by(&room, "a")["turn"], "a");
    play(&mut room, &[2]);
    let state = seen_by(&room, "b");
    assert_eq!(state["board"], json!([1, 1, 1, 2, 2, 0, 0, 0, 0]));
    assert_eq!((state["winner"].clone(), state["turn"].clone()), (json!("a"), json!("")));
    assert!(room.errors_to("a").is_empty() && room.errors_to("b").is_empty());
    assert_eq!(room.join("c", ()).unwrap_err().code, Some(ROOM_LOCKED), "two players at most");
}

#[test]
fn a_full_board_without_a_line_is_a_draw() {
    let mut room = game();
    play(&mut room, &[0, 1, 2, 4, 3, 5, 7, 6, 8]);
    assert_eq!(seen_by(&room, "a")["winner"], "draw");
}

#[test]
fn a_bad_move_is_refused_to_its_sender_and_changes_nothing() {
    let mut room = TestRoom::<TicTacToe>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.message("a", "move", &json!({"index": 0}));
    room.join("b", ()).unwrap();
    room.message("b", "move", &json!({"index": 0}));
    room.message("a", "move", &json!({"index": 9}));
    room.message("a", "move", &json!({"index": -1}));
    room.message("a", "move", &json!({"index": 4}));
    room.message("b", "move", &json!({"index": 4}));
    let errors = |sid| room.errors_to(sid).into_iter().map(|(code, _)| code).collect::<Vec<_>>();
    assert_eq!(errors("a"), [NOT_STARTED, NO_SUCH_CELL, INVALID_PAYLOAD]);
    assert_eq!(errors("b"), [NOT_YOUR_TURN, CELL_TAKEN]);
    assert_eq!(room.errors_to("b")[1].1, "cell 4 is taken");
    assert_eq!(seen_by(&room, "a")["board"], json!([0, 0, 0, 0, 1, 0, 0, 0, 0]));
    // A request of the same move is rejected with the reason.
    let refused = room.request("a", "move", &json!({"index": 0}));
    assert_eq!(refused.status, RequestStatus::Rejected);
    assert_eq!(refused.decode::<Json>(), Some(json!({"code": NOT_YOUR_TURN, "message": "not your turn"})));
    let played = room.request("b", "move", &json!({"index": 0}));
    assert_eq!((played.status, played.payload), (RequestStatus::Ok, None));
}

#[test]
fn moves_after_the_end_are_refused_until_both_players_want_a_rematch() {
    let mut room = game();
    let early = room.request("a", "rematch", &());
    assert_eq!(early.decode::<Json>(), Some(json!({"code": NOT_OVER, "message": "the game is not over"})));
    play(&mut room, &[0, 3, 1, 4, 2]);
    room.message("b", "move", &json!({"index": 8}));
    assert_eq!(room.errors_to("b"), [(GAME_OVER, "the game is over".to_owned())]);
    let first = room.request("a", "rematch", &());
    assert_eq!((first.status, first.decode::<Json>()), (RequestStatus::Ok, Some(json!(false))));
    assert_eq!(seen_by(&room, "b")["winner"], "a", "one wish is not a rematch");
    let second = room.request("b", "rematch", &());
    assert_eq!(second.decode::<Json>(), Some(json!(true)));
    let state = seen_by(&room, "a");
    assert_eq!(state["board"], json!([0, 0, 0, 0, 0, 0, 0, 0, 0]));
    // The marks swap: `b` is 1 now, and starts.
    assert_eq!(state["players"], json!({"a": 2, "b": 1}));
    assert_eq!((state["winner"].clone(), state["turn"].clone()), (json!(""), json!("b")));
    room.message("b", "move", &json!({"index": 8}));
    assert_eq!(seen_by(&room, "a")["board"][8], 1);
    // Wishes are spent: the next rematch needs both again.
    play(&mut room, &[7, 0, 6, 4]);
    assert_eq!(seen_by(&room, "a")["winner"], "b", "0, 4 and 8");
    assert_eq!(room.request("a", "rematch", &()).decode::<Json>(), Some(json!(false)));
}

#[test]
fn a_dropped_player_keeps_the_seat_and_plays_on_when_back() {
    let mut room = game();
    play(&mut room, &[0, 4]);
    room.drop_client("a", 1006);
    assert_eq!(room.allowed_reconnection("a"), Some(TicTacToe::RECONNECT_SECS));
    assert!(room.join("c", ()).is_err(), "the seat is kept");
    room.message("b", "move", &json!({"index": 8}));
    assert_eq!(room.errors_to("b")[0].0, NOT_YOUR_TURN);
    room.reconnect("a");
    assert_eq!(seen_by(&room, "a")["turn"], "a", "back with the whole state");
    room.message("a", "move", &json!({"index": 8}));
    assert_eq!(seen_by(&room, "b")["board"], json!([1, 0, 0, 0, 2, 0, 0, 0, 1]));
}

#[test]
fn a_player_who_leaves_for_good_forfeits() {
    let mut room = game();
    play(&mut room, &[0]);
    room.drop_client("b", 1006);
    room.leave("b", 1006);
    let state = seen_by(&room, "a");
    assert_eq!((state["winner"].clone(), state["players"].clone()), (json!("a"), json!({"a": 1})));
    // A newcomer takes the free seat and a new game starts.
    room.join("c", ()).unwrap();
    let state = seen_by(&room, "c");
    assert_eq!((state["turn"].clone(), state["players"]["c"].clone()), (json!("a"), json!(2)));
    assert_eq!(state["board"], json!([0, 0, 0, 0, 0, 0, 0, 0, 0]));
}
