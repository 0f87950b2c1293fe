use super::*;
use crate::{
    Auth, AuthContext, Client, Ctx, KeyExt, Message, MessageTypeExt, OpId, PresenceValueExt, TimerId,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// A clock room: options set timers, messages drive the rest of the API.
#[derive(Default)]
struct Clock {
    fired: Vec<(u64, u64)>,
    interval: Option<TimerId>,
}

#[derive(Deserialize)]
struct Options {
    every: u64,
    once: u64,
    #[serde(default)]
    refuse: Option<String>,
}

impl Room for Clock {
    const NAME: &'static str = "clock";
    type State = ();
    type UserData = ();
    const AUTH: bool = true;

    fn default_options() -> Option<Value> {
        Some(Value::Map(vec![("every".into(), 100.into()), ("once".into(), 250.into())]))
    }

    fn on_auth(auth: &AuthContext) -> Auth {
        match &auth.token {
            Some(token) => Auth::accept_with(token.as_str()),
            None => Auth::deny(),
        }
    }

    fn on_create(ctx: &mut Ctx, options: Payload) -> Result<Self, RoomError> {
        let options: Options = options.decode()?;
        if let Some(reason) = options.refuse {
            return Err(RoomError::new(reason));
        }
        let interval = ctx.set_interval(options.every);
        ctx.set_timeout(options.once);
        ctx.set_metadata(&json!({"every": options.every}));
        Ok(Clock { interval: Some(interval), ..Clock::default() })
    }

    fn on_join(
        &mut self,
        ctx: &mut Ctx,
        client: &Client,
        options: Payload,
        auth: Payload,
    ) -> Result<(), RoomError> {
        if options.get("refuse").is_some() {
            return Err(RoomError::with_code(4100, "full"));
        }
        let auth: Option<String> = auth.decode()?;
        ctx.broadcast("hello", &(client.session_id(), auth));
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
        match message.kind.as_str() {
            Some("stop") => ctx.clear_timer(self.interval.take().expect("running")),
            Some("leave") => ctx.leave(client, 4001),
            Some("private") => ctx.set_private(true),
            Some("end") => ctx.disconnect(4002),
            _ => {}
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx, timer: TimerId) {
        self.fired.push((timer.as_u64(), ctx.now() - TestRoom::<Clock>::START_MS));
    }
}

#[test]
fn advance_fires_due_timers_at_their_time() {
    let mut room = TestRoom::<Clock>::create(()).unwrap();
    assert_eq!(room.pending_timers(), 2);
    room.advance(99);
    assert!(room.room().fired.is_empty());
    room.advance(251);
    assert_eq!(room.room().fired, [(1, 100), (1, 200), (2, 250), (1, 300)]);
    assert_eq!(room.now(), TestRoom::<Clock>::START_MS + 350);
    assert_eq!(room.pending_timers(), 1);

    room.join("a", ()).unwrap();
    room.message_empty("a", "stop");
    room.advance(1_000);
    assert_eq!(room.room().fired.len(), 4);
    assert_eq!(room.pending_timers(), 0);
}

#[test]
fn create_merges_defaults_under_options_and_reports_failure() {
    let room = TestRoom::<Clock>::create(json!({"every": 7})).unwrap();
    assert_eq!(room.metadata::<Json>(), Some(json!({"every": 7})));

    let err = TestRoom::<Clock>::create(json!({"refuse": "closed"})).err().unwrap();
    assert_eq!(err, RoomError::with_code(523, "closed"));
}

#[test]
fn auth_and_join_with_auth() {
    assert_eq!(TestRoom::<Clock>::auth((), None), AuthDecision::Reject { message: "onAuth failed".into() });
    let AuthDecision::AcceptWith { auth, session_id: None, .. } = TestRoom::<Clock>::auth((), Some("t0k"))
    else {
        panic!("expected AcceptWith");
    };
    let mut room = TestRoom::<Clock>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room.join_with_auth("b", (), Payload::new(auth).value().unwrap()).unwrap();
    let hello: Vec<(String, Option<String>)> = room.sent_to("a", "hello");
    assert_eq!(hello, [("a".into(), None), ("b".into(), Some("t0k".into()))]);
    assert_eq!(room.sent_to::<Json>("b", "hello"), [json!(["b", "t0k"])]);

    let err = room.join("c", json!({"refuse": true})).unwrap_err();
    assert_eq!(err, RoomError::with_code(4100, "full"));
    assert_eq!(room.clients(), ["a", "b"]);
}

#[test]
fn state_helpers_outlive_take_effects() {
    let mut room = TestRoom::<Clock>::create(()).unwrap();
    room.join("a", ()).unwrap();
    assert_eq!(room.take_effects().len(), 4);
    room.message_empty("a", "leave");
    room.message_empty("a", "private");
    room.message_empty("a", "end");
    assert_eq!(room.take_effects().len(), 3);
    assert!(room.take_effects().is_empty());
    assert_eq!(room.kicked("a"), Some(Some(4001)));
    assert!(room.is_private());
    assert!(!room.is_locked());
    assert_eq!(room.disconnected(), Some(4002));
    assert_eq!(room.max_clients(), None);
    assert_eq!(room.allowed_reconnection("a"), None);
}

/// Runs the presence operations and room queries its clients send, and logs the answers.
#[derive(Default)]
struct Kv {
    log: Vec<String>,
    answers: Vec<(OpId, Result<PresenceValue, String>)>,
}

impl Room for Kv {
    const NAME: &'static str = "kv";
    type State = ();
    type UserData = ();

    fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
        Ok(Kv::default())
    }

    fn on_message(&mut self, ctx: &mut Ctx, _client: &Client, message: Message) {
        match message.kind.as_str() {
            Some("op") => {
                let op = ctx.presence().run(message.payload.decode().unwrap());
                self.log.push(format!("asked {op}"));
            }
            Some("rooms") => {
                let name: Option<String> = message.payload.decode().unwrap();
                let op = ctx.query_rooms(name.as_deref());
                self.log.push(format!("asked {op}"));
            }
            _ => {}
        }
    }

    fn on_presence(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<PresenceValue, String>) {
        self.log.push(format!("{op} {result:?}"));
        self.answers.push((op, result));
    }

    fn on_presence_message(&mut self, _ctx: &mut Ctx, topic: &str, message: &str) {
        self.log.push(format!("{topic}: {message}"));
    }

    fn on_rooms(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<Vec<Listing>, String>) {
        let ids = result.map(|listings| listings.into_iter().map(|l| l.room_id).collect::<Vec<_>>());
        self.log.push(format!("{op} rooms {ids:?}"));
    }

    fn on_dispose(&mut self, ctx: &mut Ctx) {
        ctx.presence().set("disposed", "yes");
    }
}

fn kv() -> TestRoom<Kv> {
    let mut room = TestRoom::<Kv>::create(()).unwrap();
    room.join("a", ()).unwrap();
    room
}

/// Has the room run `op`, and returns the answer its `on_presence` got.
fn ask(room: &mut TestRoom<Kv>, op: PresenceOp) -> Result<PresenceValue, String> {
    let asked = room.room().answers.len();
    room.message("a", "op", &op);
    assert_eq!(room.room().answers.len(), asked + 1, "one answer to {op:?}");
    room.room().answers[asked].1.clone()
}

fn log(room: &TestRoom<Kv>) -> Vec<&str> {
    room.room().log.iter().map(String::as_str).collect()
}

#[test]
fn presence_answers_every_operation_like_the_host() {
    use PresenceValue::{Bool, Int, Map, Nil, Str};
    let l = |name: &str| Key::local(name);
    let s = |v: &str| v.to_owned();
    let list = |items: &[&str]| PresenceValue::List(items.iter().map(|i| s(i)).collect());
    let wrong = |key: &str| Err(format!("wrong kind of value at key {key:?}"));
    let cases = [
        (PresenceOp::Get { key: l("s") }, Ok(Nil)),
        (PresenceOp::Set { key: l("s"), value: s("v"), ttl_ms: None }, Ok(Nil)),
        (PresenceOp::Get { key: l("s") }, Ok(Str(s("v")))),
        (PresenceOp::Exists { key: l("s") }, Ok(Bool(true))),
        (PresenceOp::Incr { key: l("s"), by: 1 }, wrong("s")),
        (PresenceOp::Del { key: l("s") }, Ok(Nil)),
        (PresenceOp::Exists { key: l("s") }, Ok(Bool(false))),
        (PresenceOp::Incr { key: l("n"), by: 5 }, Ok(Int(5))),
        (PresenceOp::Incr { key: l("n"), by: -7 }, Ok(Int(-2))),
        (PresenceOp::Get { key: l("n") }, Ok(Str(s("-2")))),
        (PresenceOp::SAdd { key: l("set"), member: s("b") }, Ok(Bool(true))),
        (PresenceOp::SAdd { key: l("set"), member: s("a") }, Ok(Bool(true))),
        (PresenceOp::SAdd { key: l("set"), member: s("a") }, Ok(Bool(false))),
        (PresenceOp::SIsMember { key: l("set"), member: s("a") }, Ok(Bool(true))),
        (PresenceOp::SIsMember { key: l("set"), member: s("z") }, Ok(Bool(false))),
        (PresenceOp::SCard { key: l("set") }, Ok(Int(2))),
        (PresenceOp::SMembers { key: l("set") }, Ok(list(&["a", "b"]))),
        (PresenceOp::SAdd { key: l("other"), member: s("b") }, Ok(Bool(true))),
        (PresenceOp::SInter { keys: vec![l("set"), l("other")] }, Ok(list(&["b"]))),
        (PresenceOp::SInter { keys: vec![l("set"), l("none")] }, Ok(list(&[]))),
        (PresenceOp::SInter { keys: vec![l("set"), l("n")] }, wrong("n")),
        (PresenceOp::SRem { key: l("set"), member: s("a") }, Ok(Bool(true))),
        (PresenceOp::SRem { key: l("set"), member: s("a") }, Ok(Bool(false))),
        (PresenceOp::SMembers { key: l("none") }, Ok(list(&[]))),
        (PresenceOp::SCard { key: l("none") }, Ok(Int(0))),
        (PresenceOp::SIsMember { key: l("n"), member: s("a") }, wrong("n")),
        (PresenceOp::HSet { key: l("h"), field: s("f"), value: s("1") }, Ok(Bool(true))),
        (PresenceOp::HSet { key: l("h"), field: s("f"), value: s("2") }, Ok(Bool(false))),
        (PresenceOp::HIncrBy { key: l("h"), field: s("f"), by: 3 }, Ok(Int(5))),
        (PresenceOp::HIncrBy { key: l("h"), field: s("g"), by: -1 }, Ok(Int(-1))),
        (PresenceOp::HGet { key: l("h"), field: s("f") }, Ok(Str(s("5")))),
        (PresenceOp::HGet { key: l("h"), field: s("x") }, Ok(Nil)),
        (PresenceOp::HGetAll { key: l("h") }, Ok(Map(vec![(s("f"), s("5")), (s("g"), s("-1"))]))),
        (PresenceOp::HLen { key: l("h") }, Ok(Int(2))),
        (PresenceOp::HDel { key: l("h"), field: s("g") }, Ok(Bool(true))),
        (PresenceOp::HDel { key: l("h"), field: s("g") }, Ok(Bool(false))),
        (PresenceOp::HLen { key: l("none") }, Ok(Int(0))),
        (PresenceOp::HGetAll { key: l("none") }, Ok(Map(vec![]))),
        (PresenceOp::HGet { key: l("set"), field: s("f") }, wrong("set")),
        (PresenceOp::HSet { key: l("h"), field: s("t"), value: s("text") }, Ok(Bool(true))),
        (PresenceOp::HIncrBy { key: l("h"), field: s("t"), by: 1 }, wrong("h")),
        (PresenceOp::RPush { key: l("l"), value: s("b") }, Ok(Int(1))),
        (PresenceOp::LPush { key: l("l"), value: s("a") }, Ok(Int(2))),
        (PresenceOp::RPush { key: l("l"), value: s("c") }, Ok(Int(3))),
        (PresenceOp::LLen { key: l("l") }, Ok(Int(3))),
        (PresenceOp::LPop { key: l("l") }, Ok(Str(s("a")))),
        (PresenceOp::RPop { key: l("l") }, Ok(Str(s("c")))),
        (PresenceOp::RPop { key: l("l") }, Ok(Str(s("b")))),
        (PresenceOp::RPop { key: l("l") }, Ok(Nil)),
        (PresenceOp::LPop { key: l("none") }, Ok(Nil)),
        (PresenceOp::LLen { key: l("none") }, Ok(Int(0))),
        (PresenceOp::LPush { key: l("h"), value: s("x") }, wrong("h")),
        (PresenceOp::Expire { key: l("none"), ttl_ms: 10 }, Ok(Bool(false))),
        (PresenceOp::Publish { topic: l("t"), message: s("m") }, Ok(Int(0))),
        (PresenceOp::Subscribe { topic: l("t") }, Ok(Nil)),
        (PresenceOp::Unsubscribe { topic: l("t") }, Ok(Nil)),
    ];
    let mut room = kv();
    for (op, expected) in cases {
        assert_eq!(ask(&mut room, op.clone()), expected, "{op:?}");
    }
    assert_eq!(room.presence_ops().len(), 56);
}

#[test]
fn time_to_live_follows_the_test_clock() {
    let mut room = kv();
    let k = || Key::local("k");
    let get = |room: &mut TestRoom<Kv>| room.run_presence(PresenceOp::Get { key: k() });
    ask(&mut room, PresenceOp::Set { key: k(), value: "v".into(), ttl_ms: Some(100) }).unwrap();
    room.advance(99);
    assert_eq!(get(&mut room), Ok(PresenceValue::Str("v".into())));
    room.advance(1);
    assert_eq!(get(&mut room), Ok(PresenceValue::Nil));
    assert_eq!(ask(&mut room, PresenceOp::Expire { key: k(), ttl_ms: 5 }), Ok(PresenceValue::Bool(false)));

    ask(&mut room, PresenceOp::RPush { key: k(), value: "v".into() }).unwrap();
    assert_eq!(ask(&mut room, PresenceOp::Expire { key: k(), ttl_ms: 5 }), Ok(PresenceValue::Bool(true)));
    room.advance(5);
    assert_eq!(ask(&mut room, PresenceOp::LLen { key: k() }), Ok(PresenceValue::Int(0)));

    // Setting a key again without a time to live keeps it.
    ask(&mut room, PresenceOp::Set { key: k(), value: "1".into(), ttl_ms: Some(5) }).unwrap();
    ask(&mut room, PresenceOp::Set { key: k(), value: "2".into(), ttl_ms: None }).unwrap();
    room.advance(1_000);
    assert_eq!(get(&mut room), Ok(PresenceValue::Str("2".into())));
}

#[test]
fn local_names_are_scoped_to_the_room_type() {
    let mut room = kv();
    let set = |key: Key, value: &str| PresenceOp::Set { key, value: value.into(), ttl_ms: None };
    ask(&mut room, set(Key::local("k"), "local")).unwrap();
    ask(&mut room, set(Key::global("k"), "global")).unwrap();

    let get = |key: Key| PresenceOp::Get { key };
    let str = |v: &str| Ok(PresenceValue::Str(v.into()));
    assert_eq!(room.run_presence(get(Key::local("k"))), str("local"));
    assert_eq!(room.run_presence(get(Key::global("k"))), str("global"));
    assert_eq!(room.run_presence_as("other", get(Key::local("k"))), Ok(PresenceValue::Nil));
    assert_eq!(room.run_presence_as("other", get(Key::global("k"))), str("global"));
    // A global name that looks like the room type's prefix is still another key.
    assert_eq!(room.run_presence(get(Key::global("kv:k"))), Ok(PresenceValue::Nil));
}

#[test]
fn publications_reach_the_room_on_the_topics_it_subscribed_to() {
    let mut room = kv();
    let news = || Key::global("news");
    ask(&mut room, PresenceOp::Subscribe { topic: news() }).unwrap();
    ask(&mut room, PresenceOp::Subscribe { topic: Key::local("chat") }).unwrap();
    assert!(room.is_subscribed(news()) && room.is_subscribed("chat"));
    assert!(!room.is_subscribed("news") && !room.is_subscribed(Key::global("chat")));

    // The room's own publication: the message, then the answer, in one batch.
    let published = ask(&mut room, PresenceOp::Publish { topic: news(), message: "mine".into() });
    assert_eq!(published, Ok(PresenceValue::Int(1)));
    assert_eq!(log(&room)[4..], ["asked op 3", "news: mine", "op 3 Ok(Int(1))"]);

    assert!(room.deliver_presence_message(news(), "from afar"));
    assert!(room.deliver_presence_message("chat", "same type"));
    assert!(!room.deliver_presence_message("news", "local news"));
    let other = |topic: Key| PresenceOp::Publish { topic, message: "other type".into() };
    assert_eq!(room.run_presence_as("other", other(Key::local("chat"))), Ok(PresenceValue::Int(0)));
    assert_eq!(room.run_presence_as("other", other(news())), Ok(PresenceValue::Int(1)));
    // Another room subscribing does not subscribe this one.
    room.run_presence(PresenceOp::Subscribe { topic: Key::local("quiet") }).unwrap();
    assert!(!room.deliver_presence_message("quiet", "unheard"));
    assert_eq!(log(&room)[7..], ["news: from afar", "chat: same type", "news: other type"]);

    ask(&mut room, PresenceOp::Unsubscribe { topic: news() }).unwrap();
    assert!(!room.deliver_presence_message(news(), "gone"));
    assert!(room.is_subscribed("chat"));
    room.dispose();
    assert!(!room.is_subscribed("chat"));
    assert!(!room.deliver_presence_message("chat", "disposed"));
}

#[test]
fn answers_arrive_right_after_the_call_and_may_ask_again() {
    /// Pops its queue until it is empty, one answer at a time.
    #[derive(Default)]
    struct Drain(Vec<String>);

    impl Room for Drain {
        const NAME: &'static str = "drain";
        type State = ();
        type UserData = ();

        fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
            for item in ["a", "b", "c"] {
                ctx.presence().rpush("queue", item);
            }
            ctx.presence().lpop("queue");
            Ok(Drain::default())
        }

        fn on_presence(&mut self, ctx: &mut Ctx, _op: OpId, result: Result<PresenceValue, String>) {
            if let Some(item) = result.unwrap().into_string() {
                self.0.push(item);
                ctx.presence().lpop("queue");
            }
        }
    }

    let room = TestRoom::<Drain>::create(()).unwrap();
    assert_eq!(room.room().0, ["a", "b", "c"]);
    // Three pushes, and a pop for each item and the one that found the queue empty.
    assert_eq!(room.presence_ops().len(), 7);
}

#[test]
#[should_panic(expected = "keeps asking")]
fn a_room_asking_in_every_answer_fails_the_test() {
    struct Loop;

    impl Room for Loop {
        const NAME: &'static str = "loop";
        type State = ();
        type UserData = ();

        fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
            ctx.presence().get("k");
            Ok(Loop)
        }

        fn on_presence(&mut self, ctx: &mut Ctx, _op: OpId, _result: Result<PresenceValue, String>) {
            ctx.presence().get("k");
        }
    }

    let _ = TestRoom::<Loop>::create(());
}

#[test]
fn held_answers_wait_for_release_or_a_hand_made_answer() {
    let mut room = kv();
    room.hold_answers();
    room.message("a", "op", &PresenceOp::Incr { key: Key::local("n"), by: 1 });
    room.message("a", "op", &PresenceOp::Incr { key: Key::local("n"), by: 10 });
    room.message("a", "rooms", &());
    let held = room.held_ops();
    assert_eq!(held.iter().map(|op| op.as_u64()).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(room.presence_ops().len(), 2);
    assert_eq!(room.room_queries(), [None]);
    assert!(room.room().answers.is_empty());

    room.answer_presence(held[0], Err("presence unavailable: down".into()));
    assert_eq!(room.room().answers, [(held[0], Err("presence unavailable: down".into()))]);
    assert_eq!(room.held_ops(), held[1..]);

    room.release_answers();
    assert_eq!(room.room().answers[1], (held[1], Ok(PresenceValue::Int(10))));
    assert_eq!(
        log(&room)[3..],
        ["op 1 Err(\"presence unavailable: down\")", "op 2 Ok(Int(10))", "op 3 rooms Ok([])"]
    );
    assert!(room.held_ops().is_empty());
    // Answers come right away again.
    assert_eq!(ask(&mut room, PresenceOp::Incr { key: Key::local("n"), by: 1 }), Ok(PresenceValue::Int(11)));
}

#[test]
fn room_queries_answer_with_the_listings_set() {
    let mut room = kv();
    room.set_rooms(vec![listing("kv", "r1"), listing("other", "r2"), listing("kv", "r3")]);
    room.message("a", "rooms", &"kv");
    room.message("a", "rooms", &());
    room.message("a", "rooms", &"none");
    assert_eq!(room.room_queries(), [Some("kv".into()), None, Some("none".into())]);
    assert_eq!(
        log(&room),
        [
            "asked op 1",
            "op 1 rooms Ok([\"r1\", \"r3\"])",
            "asked op 2",
            "op 2 rooms Ok([\"r1\", \"r2\", \"r3\"])",
            "asked op 3",
            "op 3 rooms Ok([])",
        ]
    );

    room.hold_answers();
    room.message("a", "rooms", &());
    let op = room.held_ops()[0];
    room.answer_rooms(op, Err("driver unavailable".into()));
    assert_eq!(log(&room).last(), Some(&"op 4 rooms Err(\"driver unavailable\")"));
    room.release_answers();
    assert_eq!(log(&room).len(), 8);
}

#[test]
fn a_disposed_room_gets_no_answers_but_its_last_operations_apply() {
    let mut room = kv();
    room.take_effects();
    room.dispose();
    assert_eq!(
        room.presence_ops(),
        [PresenceOp::Set { key: Key::local("disposed"), value: "yes".into(), ttl_ms: None }]
    );
    assert!(room.room().answers.is_empty());
    let get = PresenceOp::Get { key: Key::local("disposed") };
    assert_eq!(room.run_presence(get), Ok(PresenceValue::Str("yes".into())));
}
