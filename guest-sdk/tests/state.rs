//! A room's declared state and user data: the SDK creates, announces and encodes the state, the
//! room changes it as a plain value, and each client's user data lives as long as its seat.

use odeon_guest::prelude::*;
use odeon_guest::testing::{Effect, ROOM_LOCKED, TestRoom};
use serde::Deserialize;
use serde_json::json;

#[derive(Schema, Default)]
pub struct Player {
    name: String,
    move_count: u32,
}

#[derive(Schema, Default)]
pub struct Table {
    turn: String,
    board: ArraySchema<u8>,
    players: MapSchema<Player>,
}

/// What the room remembers of each client.
#[derive(Default, Debug, PartialEq)]
pub struct Seat {
    mark: u8,
    joins: u32,
}

pub struct Game;

#[derive(Deserialize)]
struct Move {
    index: usize,
}

impl Room for Game {
    const NAME: &'static str = "game";
    type State = Table;
    type UserData = Seat;

    fn on_create(ctx: &mut Ctx<Table, Seat>, _options: Payload) -> Result<Self, RoomError> {
        ctx.state.board.extend([0u8; 9]);
        Ok(Game)
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx<Table, Seat>,
        client: &Client,
        _: Payload,
        _: Payload,
    ) -> Result<(), RoomError> {
        if client.session_id() == "banned" {
            return Err(RoomError::new("no"));
        }
        let mark = ctx.clients().len() as u8;
        let seat = ctx.user_data_mut(client);
        seat.mark = mark;
        seat.joins += 1;
        let player = Player { name: client.session_id().to_uppercase(), move_count: 0 };
        ctx.state.players.insert(client.session_id(), player);
        if ctx.state.turn.is_empty() {
            ctx.state.turn = client.session_id().into();
        }
        Ok(())
    }

    fn on_drop(&mut self, ctx: &mut Ctx<Table, Seat>, client: &Client, _code: u16) {
        ctx.allow_reconnection(client, 20);
    }

    fn on_leave(&mut self, ctx: &mut Ctx<Table, Seat>, client: &Client, _code: u16) {
        assert!(ctx.user_data(client).is_some(), "on_leave still sees the user data");
        ctx.state.players.remove(client.session_id());
    }

    fn handlers(on: &mut Handlers<Self>) {
        on.message("move", Self::play);
    }
}

impl Game {
    fn play(
        &mut self,
        ctx: &mut Ctx<Table, Seat>,
        client: &Client,
        Move { index }: Move,
    ) -> Result<(), Reject> {
        let mark = ctx.user_data(client).ok_or("not seated")?.mark;
        let cell = ctx.state.board.get_mut(index).ok_or("no such cell")?;
        *cell = mark;
        ctx.state.players.get_mut(client.session_id()).ok_or("no player")?.move_count += 1;
        ctx.state.turn = "b".into();
        Ok(())
    }
}

export_room!(Game);

#[test]
fn the_sdk_creates_and_announces_the_declared_state() {
    let mut room = TestRoom::<Game>::create(()).unwrap();
    let effects = room.take_effects();
    assert!(
        effects.iter().any(|e| matches!(e, Effect::SetSerializer { .. })),
        "a room with state is announced with the schema serializer: {effects:?}"
    );
    assert_eq!(room.state_json(), r#"{"turn":"","board":[0,0,0,0,0,0,0,0,0],"players":{}}"#);
}

#[test]
fn hooks_change_the_state_as_plain_values_and_the_change_is_announced() {
    let mut room = TestRoom::<Game>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.take_effects();
    room.message("a", "move", &json!({"index": 4}));
    assert!(room.take_effects().contains(&Effect::StateChanged));
    // camelCase on the wire by default.
    let json = r#"{"turn":"b","board":[0,0,0,0,1,0,0,0,0],"players":{"a":{"name":"A","moveCount":1}}}"#;
    assert_eq!(room.state_json(), json);
    room.message("a", "move", &json!({"index": 9}));
    assert_eq!(room.errors_to("a"), [(Reject::DEFAULT_CODE, "no such cell".to_owned())]);
    // The test host patches after every call, so a message that changes nothing announces
    // nothing.
    room.message("a", "move", &json!({"index": 9}));
    assert!(!room.take_effects().contains(&Effect::StateChanged));
    room.message("a", "move", &json!({"index": 4}));
    assert!(room.take_effects().contains(&Effect::StateChanged), "the move count changed");
}

#[test]
fn user_data_lives_as_long_as_the_seat() {
    let mut room = TestRoom::<Game>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.join("b", ()).unwrap();
    assert_eq!(room.user_data("a"), Some(&Seat { mark: 1, joins: 1 }));
    assert_eq!(room.user_data("b"), Some(&Seat { mark: 2, joins: 1 }));
    // Kept while a dropped client may come back, and there when it does.
    room.drop_client("b", 1006);
    assert_eq!(room.user_data("b"), Some(&Seat { mark: 2, joins: 1 }));
    room.reconnect("b");
    room.message("b", "move", &json!({"index": 0}));
    assert_eq!(room.state().board[0], 2);
    // Gone once the client has left, and never kept for a refused one.
    room.leave("a", 4000);
    assert_eq!(room.user_data("a"), None);
    assert!(room.join("banned", ()).is_err());
    assert_eq!(room.user_data("banned"), None);
    // A client that joins again starts afresh.
    room.join("a", ()).unwrap();
    assert_eq!(room.user_data("a"), Some(&Seat { mark: 2, joins: 1 }));
}

#[test]
fn each_client_holds_the_state_it_decoded_from_its_frames() {
    let mut room = TestRoom::<Game>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.message("a", "move", &json!({"index": 2}));
    room.join("b", ()).unwrap();
    // `b` joined with a full state, `a` followed the patches: both hold the room's state.
    assert_eq!(room.client_state("a"), room.state_json());
    assert_eq!(room.client_state("b"), room.state_json());
    room.drop_client("b", 1006);
    room.message("a", "move", &json!({"index": 3}));
    room.reconnect("b");
    assert_eq!(room.client_state("b"), room.state_json(), "back with a full state");
    room.leave("a", 4000);
    let json: serde_json::Value = serde_json::from_str(&room.client_state("b")).unwrap();
    assert_eq!(json["players"], json!({"b": {"name": "B", "moveCount": 0}}));
    assert_eq!(json["board"][2], 1);
}

#[test]
#[should_panic(expected = "a is not connected")]
fn a_client_that_left_has_no_state() {
    let mut room = TestRoom::<Game>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.leave("a", 4000);
    room.client_state("a");
}

/// A room for two, whose dropped clients keep their seats 10 seconds (the default `on_drop`).
pub struct Duel;

impl Room for Duel {
    const NAME: &'static str = "duel";
    const RECONNECT_SECS: u32 = 10;
    type State = ();
    type UserData = ();

    fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        ctx.set_max_clients(2);
        Ok(Duel)
    }
}

#[test]
fn joins_past_max_clients_are_refused_as_the_host_refuses_them() {
    let mut room = TestRoom::<Duel>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.join("b", ()).unwrap();
    let full = room.join("c", ()).unwrap_err();
    assert_eq!(full, RoomError::with_code(ROOM_LOCKED, r#"room "test-room" is locked"#));
    // A seat kept for a reconnection still counts; a seat given up does not.
    room.drop_client("b", 1006);
    assert_eq!(room.allowed_reconnection("b"), Some(10));
    assert!(room.join("c", ()).is_err());
    room.leave("b", 1006);
    room.join("c", ()).unwrap();
    assert_eq!(room.clients(), ["a", "c"]);
}
