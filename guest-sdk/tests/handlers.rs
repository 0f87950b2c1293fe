//! Typed handlers: one handler per type serves `send` and `request`, its payload is decoded for
//! it, and its `Result` is the sender's answer.

use odeon_guest::INVALID_PAYLOAD;
use odeon_guest::prelude::*;
use odeon_guest::testing::{RequestStatus, TestRoom};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// Counts up by `add {by}` (at most 10); `echo` takes any payload; anything else goes to
/// `on_message`/`on_request`.
#[derive(Default)]
pub struct Counter {
    total: u32,
    untyped: Vec<String>,
}

#[derive(Deserialize)]
struct Add {
    by: u32,
}

const TOO_MUCH: u32 = 4001;

impl Room for Counter {
    const NAME: &'static str = "counter";
    type State = ();
    type UserData = ();

    fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        Ok(Counter::default())
    }

    fn handlers(on: &mut Handlers<Self>) {
        on.message("add", Self::add)
            .message("reset", |room: &mut Self, _: &mut Ctx, _: &Client, (): ()| -> Result<(), Reject> {
                room.total = 0;
                Ok(())
            })
            .message("echo", |_: &mut Self, _: &mut Ctx, _: &Client, p: Payload| -> Result<Json, Reject> {
                Ok(p.decode()?)
            })
            .message("broken", |_: &mut Self, _: &mut Ctx, _: &Client, (): ()| -> Result<(), Reject> {
                Err(Reject::fault(500, "the dice fell off the table"))
            });
    }

    fn on_message(&mut self, _ctx: &mut Ctx, _client: &Client, message: Message) {
        self.untyped.push(message.kind.as_str().unwrap_or("?").to_owned());
    }
}

impl Counter {
    fn add(&mut self, ctx: &mut Ctx, client: &Client, Add { by }: Add) -> Result<u32, Reject> {
        if by > 10 {
            return Err(Reject::with_code(TOO_MUCH, format!("add at most 10, not {by}")));
        }
        self.total += by;
        ctx.broadcast_except("added", &by, client);
        Ok(self.total)
    }
}

export_room!(Counter);

fn room() -> TestRoom<Counter> {
    let mut room = TestRoom::<Counter>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.join("b", ()).unwrap();
    room
}

#[test]
fn a_send_runs_the_handler_and_drops_its_value() {
    let mut room = room();
    room.message("a", "add", &json!({"by": 3}));
    assert_eq!(room.room().total, 3);
    assert_eq!(room.sent_to::<u32>("b", "added"), [3]);
    assert!(room.errors_to("a").is_empty());
    assert!(room.room().untyped.is_empty(), "a typed type never reaches on_message");
}

#[test]
fn a_request_gets_the_value_and_a_unit_handler_answers_without_one() {
    let mut room = room();
    let answer = room.request("a", "add", &json!({"by": 4}));
    assert_eq!((answer.status, answer.decode::<u32>()), (RequestStatus::Ok, Some(4)));
    let reset = room.request("a", "reset", &());
    assert_eq!((reset.status, reset.payload), (RequestStatus::Ok, None));
    assert_eq!(room.room().total, 0);
    let echoed = room.request("b", "echo", &json!({"any": ["thing"]}));
    assert_eq!(echoed.decode::<Json>(), Some(json!({"any": ["thing"]})));
}

#[test]
fn a_refusal_is_an_error_frame_for_a_send_and_rejected_for_a_request() {
    let mut room = room();
    room.message("a", "add", &json!({"by": 11}));
    assert_eq!(room.errors_to("a"), [(TOO_MUCH, "add at most 10, not 11".to_owned())]);
    let rejected = room.request("a", "add", &json!({"by": 12}));
    assert_eq!(rejected.status, RequestStatus::Rejected);
    assert_eq!(
        rejected.decode::<Json>(),
        Some(json!({"code": TOO_MUCH, "message": "add at most 10, not 12"}))
    );
    assert_eq!(room.room().total, 0);
    // The room carries on.
    room.message("a", "add", &json!({"by": 1}));
    assert_eq!(room.room().total, 1);
}

#[test]
fn a_fault_is_an_error_reply_with_name_message_and_code() {
    let mut room = room();
    let failed = room.request("a", "broken", &());
    assert_eq!(failed.status, RequestStatus::Error);
    let want = json!({"name": "Error", "message": "the dice fell off the table", "code": 500});
    assert_eq!(failed.decode::<Json>(), Some(want));
    room.message_empty("b", "broken");
    assert_eq!(room.errors_to("b"), [(500, "the dice fell off the table".to_owned())]);
}

#[test]
fn a_payload_that_does_not_decode_is_answered_not_dropped() {
    let mut room = room();
    room.message("a", "add", &json!({"by": "three"}));
    room.message_empty("a", "add");
    room.message_raw("a", "add", vec![0xc1]);
    let errors = room.errors_to("a");
    assert_eq!(errors.len(), 3, "{errors:?}");
    for (code, message) in &errors {
        assert_eq!(*code, INVALID_PAYLOAD);
        assert!(message.starts_with("add: invalid payload: "), "{message}");
    }
    let failed = room.request("b", "add", &"three");
    assert_eq!(failed.status, RequestStatus::Error);
    let body = failed.decode::<Json>().unwrap();
    assert_eq!((body["name"].clone(), body["code"].clone()), (json!("Error"), json!(INVALID_PAYLOAD)));
    // `()` takes no payload, and refuses one it cannot read as nothing.
    room.message("b", "reset", &json!({"x": 1}));
    assert_eq!(room.errors_to("b")[0].0, INVALID_PAYLOAD);
    assert_eq!(room.room().total, 0);
}

#[test]
fn types_without_a_typed_handler_reach_on_message_and_on_request() {
    let mut room = room();
    room.message_empty("a", "chat");
    assert_eq!(room.room().untyped, ["chat"]);
    let none = room.request("a", "chat", &());
    let message = r#"room "counter" has no onMessage("chat") handler to answer this request."#;
    assert_eq!(none.decode::<Json>(), Some(json!({"name": "no_handler", "message": message})));
}

pub struct Twice;

impl Room for Twice {
    const NAME: &'static str = "twice";
    type State = ();
    type UserData = ();

    fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        Ok(Twice)
    }

    fn handlers(on: &mut Handlers<Self>) {
        let noop = |_: &mut Self, _: &mut Ctx, _: &Client, (): ()| -> Result<(), Reject> { Ok(()) };
        on.message("go", noop).message("go", noop);
    }
}

#[test]
#[should_panic(expected = "registers two handlers")]
fn one_type_has_one_handler() {
    let _ = TestRoom::<Twice>::create(());
}
