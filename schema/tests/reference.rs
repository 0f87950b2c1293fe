//! The byte examples of the protocol reference (§4 "Verified example" and the appendix arena
//! transcript, A.3 and A.4), reproduced through the public API.

use odeon_schema::{ArraySchema, MapSchema, Schema, SchemaVersion, Shared, StateEncoder};

/// Parses "80 01 ff …"; `"<text>"` stands for a schema string.
fn bytes(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for token in spec.split_whitespace() {
        if let Some(text) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            odeon_protocol::codec::encode_string(&mut out, text);
        } else {
            out.push(u8::from_str_radix(token, 16).unwrap_or_else(|_| panic!("bad byte {token}")));
        }
    }
    out
}

fn check(actual: &[u8], expected: &str) {
    let expected = bytes(expected);
    assert_eq!(hex(actual), hex(&expected));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[derive(Schema, Default)]
struct Player {
    x: f64,
    y: f64,
    name: String,
}

#[derive(Schema, Default)]
struct State {
    players: MapSchema<Player>,
    tick: Option<u16>,
    list: ArraySchema<String>,
}

/// The reference state: players→ref1, tick=7, list→ref2, "k1"→ref3 {x 1, y -2.5, name "ab"},
/// list ["hi"], already sent (the full state is the first patch).
fn example() -> StateEncoder<State> {
    let mut enc = StateEncoder::new(State::default());
    {
        let mut s = enc.state_mut();
        s.players_mut().insert("k1", Player { x: 1.0, y: -2.5, name: "ab".into() });
        s.set_tick(Some(7));
        s.list_mut().push("hi");
    }
    check(
        &enc.full_state(),
        r#"80 01 81 07 00 82 02 ff 01 80 00 "k1" 03 ff 03 80 01 81 ca 00 00 20 c0 82 "ab" ff 02 80 00 "hi""#,
    );
    enc
}

#[test]
fn verified_example_full_state() {
    let mut enc = example();
    assert_eq!(enc.patch(), None, "the first full state was the first patch");
    check(
        &enc.full_state(),
        r#"80 01 81 07 00 82 02 ff 01 80 00 "k1" 03 ff 03 80 01 81 ca 00 00 20 c0 82 "ab" ff 02 80 00 "hi""#,
    );
}

#[test]
fn verified_example_patches() {
    let mut enc = example();
    let player = enc.state().players.get("k1").cloned().expect("k1");
    player.borrow_mut().set_x(300.0);
    check(&enc.patch().expect("x"), "ff 03 80 cd 2c 01");

    enc.state_mut().players_mut().remove("k1");
    check(&enc.patch().expect("delete"), "ff 01 40 00");

    enc.state_mut().list_mut().clear();
    check(&enc.patch().expect("clear"), "ff 02 0a");

    enc.state_mut().set_tick(None);
    check(&enc.patch().expect("tick"), "41");
    assert_eq!(enc.patch(), None);
}

#[derive(Schema, Default)]
struct Child {
    v: f64,
}

#[derive(Schema, Default)]
struct Three {
    a: Shared<Child>,
    b: Shared<Child>,
    c: Shared<Child>,
}

#[test]
fn verified_example_replace_child() {
    let mut enc = StateEncoder::new(Three::default());
    enc.full_state();
    enc.state_mut().set_a(Child { v: 9.0 });
    check(&enc.patch().expect("replace"), "c0 04 ff 04 80 09");
}

#[derive(Schema, Default)]
struct Scores {
    a: ArraySchema<String>,
    b: ArraySchema<String>,
    m: MapSchema<f64>,
}

#[test]
fn verified_example_map_re_add() {
    let mut enc = StateEncoder::new(Scores::default());
    enc.state_mut().m_mut().extend([("a", 1.0), ("b", 2.0)]);
    check(&enc.full_state(), r#"80 01 81 02 82 03 ff 03 80 00 "a" 01 80 01 "b" 02"#);
    enc.state_mut().m_mut().remove("a");
    check(&enc.patch().expect("delete"), "ff 03 40 00");
    enc.state_mut().m_mut().insert("a", 7.0);
    check(&enc.patch().expect("re-add"), r#"ff 03 80 02 "a" 07"#);
}

#[test]
fn verified_example_reflection() {
    let v4 = StateEncoder::<State>::reflection(SchemaVersion::V4);
    check(
        &v4,
        r#"80 01 ff 01 80 00 02 80 01 07 ff 02 82 03 80 00 ff 03 80 00 04 80 01 05 80 02 06
           ff 04 80 "players" 82 01 81 "map" ff 05 80 "tick" 81 "uint16"
           ff 06 80 "list" 82 ff 81 "array:string"
           ff 07 82 08 80 01 ff 08 80 00 09 80 01 0a 80 02 0b
           ff 09 80 "x" 81 "number" ff 0a 80 "y" 81 "number" ff 0b 80 "name" 81 "string""#,
    );
    let v5 = StateEncoder::<State>::reflection(SchemaVersion::V5);
    assert_eq!(v5.len(), 145, "the 0.18 JOIN length prefix is cc 91");
    check(
        &v5,
        r#"80 01 ff 01 80 00 02 80 01 07 ff 02 80 00 82 03 ff 03 80 00 04 80 01 05 80 02 06
           ff 04 80 "players" 81 "map" 82 01 ff 05 80 "tick" 81 "uint16"
           ff 06 80 "list" 81 "array" 82 ff 83 "string"
           ff 07 80 01 82 08 ff 08 80 00 09 80 01 0a 80 02 0b
           ff 09 80 "x" 81 "number" ff 0a 80 "y" 81 "number" ff 0b 80 "name" 81 "string""#,
    );
}

#[derive(Schema, Default)]
struct ArenaPlayer {
    x: f64,
    y: f64,
}

#[derive(Schema, Default)]
struct Arena {
    players: MapSchema<ArenaPlayer>,
}

const SID_A: &str = "MhW2NG5DX";
const SID_B: &str = "UyyWFYn_9";

#[test]
fn arena_reflection_is_the_captured_handshake() {
    let v5 = StateEncoder::<Arena>::reflection(SchemaVersion::V5);
    assert_eq!(v5.len(), 79);
    check(
        &v5,
        "80 01 ff 01 80 00 02 80 01 05 ff 02 80 00 82 03 ff 03 80 00 04 ff 04 80 a7 70 6c 61 79 65 72 73
         81 a3 6d 61 70 82 01 ff 05 80 01 82 06 ff 06 80 00 07 80 01 08 ff 07 80 a1 78 81 a6 6e 75 6d 62 65
         72 ff 08 80 a1 79 81 a6 6e 75 6d 62 65 72",
    );
    check(
        &StateEncoder::<Arena>::reflection(SchemaVersion::V4),
        r#"80 01 ff 01 80 00 02 80 01 05 ff 02 82 03 80 00 ff 03 80 00 04
           ff 04 80 "players" 82 01 81 "map" ff 05 82 06 80 01 ff 06 80 00 07 80 01 08
           ff 07 80 "x" 81 "number" ff 08 80 "y" 81 "number""#,
    );
}

#[test]
fn arena_transcript() {
    let mut enc = StateEncoder::new(Arena::default());
    enc.state_mut().players_mut().insert(SID_A, ArenaPlayer::default());
    check(&enc.full_state(), &format!(r#"80 01 ff 01 80 00 "{SID_A}" 02 ff 02 80 00 81 00"#));

    let a = enc.state().players.get(SID_A).cloned().expect("A");
    a.borrow_mut().set_x(7.0);
    a.borrow_mut().set_y(9.0);
    check(&enc.patch().expect("move"), "ff 02 80 07 81 09");

    enc.state_mut().players_mut().insert(SID_B, ArenaPlayer::default());
    check(&enc.patch().expect("join"), &format!(r#"ff 01 80 01 "{SID_B}" 03 ff 03 80 00 81 00"#));

    a.borrow_mut().set_x(1.5);
    a.borrow_mut().set_y(-2.25);
    enc.patch();
    check(
        &enc.full_state(),
        &format!(
            r#"80 01 ff 01 80 00 "{SID_A}" 02 80 01 "{SID_B}" 03 ff 02 80 ca 00 00 c0 3f 81 ca 00 00 10 c0 ff 03 80 00 81 00"#
        ),
    );

    enc.state_mut().players_mut().remove(SID_B);
    check(&enc.patch().expect("leave"), "ff 01 40 01");
    assert_eq!(enc.patch(), None);
}
