//! The `echo` room: the reference room the host's tests and benchmarks play against, and the
//! shortest tour of the guest SDK.
//!
//! Build it with `just plugins` (or `cargo build --target wasm32-wasip1 --profile wasm -p echo`,
//! which writes `target/wasm32-wasip1/wasm/echo.wasm`); test it natively with
//! `cargo test -p echo`.
//!
//! | message | answer |
//! |---|---|
//! | `echo` | `echo` to the sender, with the same payload bytes |
//! | `broadcast` | `broadcast {from, data}` to everyone else |
//! | bytes `bytes` | bytes `bytes` to the sender, reversed |
//! | `count` | `count {clients}` to the sender |
//! | `kick-me` | the sender is kicked (close without a code) |
//! | `error-me` | error 4321 `requested error` to the sender |
//! | `lock`, `unlock` | locks or unlocks the room |
//! | `build` | `build` to the sender: `"v1"`, or `"v2"` when built with the `v2` feature |
//!
//! Requests (`room.request(type, payload)`, @colyseus/sdk 0.18): `add {a, b}` answers
//! `{sum: a + b}`, `reject-me` is rejected with `"nope"`, `fail-me` fails with `Error: boom`, a
//! request of a message type above runs that handler and answers with no value, and any other
//! type gets the `no_handler` error.
//!
//! Joiners get `welcome {sessionId, roomId, clients}` and the others `joined {sessionId}`; leavers
//! are announced with `left {sessionId}`. Dropped clients may reconnect for 10 seconds. Options
//! are `{maxClients = 4, mode}`; rooms are filtered by `mode`, and `{token: "bad"}` (or the bearer
//! token `bad`) fails auth; `{sessionAs: id}` makes the auth hook name the session `id` (claimed, not proven: refused while
//! that session is connected, except in the `trusted-sessions` test build); the auth
//! data is `{ip}`, the client's address, sent back as `auth` to a joiner with `{showAuth: true}`.

use odeon_guest::prelude::*;
use serde::{Deserialize, Serialize};

/// The message types `on_message` handles (each answers a request of its type too).
const HANDLED: &[&str] = &["echo", "broadcast", "count", "kick-me", "error-me", "lock", "unlock", "build"];

/// The request `add {a, b}`.
#[derive(Deserialize)]
struct Addends {
    a: f64,
    b: f64,
}

/// Its answer.
#[derive(Serialize)]
struct Sum<N> {
    sum: N,
}

/// What `build` answers: which build of this room runs (hot-load tests deploy both).
const BUILD: &str = if cfg!(feature = "v2") { "v2" } else { "v1" };

/// The echo room; it keeps no state of its own.
pub struct Echo;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateOptions {
    #[serde(default = "default_max_clients")]
    max_clients: u32,
    mode: Option<String>,
}

fn default_max_clients() -> u32 {
    4
}

#[derive(Serialize)]
struct Metadata<'a> {
    mode: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Welcome<'a> {
    session_id: &'a str,
    room_id: String,
    clients: usize,
}

/// The body of `joined` and `left`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Who<'a> {
    session_id: &'a str,
}

#[derive(Serialize)]
struct Broadcast<'a> {
    from: &'a str,
    data: Value,
}

#[derive(Serialize)]
struct Count {
    clients: usize,
}

impl Room for Echo {
    const NAME: &'static str = "echo";
    type State = ();
    type UserData = ();
    const FILTER_BY: &'static [&'static str] = &["mode"];
    const AUTH: bool = true;

    fn on_auth(auth: &AuthContext) -> Auth {
        // `{token: "bad"}` in the options, or the bearer token "bad" (the SDK's `client.auth.token`).
        let bad = auth.options.get("token") == Some("bad".into()) || auth.token.as_deref() == Some("bad");
        if bad {
            return Auth::deny();
        }
        // `{sessionAs}` names the session, as an auth hook that maps accounts to sessions would.
        // The auth data is the client's address as the host saw it (`{showAuth: true}` in the
        // join options sends it back), so tests can check what a proxy forwarded.
        let data = Value::Map(vec![("ip".into(), auth.ip.as_str().into())]);
        // The id is only claimed: it cannot take over a connected session. The
        // `trusted-sessions` build (tests only) treats it as proven, to test takeovers.
        match auth.options.get("sessionAs").and_then(|v| v.as_str().map(str::to_owned)) {
            Some(id) if cfg!(feature = "trusted-sessions") => Auth::accept_as_proven(data, id),
            Some(id) => Auth::accept_as(data, id),
            None => Auth::accept_with(data),
        }
    }

    // Echo keeps nothing of its own: a live migration only moves what the SDK and host carry.
    fn migrate_out(&mut self, _ctx: &Ctx) -> Result<Vec<u8>, RoomError> {
        Ok(Vec::new())
    }

    fn migrate_in(_ctx: &mut Ctx, _from: Migration) -> Result<Self, RoomError> {
        Ok(Echo)
    }

    fn on_create(ctx: &mut Ctx, options: Payload) -> Result<Self, RoomError> {
        let options: CreateOptions = options.decode()?;
        ctx.set_max_clients(options.max_clients);
        let mode = options.mode.as_deref().unwrap_or("default");
        ctx.set_metadata(&Metadata { mode });
        Ok(Echo)
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx,
        client: &Client,
        options: Payload,
        auth: Payload,
    ) -> Result<(), RoomError> {
        if options.get("showAuth") == Some(true.into()) {
            ctx.send_payload(client, "auth", &auth);
        }
        let session_id = client.session_id();
        let welcome = Welcome { session_id, room_id: ctx.room_id().to_owned(), clients: ctx.clients().len() };
        ctx.send(client, "welcome", &welcome);
        ctx.broadcast_except("joined", &Who { session_id }, client);
        Ok(())
    }

    fn on_leave(&mut self, ctx: &mut Ctx, client: &Client, _code: u16) {
        let session_id = client.session_id();
        ctx.broadcast("left", &Who { session_id });
    }

    fn on_drop(&mut self, ctx: &mut Ctx, client: &Client, _code: u16) {
        ctx.allow_reconnection(client, 10);
    }

    fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
        match message.kind.as_str() {
            Some("echo") => ctx.send_payload(client, "echo", &message.payload),
            Some("broadcast") => {
                let data = message.payload.value().unwrap_or(Value::Nil);
                let from = client.session_id();
                ctx.broadcast_except("broadcast", &Broadcast { from, data }, client);
            }
            Some("count") => {
                let clients = ctx.clients().len();
                ctx.send(client, "count", &Count { clients });
            }
            Some("kick-me") => ctx.kick(client),
            Some("error-me") => ctx.send_error(client, 4321, "requested error"),
            Some("lock") => ctx.lock(),
            Some("unlock") => ctx.unlock(),
            Some("build") => ctx.send(client, "build", &BUILD),
            _ => ctx.debug(format_args!("ignoring message {:?}", message.kind)),
        }
    }

    fn on_request(&mut self, ctx: &mut Ctx, client: &Client, request: Message) -> Answer {
        match request.kind.as_str() {
            Some("add") => match request.payload.decode::<Addends>() {
                // JavaScript number arithmetic; a whole sum goes out as an integer, as the
                // reference server writes it.
                Ok(Addends { a, b }) => {
                    let sum = a + b;
                    if sum.fract() == 0.0 && sum.abs() < 9e15 {
                        Answer::ok(&Sum { sum: sum as i64 })
                    } else {
                        Answer::ok(&Sum { sum })
                    }
                }
                Err(e) => Answer::error("Error", e.to_string()),
            },
            Some("reject-me") => Answer::reject("nope"),
            Some("fail-me") => Answer::error("Error", "boom"),
            // Every message handler answers a request of its type once it has run.
            Some(kind) if HANDLED.contains(&kind) => {
                self.on_message(ctx, client, request);
                Answer::empty()
            }
            _ => Answer::NoHandler,
        }
    }

    fn on_bytes(&mut self, ctx: &mut Ctx, client: &Client, kind: MessageType, bytes: &[u8]) {
        if kind.is("bytes") {
            let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
            ctx.send_bytes(client, "bytes", &reversed);
        } else {
            ctx.debug(format_args!("ignoring bytes message {kind:?}"));
        }
    }
}

export_room!(Echo);

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_guest::testing::{AuthDecision, TestRoom};
    use serde_json::{Value as Json, json};

    /// A room with clients `a` and `b`, and no effects recorded yet.
    fn room_with_two() -> TestRoom<Echo> {
        let mut room = TestRoom::<Echo>::create(json!({})).unwrap();
        room.join("a", json!({})).unwrap();
        room.join("b", json!({})).unwrap();
        room.take_effects();
        room
    }

    #[test]
    fn auth_rejects_the_bad_token_only() {
        let denied = TestRoom::<Echo>::auth(json!({"token": "bad"}), None);
        assert_eq!(denied, AuthDecision::Reject { message: "onAuth failed".into() });
        // Accepted, with the client's address as the auth data (TestRoom's clients are 127.0.0.1),
        // which a joiner with `{showAuth: true}` gets back.
        for options in [json!({"token": "good"}), json!({}), json!(null)] {
            let AuthDecision::AcceptWith { auth, session_id: None, .. } =
                TestRoom::<Echo>::auth(options, None)
            else {
                panic!("expected AcceptWith");
            };
            let mut room = TestRoom::<Echo>::create(()).unwrap();
            room.join_with_auth("a", json!({"showAuth": true}), Payload::new(auth).value().unwrap()).unwrap();
            assert_eq!(room.sent_to::<Json>("a", "auth"), [json!({"ip": "127.0.0.1"})]);
        }
    }

    #[test]
    fn requests_are_answered_rejected_failed_or_have_no_handler() {
        use odeon_guest::testing::RequestStatus;
        let mut room = room_with_two();
        let sum = room.request("a", "add", &json!({"a": 2, "b": 3}));
        assert_eq!((sum.status, sum.decode::<Json>()), (RequestStatus::Ok, Some(json!({"sum": 5}))));
        let sum = room.request("a", "add", &json!({"a": 0.5, "b": 0.25}));
        assert_eq!(sum.decode::<Json>(), Some(json!({"sum": 0.75})));
        let rejected = room.request("a", "reject-me", &());
        assert_eq!(
            (rejected.status, rejected.decode::<Json>()),
            (RequestStatus::Rejected, Some(json!("nope")))
        );
        let failed = room.request("a", "fail-me", &());
        assert_eq!(failed.status, RequestStatus::Error);
        assert_eq!(failed.decode::<Json>(), Some(json!({"name": "Error", "message": "boom"})));
        let none = room.request("a", "nobody", &1);
        let message = r#"room "echo" has no onMessage("nobody") handler to answer this request."#;
        assert_eq!(none.decode::<Json>(), Some(json!({"name": "no_handler", "message": message})));
        // `echo` runs the message handler, then answers with no payload.
        room.take_effects();
        let echoed = room.request("a", "echo", &"x");
        assert_eq!((echoed.status, echoed.payload), (RequestStatus::Ok, None));
        assert_eq!(room.sent_to::<Json>("a", "echo"), [json!("x")]);
    }

    #[test]
    fn create_applies_options_and_defaults() {
        let room = TestRoom::<Echo>::create(()).unwrap();
        assert_eq!(room.max_clients(), Some(4));
        assert_eq!(room.metadata::<Json>(), Some(json!({"mode": "default"})));

        let room = TestRoom::<Echo>::create(json!({"maxClients": 2, "mode": "duel"})).unwrap();
        assert_eq!(room.max_clients(), Some(2));
        assert_eq!(room.metadata::<Json>(), Some(json!({"mode": "duel"})));
    }

    #[test]
    fn create_fails_on_malformed_options() {
        let err = TestRoom::<Echo>::create(json!({"maxClients": "four"})).err().unwrap();
        assert_eq!(err.code, Some(523));
    }

    #[test]
    fn joiner_is_welcomed_and_announced_to_the_others() {
        let mut room = TestRoom::<Echo>::create(()).unwrap();
        room.join("a", ()).unwrap();
        room.join("b", ()).unwrap();

        let welcome = |sid: &str, clients: u32| json!({"sessionId": sid, "roomId": TestRoom::<Echo>::ROOM_ID, "clients": clients});
        assert_eq!(room.sent_to::<Json>("a", "welcome"), [welcome("a", 1)]);
        assert_eq!(room.sent_to::<Json>("b", "welcome"), [welcome("b", 2)]);
        assert_eq!(room.sent_to::<Json>("a", "joined"), [json!({"sessionId": "b"})]);
        assert!(room.sent_to::<Json>("b", "joined").is_empty());
    }

    #[test]
    fn leave_is_announced() {
        let mut room = room_with_two();
        room.leave("b", 4000);
        assert_eq!(room.sent_to::<Json>("a", "left"), [json!({"sessionId": "b"})]);
        assert!(room.sent_to::<Json>("b", "left").is_empty());
        assert_eq!(room.clients(), ["a"]);
    }

    #[test]
    fn drop_keeps_the_seat_for_ten_seconds() {
        let mut room = room_with_two();
        room.drop_client("b", 1006);
        assert_eq!(room.allowed_reconnection("b"), Some(10));
        assert!(room.sent_to::<Json>("a", "left").is_empty());

        room.reconnect("b");
        assert_eq!(room.clients(), ["a", "b"]);
        room.message_empty("b", "count");
        assert_eq!(room.sent_to::<Json>("b", "count"), [json!({"clients": 2})]);

        // The window passing is the host's Leave event.
        room.drop_client("b", 1006);
        room.leave("b", 1006);
        assert_eq!(room.sent_to::<Json>("a", "left"), [json!({"sessionId": "b"})]);
    }

    #[test]
    fn echo_returns_the_payload_bytes_unchanged() {
        let mut room = room_with_two();
        // A non-minimal encoding (uint8 1) and a float32 survive untouched.
        let raw = vec![0x92, 0xcc, 0x01, 0xca, 0x3f, 0xc0, 0x00, 0x00];
        room.message_raw("a", "echo", raw.clone());
        room.message_empty("a", "echo");
        room.message("a", "echo", &json!({"hello": [1, "two"]}));

        let echoed = room.raw_sent_to("a", "echo");
        assert_eq!(echoed[..2], [Some(raw), None]);
        assert_eq!(room.sent_to::<Json>("a", "echo")[2], json!({"hello": [1, "two"]}));
        assert!(room.raw_sent_to("b", "echo").is_empty());
    }

    #[test]
    fn broadcast_reaches_everyone_but_the_sender() {
        let mut room = room_with_two();
        room.join("c", ()).unwrap();
        room.message("a", "broadcast", &json!({"x": 1}));
        room.message_empty("b", "broadcast");

        let from_a = || json!({"from": "a", "data": {"x": 1}});
        let from_b = || json!({"from": "b", "data": null});
        assert_eq!(room.sent_to::<Json>("a", "broadcast"), [from_b()]);
        assert_eq!(room.sent_to::<Json>("b", "broadcast"), [from_a()]);
        assert_eq!(room.sent_to::<Json>("c", "broadcast"), [from_a(), from_b()]);
    }

    #[test]
    fn bytes_come_back_reversed() {
        let mut room = room_with_two();
        room.bytes("a", "bytes", &[1, 2, 3]);
        room.bytes("a", "other", &[4]);
        assert_eq!(room.bytes_sent_to("a", "bytes"), [vec![3, 2, 1]]);
        assert!(room.bytes_sent_to("b", "bytes").is_empty());
        assert_eq!(room.take_effects().len(), 1);
    }

    #[test]
    fn count_includes_everyone_joined() {
        let mut room = room_with_two();
        room.message_empty("a", "count");
        assert_eq!(room.sent_to::<Json>("a", "count"), [json!({"clients": 2})]);
    }

    #[test]
    fn build_names_the_build() {
        let mut room = room_with_two();
        room.message_empty("a", "build");
        let want = if cfg!(feature = "v2") { "v2" } else { "v1" };
        assert_eq!(room.sent_to::<Json>("a", "build"), [json!(want)]);
    }

    #[test]
    fn kick_me_closes_without_a_code() {
        let mut room = room_with_two();
        room.message_empty("a", "kick-me");
        assert_eq!(room.kicked("a"), Some(None));
        assert_eq!(room.kicked("b"), None);
    }

    #[test]
    fn error_me_sends_an_error() {
        let mut room = room_with_two();
        room.message_empty("b", "error-me");
        assert_eq!(room.errors_to("b"), [(4321, "requested error".to_owned())]);
        assert!(room.errors_to("a").is_empty());
    }

    #[test]
    fn lock_and_unlock() {
        let mut room = room_with_two();
        room.message_empty("a", "lock");
        assert!(room.is_locked());
        room.message_empty("b", "unlock");
        assert!(!room.is_locked());
    }

    #[test]
    fn unknown_messages_are_ignored() {
        let mut room = room_with_two();
        room.message("a", "nope", &1);
        room.message("a", 7, &1);
        room.bytes("a", "echo", &[1]);
        assert!(room.take_effects().is_empty());
    }
}
