//! The `board` room: a message board shared by every board room on every host, and the shortest
//! tour of presence and room queries.
//!
//! | message | answer |
//! |---|---|
//! | `post {text}` | `posted {from, text}` to every client of every board room, the sender's included |
//! | `rooms` | `rooms {count, roomIds}` to the sender: the board rooms, ids sorted |
//! | `note {key, value}` | `noted {isNew}` to the sender, once the note is stored |
//! | `read {key}` | `read {key, value}` to the sender; `value` is `null` when there is no such note |
//!
//! Joiners get `visits {count}`: how many joins every board room has seen together.
//!
//! The visit count is the global presence counter `board:visits`. Posts travel as JSON
//! (`{"from", "text"}`) on the global topic `board`, which every board room subscribes to. Notes
//! are fields of the presence hash `notes`, a local key: shared by the board rooms, invisible to
//! other room types.
//!
//! Presence answers and room listings arrive in a later hook, so the room remembers who is waiting
//! for each operation, and drops the answer if that client has left meanwhile.

use std::collections::HashMap;

use odeon_guest::PayloadError;
use odeon_guest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The topic posts travel on; global, so every board room gets them wherever it runs.
const TOPIC: &str = "board";
/// The visit counter; global too.
const VISITS: &str = "board:visits";
/// The notes hash; local to the board room type.
const NOTES: &str = "notes";

/// The board room; posts and notes live in presence, not here.
pub struct Board {
    /// Who waits for each operation's answer, and what they asked for.
    waiting: HashMap<OpId, (Client, Reply)>,
}

/// The message a client gets when the answer to its operation arrives.
enum Reply {
    Visits,
    Rooms,
    Noted,
    Read { key: String },
}

/// `post`'s payload.
#[derive(Deserialize)]
struct PostText {
    text: String,
}

/// A post, as published on the topic and broadcast as `posted`.
#[derive(Serialize, Deserialize)]
struct Post {
    from: String,
    text: String,
}

/// `note`'s payload.
#[derive(Deserialize)]
struct Note {
    key: String,
    value: String,
}

/// `read`'s payload.
#[derive(Deserialize)]
struct NoteKey {
    key: String,
}

#[derive(Serialize)]
struct Visits {
    count: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rooms {
    count: usize,
    room_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Noted {
    is_new: bool,
}

#[derive(Serialize)]
struct Read {
    key: String,
    value: Option<String>,
}

impl Room for Board {
    const NAME: &'static str = "board";
    type State = ();
    type UserData = ();

    fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        ctx.presence().subscribe(Key::global(TOPIC));
        Ok(Board { waiting: HashMap::new() })
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx,
        client: &Client,
        _options: Payload,
        _auth: Payload,
    ) -> Result<(), RoomError> {
        let op = ctx.presence().incr(Key::global(VISITS));
        self.waiting.insert(op, (client.clone(), Reply::Visits));
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
        if let Err(err) = self.handle(ctx, client, &message) {
            ctx.debug(format_args!("ignoring {:?} from {client}: {err}", message.kind));
        }
    }

    fn on_presence(&mut self, ctx: &mut Ctx, op: OpId, result: Result<PresenceValue, String>) {
        let Some((client, reply)) = self.waiting_client(ctx, op) else { return };
        let value = match result {
            Ok(value) => value,
            Err(err) => return ctx.warn(format_args!("{op} for {client} failed: {err}")),
        };
        match reply {
            Reply::Visits => ctx.send(&client, "visits", &Visits { count: value.as_int().unwrap_or(0) }),
            Reply::Noted => ctx.send(&client, "noted", &Noted { is_new: value.as_bool().unwrap_or(false) }),
            Reply::Read { key } => ctx.send(&client, "read", &Read { key, value: value.into_string() }),
            Reply::Rooms => ctx.warn(format_args!("{op} is a room query, not a presence operation")),
        }
    }

    fn on_rooms(&mut self, ctx: &mut Ctx, op: OpId, result: Result<Vec<Listing>, String>) {
        let Some((client, _)) = self.waiting_client(ctx, op) else { return };
        match result {
            Ok(listings) => {
                let mut room_ids: Vec<String> = listings.into_iter().map(|l| l.room_id).collect();
                room_ids.sort();
                ctx.send(&client, "rooms", &Rooms { count: room_ids.len(), room_ids });
            }
            Err(err) => ctx.warn(format_args!("{op} for {client} failed: {err}")),
        }
    }

    fn on_presence_message(&mut self, ctx: &mut Ctx, topic: &str, message: &str) {
        if topic != TOPIC {
            return;
        }
        match serde_json::from_str::<Post>(message) {
            Ok(post) => ctx.broadcast("posted", &post),
            Err(err) => ctx.warn(format_args!("ignoring a malformed post {message:?}: {err}")),
        }
    }
}

impl Board {
    /// Runs a client's request; a payload that does not fit is an error.
    fn handle(&mut self, ctx: &mut Ctx, client: &Client, message: &Message) -> Result<(), PayloadError> {
        let (op, reply) = match message.kind.as_str() {
            Some("post") => {
                let PostText { text } = message.payload.decode()?;
                let post = json!({"from": client.session_id(), "text": text});
                // Every subscribed board room, this one included, broadcasts it on arrival.
                ctx.presence().publish(Key::global(TOPIC), post.to_string());
                return Ok(());
            }
            Some("rooms") => (ctx.query_rooms(Some(Self::NAME)), Reply::Rooms),
            Some("note") => {
                let Note { key, value } = message.payload.decode()?;
                (ctx.presence().hset(NOTES, key, value), Reply::Noted)
            }
            Some("read") => {
                let NoteKey { key } = message.payload.decode()?;
                (ctx.presence().hget(NOTES, &key), Reply::Read { key })
            }
            _ => {
                ctx.debug(format_args!("ignoring message {:?}", message.kind));
                return Ok(());
            }
        };
        self.waiting.insert(op, (client.clone(), reply));
        Ok(())
    }

    /// Who waited for `op`, unless they have left since they asked.
    fn waiting_client(&mut self, ctx: &Ctx, op: OpId) -> Option<(Client, Reply)> {
        let (client, reply) = self.waiting.remove(&op)?;
        ctx.client(client.session_id()).is_some().then_some((client, reply))
    }
}

export_room!(Board);

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::testing::{Event, PresenceOp, TestRoom, listing};
    use serde_json::{Value as Json, json};

    fn board() -> TestRoom<Board> {
        TestRoom::<Board>::create(()).unwrap()
    }

    #[test]
    fn create_subscribes_to_the_global_topic() {
        let room = board();
        assert_eq!(room.presence_ops(), [PresenceOp::Subscribe { topic: Key::global("board") }]);
        assert!(room.is_subscribed(Key::global("board")));
        assert!(!room.is_subscribed("board"));
    }

    #[test]
    fn joiners_get_the_visit_count_of_every_board_room() {
        let mut room = board();
        room.take_effects();
        room.join("a", ()).unwrap();
        assert_eq!(room.presence_ops(), [PresenceOp::Incr { key: Key::global("board:visits"), by: 1 }]);
        assert_eq!(room.sent_to::<Json>("a", "visits"), [json!({"count": 1})]);

        // Five joins elsewhere, in board rooms or any other type: the counter is global.
        let incr = PresenceOp::Incr { key: Key::global("board:visits"), by: 5 };
        room.run_presence_as("lobby", incr).unwrap();
        room.join("b", ()).unwrap();
        assert_eq!(room.sent_to::<Json>("b", "visits"), [json!({"count": 7})]);
        assert_eq!(room.sent_to::<Json>("a", "visits").len(), 1);
    }

    #[test]
    fn answers_for_clients_who_left_are_dropped() {
        let mut room = board();
        room.hold_answers();
        room.join("a", ()).unwrap();
        room.join("b", ()).unwrap();
        room.message("b", "read", &json!({"key": "k"}));
        room.leave("a", 4000);
        room.release_answers();
        assert!(room.sent_to::<Json>("a", "visits").is_empty());
        assert_eq!(room.sent_to::<Json>("b", "visits"), [json!({"count": 2})]);
        assert_eq!(room.sent_to::<Json>("b", "read"), [json!({"key": "k", "value": null})]);

        // A failed operation sends nothing.
        room.hold_answers();
        room.message("b", "read", &json!({"key": "k"}));
        room.answer_presence(room.held_ops()[0], Err("presence unavailable".into()));
        assert_eq!(room.sent_to::<Json>("b", "read").len(), 1);
    }

    #[test]
    fn posts_reach_every_client_of_every_board_room() {
        let mut room = board();
        room.join("a", ()).unwrap();
        room.join("b", ()).unwrap();
        room.take_effects();
        room.message("a", "post", &json!({"text": "hi"}));
        let [PresenceOp::Publish { topic, message }] = &room.presence_ops()[..] else {
            panic!("expected one publication");
        };
        assert_eq!(*topic, Key::global("board"));
        assert_eq!(serde_json::from_str::<Json>(message).unwrap(), json!({"from": "a", "text": "hi"}));
        // The room hears its own publication, as every other board room does.
        for client in ["a", "b"] {
            assert_eq!(room.sent_to::<Json>(client, "posted"), [json!({"from": "a", "text": "hi"})]);
        }

        assert!(room.deliver_presence_message(Key::global("board"), r#"{"from": "z", "text": "yo"}"#));
        assert_eq!(room.sent_to::<Json>("b", "posted")[1], json!({"from": "z", "text": "yo"}));

        room.take_effects();
        room.message("a", "post", &json!({"words": "hi"}));
        room.message_empty("a", "post");
        assert!(room.deliver_presence_message(Key::global("board"), "not json"));
        room.events(vec![Event::PresenceMessage {
            topic: "elsewhere".into(),
            message: r#"{"from": "z", "text": "yo"}"#.into(),
        }]);
        assert!(room.take_effects().is_empty());
    }

    #[test]
    fn rooms_lists_the_board_rooms_sorted() {
        let mut room = board();
        room.join("a", ()).unwrap();
        room.join("b", ()).unwrap();
        room.take_effects();
        room.set_rooms(vec![listing("board", "r2"), listing("chat", "c1"), listing("board", "r1")]);
        room.message_empty("a", "rooms");
        assert_eq!(room.room_queries(), [Some("board".to_owned())]);
        assert_eq!(room.sent_to::<Json>("a", "rooms"), [json!({"count": 2, "roomIds": ["r1", "r2"]})]);
        assert!(room.sent_to::<Json>("b", "rooms").is_empty());
    }

    #[test]
    fn notes_are_shared_by_board_rooms_only() {
        let mut room = board();
        room.join("a", ()).unwrap();
        room.message("a", "note", &json!({"key": "k", "value": "v"}));
        room.message("a", "note", &json!({"key": "k", "value": "w"}));
        assert_eq!(room.sent_to::<Json>("a", "noted"), [json!({"isNew": true}), json!({"isNew": false})]);
        room.message("a", "read", &json!({"key": "k"}));
        room.message("a", "read", &json!({"key": "nope"}));
        room.message("a", "read", &json!({"nokey": 1}));
        assert_eq!(
            room.sent_to::<Json>("a", "read"),
            [json!({"key": "k", "value": "w"}), json!({"key": "nope", "value": null})]
        );

        let hget = |key: Key| PresenceOp::HGet { key, field: "k".into() };
        assert_eq!(room.run_presence(hget(Key::local("notes"))), Ok(PresenceValue::Str("w".into())));
        assert_eq!(room.run_presence(hget(Key::global("notes"))), Ok(PresenceValue::Nil));
        assert_eq!(room.run_presence_as("echo", hget(Key::local("notes"))), Ok(PresenceValue::Nil));
        // Subscribe, incr, two hset and two hget: the malformed read asked nothing.
        assert_eq!(room.presence_ops().len(), 6);
    }
}
