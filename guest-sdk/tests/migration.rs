//! Live migration through the SDK, as the host runs it (`TestRoom::migrate`): what moves, and
//! every reason a room stays on its old code.

use odeon_guest::prelude::*;
use odeon_guest::testing::TestRoom;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Schema, Default, Serialize, Deserialize)]
struct Board {
    cells: MapSchema<u32>,
}

/// Version 1: counts ticks of an interval timer into `cells["ticks"]` and each client's
/// messages, and keeps a private message count.
struct V1 {
    messages: u32,
}

impl Room for V1 {
    const NAME: &'static str = "counter";
    type State = Board;
    type UserData = ();

    fn on_create(ctx: &mut Ctx<Board>, _options: Payload) -> Result<Self, RoomError> {
        ctx.set_interval(100);
        Ok(V1 { messages: 0 })
    }

    fn on_message(&mut self, ctx: &mut Ctx<Board>, client: &Client, _message: Message) {
        self.messages += 1;
        ctx.state.cells.insert(client.session_id(), self.messages);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Board>, _timer: TimerId) {
        let ticks = ctx.state.cells.get("ticks").copied().unwrap_or(0);
        ctx.state.cells.insert("ticks", ticks + 1);
    }

    fn migrate_out(&mut self, ctx: &Ctx<Board>) -> Result<Vec<u8>, RoomError> {
        migration::encode(&(&ctx.state, self.messages))
    }
}

/// Version 2: the same state; ticks count by ten, and it tells everyone it took over.
struct V2 {
    messages: u32,
    from: u32,
}

impl Room for V2 {
    const NAME: &'static str = "counter";
    type State = Board;
    type UserData = ();
    const VERSION: u32 = 2;

    fn on_create(_ctx: &mut Ctx<Board>, _options: Payload) -> Result<Self, RoomError> {
        Err(RoomError::new("only migrated here"))
    }

    fn on_timer(&mut self, ctx: &mut Ctx<Board>, _timer: TimerId) {
        *ctx.state.cells.get_mut("ticks").expect("v1 counted ticks") += 10;
    }

    fn migrate_in(ctx: &mut Ctx<Board>, from: Migration) -> Result<Self, RoomError> {
        let messages;
        (ctx.state, messages) = from.decode::<(Board, u32)>()?;
        let everyone: Vec<Client> = ctx.clients().to_vec();
        for client in &everyone {
            ctx.send(client, "upgraded", &from.version());
        }
        Ok(V2 { messages, from: from.version() })
    }
}

#[test]
fn state_clients_timers_and_private_data_move_to_the_new_code() {
    let mut room = TestRoom::<V1>::create(()).unwrap();
    room.join("a", json!({})).unwrap();
    room.join("b", json!({})).unwrap();
    room.message_empty("a", "hit");
    room.message_empty("b", "hit");
    room.advance(250);
    let mut room = room.migrate::<V2>().expect("v1 moves to v2");
    assert_eq!(room.room().from, 1);
    assert_eq!(room.room().messages, 2);
    assert_eq!(room.sent_to::<u32>("a", "upgraded"), [1]);
    assert_eq!(room.sent_to::<u32>("b", "upgraded"), [1]);
    assert_eq!(room.state_json(), r#"{"cells":{"a":1,"b":2,"ticks":2}}"#);
    // The interval v1 set now fires into v2's hook.
    room.advance(100);
    assert_eq!(room.state().cells.get("ticks"), Some(&12));
}

/// A room without the hooks.
struct Plain;

impl Room for Plain {
    const NAME: &'static str = "plain";
    type State = ();
    type UserData = ();

    fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        Ok(Plain)
    }
}

#[test]
fn a_room_without_hooks_is_not_migrated_and_says_so() {
    let room = TestRoom::<Plain>::create(()).unwrap();
    let err = room.migrate::<Plain>().err().expect("no hooks, no migration");
    assert!(err.contains("no migration hooks"), "{err}");
}

#[derive(Schema, Default, Serialize, Deserialize)]
struct WiderBoard {
    cells: MapSchema<u32>,
    round: u8,
}

/// A v2 whose state gained a field: clients cannot follow it.
struct Wider;

impl Room for Wider {
    const NAME: &'static str = "counter";
    type State = WiderBoard;
    type UserData = ();

    fn on_create(_ctx: &mut Ctx<WiderBoard>, _options: Payload) -> Result<Self, RoomError> {
        Err(RoomError::new("only migrated here"))
    }

    fn migrate_in(ctx: &mut Ctx<WiderBoard>, from: Migration) -> Result<Self, RoomError> {
        let (board, _messages) = from.decode::<(Board, u32)>()?;
        for (key, value) in board.cells.iter() {
            ctx.state.cells.insert(key, *value);
        }
        Ok(Wider)
    }
}

#[test]
fn a_schema_change_is_refused() {
    let mut room = TestRoom::<V1>::create(()).unwrap();
    room.join("a", json!({})).unwrap();
    room.message_empty("a", "hit");
    let err = room.migrate::<Wider>().err().expect("the schema changed");
    assert!(err.contains("schema"), "{err}");
}

/// A v2 that restores another state than the one clients hold (it forgets to restore any).
struct Forgetful;

impl Room for Forgetful {
    const NAME: &'static str = "counter";
    type State = Board;
    type UserData = ();

    fn on_create(_ctx: &mut Ctx<Board>, _options: Payload) -> Result<Self, RoomError> {
        Err(RoomError::new("only migrated here"))
    }

    fn migrate_in(_ctx: &mut Ctx<Board>, _from: Migration) -> Result<Self, RoomError> {
        Ok(Forgetful)
    }
}

#[test]
fn a_restored_state_that_differs_from_the_clients_is_refused() {
    let mut room = TestRoom::<V1>::create(()).unwrap();
    room.join("a", json!({})).unwrap();
    room.message_empty("a", "hit");
    let err = room.migrate::<Forgetful>().err().expect("the state differs");
    assert!(err.contains("differs") || err.contains("lacks"), "{err}");
}

/// A v2 whose hook refuses.
struct Picky;

impl Room for Picky {
    const NAME: &'static str = "counter";
    type State = Board;
    type UserData = ();

    fn on_create(_ctx: &mut Ctx<Board>, _options: Payload) -> Result<Self, RoomError> {
        Ok(Picky)
    }

    fn migrate_in(_ctx: &mut Ctx<Board>, from: Migration) -> Result<Self, RoomError> {
        Err(RoomError::new(format!("version {} is too old", from.version())))
    }
}

#[test]
fn a_hook_error_is_the_reason() {
    let room = TestRoom::<V1>::create(()).unwrap();
    let err = room.migrate::<Picky>().err().expect("the hook refused");
    assert_eq!(err, "version 1 is too old");
}
