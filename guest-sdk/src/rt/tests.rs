use super::*;
use crate::{Ctx, Key, KeyExt, Listing, MessageType, OpId, PresenceOp, PresenceValue, RoomError, TimerId};
use odeon_protocol::abi::Outbound;

/// Records every hook call; its options steer the failure paths.
#[derive(Debug, Default)]
struct Probe {
    calls: Vec<String>,
}

impl Room for Probe {
    const NAME: &'static str = "probe";
    type State = ();
    type UserData = ();
    const FILTER_BY: &'static [&'static str] = &["mode", "level"];
    const SORT_BY: &'static [(&'static str, i8)] = &[("clients", -1)];
    const AUTH: bool = true;

    fn default_options() -> Option<Value> {
        Some(Value::Map(vec![("mode".into(), "solo".into())]))
    }

    fn on_auth(auth: &AuthContext) -> Auth {
        match auth.token.as_deref() {
            Some("vip") => Auth::accept_as("gold", "v1"),
            Some(_) => Auth::reject(format!("bad token from {}", auth.ip)),
            None => Auth::Accept,
        }
    }

    fn on_create(ctx: &mut Ctx, options: Payload) -> Result<Self, RoomError> {
        ctx.lock();
        match options.get("fail") {
            Some(Value::Integer(code)) => Err(RoomError::with_code(code.as_u64().unwrap() as u32, "nope")),
            Some(_) => Err(RoomError::new("nope")),
            None => Ok(Probe::default()),
        }
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx,
        client: &Client,
        options: Payload,
        auth: Payload,
    ) -> Result<(), RoomError> {
        let seen = ctx.clients().len();
        self.calls.push(format!("join {client} {seen} {}", auth.value().unwrap()));
        match options.get("refuse") {
            Some(_) => Err(RoomError::new("refused")),
            None => Ok(()),
        }
    }

    fn on_leave(&mut self, ctx: &mut Ctx, client: &Client, code: u16) {
        self.calls.push(format!("leave {client} {code} {}", ctx.clients().len()));
    }

    fn on_drop(&mut self, ctx: &mut Ctx, client: &Client, code: u16) {
        self.calls.push(format!("drop {client} {code} {}", ctx.clients().len()));
        if client.session_id().starts_with("keep") {
            ctx.allow_reconnection(client, 5);
        }
    }

    fn on_reconnect(&mut self, ctx: &mut Ctx, client: &Client) {
        self.calls.push(format!("reconnect {client} {}", ctx.clients().len()));
    }

    fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
        let payload = message.payload.value().unwrap();
        self.calls.push(format!("message {client} {:?} {payload}", message.kind));
        if message.is("timeout") {
            let timer = ctx.set_timeout(10);
            self.calls.push(format!("set {timer}"));
        }
        if message.is("interval") {
            let timer = ctx.set_interval(10);
            self.calls.push(format!("set {timer}"));
        }
        if message.is("presence") {
            ctx.presence().get("k");
        }
        if message.is("rooms") {
            ctx.query_rooms(Some("probe"));
        }
    }

    fn on_presence(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<PresenceValue, String>) {
        self.calls.push(format!("{op} {result:?}"));
    }

    fn on_presence_message(&mut self, _ctx: &mut Ctx, topic: &str, message: &str) {
        self.calls.push(format!("{topic}: {message}"));
    }

    fn on_rooms(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<Vec<Listing>, String>) {
        self.calls.push(format!("rooms {op} {result:?}"));
    }

    fn on_bytes(&mut self, _ctx: &mut Ctx, client: &Client, kind: MessageType, bytes: &[u8]) {
        self.calls.push(format!("bytes {client} {kind:?} {bytes:?}"));
    }

    fn on_tick(&mut self, ctx: &mut Ctx, dt_ms: f64) {
        self.calls.push(format!("tick {dt_ms} at {}", ctx.now()));
    }

    fn on_timer(&mut self, ctx: &mut Ctx, timer: TimerId) {
        self.calls.push(format!("{timer} fired"));
        if timer.as_u64() == 2 {
            ctx.clear_timer(timer);
        }
    }

    fn on_dispose(&mut self, _ctx: &mut Ctx) {
        self.calls.push("dispose".into());
    }
}

fn batch(events: Vec<Event>) -> Batch {
    Batch { now_ms: 1_000, events }
}

fn create(options: &[u8]) -> Event {
    Event::Create { room_id: "r1".into(), room_name: "probe".into(), options: options.to_vec() }
}

fn join(sid: &str) -> Event {
    Event::Join { session_id: sid.into(), options: vec![], auth: vec![] }
}

fn message(sid: &str, kind: &str) -> Event {
    Event::Message { session_id: sid.into(), kind: MessageType::Str(kind.into()), payload: vec![] }
}

fn live() -> Runtime<Probe> {
    let mut runtime = Runtime::<Probe>::new();
    runtime.handle_batch(batch(vec![create(&[0x80])]));
    runtime
}

fn calls(runtime: &Runtime<Probe>) -> Vec<&str> {
    runtime.room().unwrap().calls.iter().map(String::as_str).collect()
}

#[test]
fn events_run_their_hooks_in_order() {
    let mut runtime = Runtime::<Probe>::new();
    let effects = runtime.handle_batch(batch(vec![
        create(&[0x80]),
        Event::Join { session_id: "a".into(), options: vec![], auth: vec![0xa4, b'g', b'o', b'l', b'd'] },
        join("b"),
        message("a", "hi"),
        Event::Bytes { session_id: "b".into(), kind: MessageType::Num(3.0), payload: vec![1, 2] },
        Event::Tick { dt_ms: 16.5 },
        Event::Leave { session_id: "b".into(), code: 4000 },
        Event::Dispose,
    ]));
    assert_eq!(effects.effects, [Effect::Lock]);
    assert_eq!(runtime.ctx().room_id(), "r1");
    assert_eq!(runtime.ctx().room_name(), "probe");
    assert_eq!(
        calls(&runtime),
        [
            "join a 1 \"gold\"",
            "join b 2 nil",
            "message a Str(\"hi\") nil",
            "bytes b Num(3.0) [1, 2]",
            "tick 16.5 at 1000",
            "leave b 4000 1",
            "dispose",
        ]
    );
    // Nothing runs after Dispose.
    runtime.handle_batch(batch(vec![message("a", "late")]));
    assert_eq!(calls(&runtime).len(), 7);
}

#[test]
fn drop_without_reconnection_runs_leave_in_the_same_call() {
    let mut runtime = live();
    runtime.handle_batch(batch(vec![join("a"), join("keep-b")]));
    let effects = runtime.handle_batch(batch(vec![
        Event::Drop { session_id: "a".into(), code: 1006 },
        Event::Drop { session_id: "keep-b".into(), code: 1005 },
    ]));
    assert_eq!(effects.effects, [Effect::AllowReconnection { session_id: "keep-b".into(), seconds: 5 }]);
    assert_eq!(calls(&runtime)[2..], ["drop a 1006 1", "leave a 1006 1", "drop keep-b 1005 0"]);
    assert!(runtime.ctx().clients().is_empty());

    runtime.handle_batch(batch(vec![Event::Reconnect { session_id: "keep-b".into() }]));
    assert_eq!(calls(&runtime)[5], "reconnect keep-b 1");
    assert_eq!(runtime.ctx().client("keep-b").unwrap().session_id(), "keep-b");

    // The window passing arrives as a Leave.
    runtime.handle_batch(batch(vec![
        Event::Drop { session_id: "keep-b".into(), code: 1006 },
        Event::Leave { session_id: "keep-b".into(), code: 1006 },
    ]));
    assert_eq!(calls(&runtime)[6..], ["drop keep-b 1006 0", "leave keep-b 1006 0"]);
}

#[test]
fn failed_create_discards_its_effects_and_ignores_later_events() {
    let mut runtime = Runtime::<Probe>::new();
    // {"fail": true}
    let effects =
        runtime.handle_batch(batch(vec![create(&[0x81, 0xa4, b'f', b'a', b'i', b'l', 0xc3]), join("a")]));
    assert_eq!(effects.effects, [Effect::CreateFailed { code: 523, message: "nope".into() }]);
    assert!(runtime.room().is_none());
    assert!(runtime.ctx().clients().is_empty());
    assert!(runtime.handle_batch(batch(vec![join("b"), Event::Dispose])).effects.is_empty());
    let answers = vec![
        Event::PresenceResult { op_id: 1, result: Ok(PresenceValue::Nil) },
        Event::PresenceMessage { topic: "t".into(), message: "m".into() },
        Event::Rooms { op_id: 2, result: Ok(vec![]) },
    ];
    assert!(runtime.handle_batch(batch(answers)).effects.is_empty());
    assert!(runtime.room().is_none());

    // {"fail": 4000}
    let mut runtime = Runtime::<Probe>::new();
    let effects =
        runtime.handle_batch(batch(vec![create(&[0x81, 0xa4, b'f', b'a', b'i', b'l', 0xcd, 0x0f, 0xa0])]));
    assert_eq!(effects.effects, [Effect::CreateFailed { code: 4000, message: "nope".into() }]);
}

#[test]
fn events_before_create_are_ignored() {
    let mut runtime = Runtime::<Probe>::new();
    assert!(runtime.handle_batch(batch(vec![join("a")])).effects.is_empty());
    assert!(runtime.room().is_none());
    runtime.handle_batch(batch(vec![create(&[0x80]), create(&[0x80])]));
    assert_eq!(calls(&runtime).len(), 0);
}

#[test]
fn refused_join_is_rejected_and_removed() {
    let mut runtime = live();
    // {"refuse": 1}
    let options = vec![0x81, 0xa6, b'r', b'e', b'f', b'u', b's', b'e', 0x01];
    let effects = runtime
        .handle_batch(batch(vec![Event::Join { session_id: "a".into(), options, auth: vec![] }, join("b")]));
    assert_eq!(
        effects.effects,
        [Effect::RejectJoin { session_id: "a".into(), code: 526, message: "refused".into() }]
    );
    let clients: Vec<&str> = runtime.ctx().clients().iter().map(Client::session_id).collect();
    assert_eq!(clients, ["b"]);
}

#[test]
fn timers_fire_until_cleared_and_one_shots_only_once() {
    let mut runtime = live();
    let effects =
        runtime.handle_batch(batch(vec![join("a"), message("a", "timeout"), message("a", "interval")]));
    assert_eq!(
        effects.effects,
        [
            Effect::SetTimer { id: 1, delay_ms: 10, repeat: false },
            Effect::SetTimer { id: 2, delay_ms: 10, repeat: true },
        ]
    );
    let effects = runtime.handle_batch(batch(vec![
        Event::Timer { id: 1 },
        Event::Timer { id: 1 },
        Event::Timer { id: 2 },
        Event::Timer { id: 2 },
        Event::Timer { id: 99 },
    ]));
    // Timer 2 clears itself when it fires; the one-shot needs no clearing.
    assert_eq!(effects.effects, [Effect::ClearTimer { id: 2 }]);
    let fired: Vec<&str> = calls(&runtime).into_iter().filter(|c| c.ends_with("fired")).collect();
    assert_eq!(fired, ["timer 1 fired", "timer 2 fired"]);
}

#[test]
fn presence_and_room_answers_reach_their_hooks_once() {
    let mut runtime = live();
    let effects = runtime.handle_batch(batch(vec![
        join("a"),
        message("a", "presence"),
        message("a", "rooms"),
        Event::PresenceMessage { topic: "news".into(), message: "early".into() },
    ]));
    assert_eq!(
        effects.effects,
        [
            Effect::Presence { op_id: 1, op: PresenceOp::Get { key: Key::local("k") } },
            Effect::QueryRooms { op_id: 2, name: Some("probe".into()) },
        ]
    );
    let listing = Listing {
        room_id: "r1".into(),
        name: "probe".into(),
        process_id: "p".into(),
        clients: 1,
        max_clients: None,
        locked: false,
        private: false,
        metadata: vec![0x80],
    };
    runtime.handle_batch(batch(vec![
        // The wrong kind of answer, an unknown id and a second answer are ignored.
        Event::Rooms { op_id: 1, result: Ok(vec![]) },
        Event::PresenceResult { op_id: 2, result: Ok(PresenceValue::Nil) },
        Event::PresenceResult { op_id: 1, result: Ok(PresenceValue::Str("v".into())) },
        Event::PresenceResult { op_id: 1, result: Ok(PresenceValue::Nil) },
        Event::PresenceResult { op_id: 99, result: Err("late".into()) },
        Event::Rooms { op_id: 2, result: Ok(vec![listing.clone()]) },
        Event::Rooms { op_id: 2, result: Err("twice".into()) },
        Event::PresenceMessage { topic: "news".into(), message: "hi".into() },
    ]));
    let answers: Vec<&str> =
        calls(&runtime).into_iter().filter(|c| !c.starts_with("join") && !c.starts_with("message")).collect();
    assert_eq!(answers[0], "news: early");
    assert_eq!(answers[1], "op 1 Ok(Str(\"v\"))");
    assert_eq!(answers[2], format!("rooms op 2 {:?}", Ok::<_, String>(vec![listing])));
    assert_eq!(answers[3], "news: hi");
    assert_eq!(answers.len(), 4);

    // Ids keep counting across hooks and kinds.
    let effects = runtime.handle_batch(batch(vec![message("a", "rooms")]));
    assert_eq!(effects.effects, [Effect::QueryRooms { op_id: 3, name: Some("probe".into()) }]);
}

#[test]
fn manifest_declares_the_room() {
    let manifest = manifest::<Probe>();
    assert_eq!(manifest.name, "probe");
    assert_eq!(manifest.filter_by, ["mode", "level"]);
    assert_eq!(manifest.sort_by, [("clients".to_owned(), -1)]);
    assert_eq!(manifest.default_options, [0x81, 0xa4, b'm', b'o', b'd', b'e', 0xa4, b's', b'o', b'l', b'o']);
    assert!(manifest.has_auth);
    assert_eq!(abi::decode::<Manifest>(&manifest_encoded::<Probe>()).unwrap(), manifest);

    struct Bare;
    impl Room for Bare {
        const NAME: &'static str = "bare";
        type State = ();
        type UserData = ();
        fn on_create(_: &mut Ctx, _: Payload) -> Result<Self, RoomError> {
            Ok(Bare)
        }
    }
    let manifest = super::manifest::<Bare>();
    assert_eq!(manifest.default_options, [0x80]);
    assert!(manifest.filter_by.is_empty() && manifest.sort_by.is_empty() && !manifest.has_auth);
}

#[test]
#[should_panic(expected = "default_options() must return a map")]
fn manifest_refuses_non_map_defaults() {
    struct Odd;
    impl Room for Odd {
        const NAME: &'static str = "odd";
        type State = ();
        type UserData = ();
        fn default_options() -> Option<Value> {
            Some(Value::from(3))
        }
        fn on_create(_: &mut Ctx, _: Payload) -> Result<Self, RoomError> {
            Ok(Odd)
        }
    }
    manifest::<Odd>();
}

#[test]
fn auth_maps_every_verdict() {
    let request = |token: Option<&str>| AuthRequest {
        options: vec![],
        token: token.map(Into::into),
        ip: "10.0.0.1".into(),
    };
    assert_eq!(auth::<Probe>(request(None)), AuthDecision::Accept);
    assert_eq!(
        auth::<Probe>(request(Some("vip"))),
        AuthDecision::AcceptWith {
            auth: vec![0xa4, b'g', b'o', b'l', b'd'],
            session_id: Some("v1".into()),
            proven: false
        }
    );
    assert_eq!(
        auth::<Probe>(request(Some("x"))),
        AuthDecision::Reject { message: "bad token from 10.0.0.1".into() }
    );
    let encoded = auth_encoded::<Probe>(&abi::encode(&request(None)));
    assert_eq!(abi::decode::<AuthDecision>(&encoded).unwrap(), AuthDecision::Accept);
}

#[test]
fn garbage_input_is_logged_not_fatal() {
    let garbage: [&[u8]; 5] = [b"", b"\xc1", b"\x92\xcf", b"garbage", &[0xdd, 0xff, 0xff, 0xff, 0xff]];
    for input in garbage {
        let decision = abi::decode::<AuthDecision>(&auth_encoded::<Probe>(input)).unwrap();
        assert_eq!(decision, AuthDecision::Reject { message: "malformed auth request".into() });

        // Before creation, unreadable input fails the room...
        let mut runtime = Runtime::<Probe>::new();
        let effects = abi::decode::<Effects>(&runtime.handle_encoded(input)).unwrap();
        assert_eq!(
            effects.effects,
            [Effect::CreateFailed { code: CREATE_FAILED, message: "malformed event batch".into() }]
        );
        // ...and after it, the batch is dropped and the room carries on.
        let mut runtime = live();
        let effects = abi::decode::<Effects>(&runtime.handle_encoded(input)).unwrap();
        assert!(effects.effects.is_empty());
        let next = abi::encode(&batch(vec![join("a"), message("a", "timeout")]));
        let effects = abi::decode::<Effects>(&runtime.handle_encoded(&next)).unwrap();
        assert_eq!(effects.effects, [Effect::SetTimer { id: 1, delay_ms: 10, repeat: false }]);
    }
}

#[test]
fn sends_encode_named_maps_and_forward_payloads() {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Hello {
        session_id: &'static str,
    }
    let mut ctx: Ctx = Ctx::default();
    let a = Client::new("a".into());
    ctx.send(&a, "hello", &Hello { session_id: "a" });
    ctx.send_payload(&a, 7, &Payload::new(vec![0xcc, 0x01]));
    ctx.send_payload(&a, "none", &Payload::default());
    ctx.send_empty(&a, "empty");
    ctx.send_bytes(&a, "raw", &[9]);
    ctx.send_after_patch(&a, "later", &1);
    ctx.broadcast_with("b", &(), crate::BroadcastOptions::new().except(&a).after_patch());
    ctx.broadcast_bytes("bb", &[1], crate::BroadcastOptions::new());
    let out = |kind: MessageType, payload: Option<&[u8]>, bytes, after_patch| Outbound {
        kind,
        payload: payload.map(serde_bytes::ByteBuf::from),
        bytes,
        after_patch,
    };
    let s = |s: &str| MessageType::Str(s.into());
    let send = |message| Effect::Send { to: "a".into(), message };
    assert_eq!(
        ctx.take_effects(),
        [
            send(out(s("hello"), Some(b"\x81\xa9sessionId\xa1a"), false, false)),
            send(out(MessageType::Num(7.0), Some(&[0xcc, 0x01]), false, false)),
            send(out(s("none"), None, false, false)),
            send(out(s("empty"), None, false, false)),
            send(out(s("raw"), Some(&[9]), true, false)),
            send(out(s("later"), Some(&[1]), false, true)),
            Effect::Broadcast { message: out(s("b"), Some(&[0xc0]), false, true), except: vec!["a".into()] },
            Effect::Broadcast { message: out(s("bb"), Some(&[1]), true, false), except: vec![] },
        ]
    );
}
