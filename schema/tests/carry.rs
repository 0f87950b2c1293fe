//! Live migration: a state saved with serde and its `StateCarry`, restored in a new encoder that
//! continues the old encoder's stream byte for byte.

use odeon_schema::{ArraySchema, MapSchema, Schema, Shared, StateCarry, StateEncoder};
use serde::{Deserialize, Serialize};

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

#[derive(Schema, Default, Serialize, Deserialize, Debug)]
struct Item {
    kind: String,
    power: Option<u8>,
}

#[derive(Schema, Default, Serialize, Deserialize, Debug)]
struct Player {
    x: f64,
    y: f64,
    name: String,
    tags: ArraySchema<String>,
    gear: Option<Shared<Item>>,
}

#[derive(Schema, Default, Serialize, Deserialize, Debug)]
struct Child {
    level: u32,
    items: ArraySchema<Item>,
}

#[derive(Schema, Default, Serialize, Deserialize, Debug)]
#[schema(rename_all = "camelCase")]
struct State {
    players: MapSchema<Player>,
    scores: MapSchema<i32>,
    child: Shared<Child>,
    spare_child: Option<Shared<Child>>,
    log: ArraySchema<String>,
    units: ArraySchema<Item>,
    tick: Option<u16>,
    #[schema(skip)]
    #[serde(skip)]
    cache: u32,
}

fn player(name: &str, x: f64) -> Player {
    Player { x, y: -x, name: name.into(), tags: ["t"].into_iter().collect(), gear: None }
}

fn item(kind: &str) -> Item {
    Item { kind: kind.into(), power: Some(3) }
}

fn get(enc: &StateEncoder<State>, key: &str) -> Shared<Player> {
    enc.state().players.get(key).cloned().expect(key)
}

/// An encoder with a history: map indexes with gaps, a key re-added in the same window and in a
/// later one, children replaced, optional fields set and unset.
fn old_encoder() -> StateEncoder<State> {
    let mut players = MapSchema::new();
    for (k, x) in [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)] {
        players.insert(k, player(k, x));
    }
    let state = State {
        players,
        child: Child { level: 1, items: [item("sword")].into_iter().collect() }.into(),
        log: ["x", "y"].into_iter().collect(),
        units: [item("u1"), item("u2")].into_iter().collect(),
        ..State::default()
    };
    let mut enc = StateEncoder::new(state);
    enc.full_state();

    enc.state_mut().set_tick(Some(1));
    enc.state_mut().players_mut().remove("b");
    assert!(enc.patch().is_some());

    let c = enc.state_mut().players_mut().remove("c").expect("c");
    enc.state_mut().players_mut().insert("c", c);
    assert!(enc.patch().is_some());

    enc.state_mut().players_mut().remove("d");
    assert!(enc.patch().is_some());
    enc.state_mut().players_mut().insert("d", player("d", 5.0));
    enc.state_mut().players_mut().insert("tmp", player("tmp", 0.0));
    assert!(enc.patch().is_some());
    enc.state_mut().players_mut().remove("tmp");
    assert!(enc.patch().is_some());
    assert_eq!(enc.patch(), None);

    {
        let mut s = enc.state_mut();
        s.set_spare_child(Some(Child::default().into()));
        s.log_mut().push("z");
        s.log_mut().remove(0);
        s.units_mut().push(item("u3"));
        s.scores_mut().insert("a", 10);
        s.scores_mut().insert("b", -3);
        s.set_tick(None);
    }
    get(&enc, "a").borrow_mut().set_x(1.5);
    get(&enc, "a").borrow_mut().set_gear(Some(item("shield").into()));
    assert!(enc.patch().is_some());

    enc.state_mut().set_child(Shared::new(Child { level: 2, items: ArraySchema::new() }));
    enc.state_mut().scores_mut().remove("a");
    assert!(enc.patch().is_some());
    *enc.state_mut().cache_mut() = 7; // not synchronised, not carried
    enc
}

/// The value and the carry through rmp-serde, as the SDK moves them between instances.
fn migrate(old: &mut StateEncoder<State>) -> (State, StateCarry) {
    let carry = old.carry().expect("carry");
    let state_bytes = rmp_serde::to_vec(&*old.state()).expect("serialize state");
    let carry_bytes = rmp_serde::to_vec(&carry).expect("serialize carry");
    let state: State = rmp_serde::from_slice(&state_bytes).expect("deserialize state");
    let restored: StateCarry = rmp_serde::from_slice(&carry_bytes).expect("deserialize carry");
    assert_eq!(restored, carry);
    (state, restored)
}

fn adopted(old: &mut StateEncoder<State>) -> StateEncoder<State> {
    let (state, carry) = migrate(old);
    let mut new = StateEncoder::new(state);
    new.adopt(&carry).expect("adopt");
    new
}

/// The same changes, applied to either encoder.
fn mutate(enc: &mut StateEncoder<State>, round: u32) {
    match round {
        0 => {
            get(enc, "a").borrow_mut().set_x(99.0);
            let mut s = enc.state_mut();
            s.players_mut().insert("e", player("e", 6.0));
            s.players_mut().remove("c");
            s.set_tick(Some(9));
        }
        1 => {
            let mut s = enc.state_mut();
            s.log_mut().push("w");
            s.units_mut().set(0, item("u0"));
            s.set_child(Shared::new(Child { level: 3, items: [item("bow")].into_iter().collect() }));
            s.players_mut().insert("c", player("c", 7.0));
        }
        2 => {
            let a = enc.state_mut().players_mut().remove("a").expect("a");
            enc.state_mut().players_mut().insert("a", a);
            get(enc, "d").borrow_mut().tags_mut().push("new");
            let mut s = enc.state_mut();
            s.scores_mut().remove("b");
            s.set_spare_child(None);
        }
        3 => {
            get(enc, "d").borrow_mut().set_name("dee");
            enc.state_mut().log_mut().insert(0, "first");
            enc.state().child.borrow_mut().items_mut().push(item("axe"));
        }
        4 => {
            let mut s = enc.state_mut();
            s.scores_mut().clear();
            s.units_mut().clear();
            let f = Player { gear: Some(item("ring").into()), ..player("f", 8.0) };
            s.players_mut().insert("f", f);
        }
        _ => {}
    }
}

#[test]
fn adopted_encoder_continues_the_stream_byte_for_byte() {
    let mut old = old_encoder();
    let mut new = adopted(&mut old);
    assert_eq!(hex(&new.full_state()), hex(&old.full_state()));
    assert_eq!(new.to_json(), old.to_json());
    assert!(!new.has_changes());
    assert_eq!(new.patch(), None);
    assert_eq!(old.patch(), None);

    for round in 0..6 {
        mutate(&mut old, round);
        mutate(&mut new, round);
        if round == 3 {
            // A client joining mid-window: the next patch must suit it too.
            assert_eq!(hex(&new.full_state()), hex(&old.full_state()), "round {round} mid-window");
        }
        let (a, b) = (old.patch(), new.patch());
        assert_eq!(b.as_deref().map(hex), a.as_deref().map(hex), "round {round} patch");
        assert_eq!(a.is_none(), round == 5, "round {round} changes something");
        assert_eq!(hex(&new.full_state()), hex(&old.full_state()), "round {round} full state");
    }
    assert_eq!(new.to_json(), old.to_json());
}

#[test]
fn a_migrated_state_migrates_again() {
    let mut old = old_encoder();
    let mut mid = adopted(&mut old);
    mutate(&mut old, 0);
    mutate(&mut mid, 0);
    assert_eq!(mid.patch(), old.patch());
    let mut new = adopted(&mut mid);
    mutate(&mut old, 1);
    mutate(&mut new, 1);
    assert_eq!(new.patch(), old.patch());
    assert_eq!(new.full_state(), old.full_state());
}

#[test]
fn carry_refuses_pending_changes() {
    let mut enc = old_encoder();
    enc.state_mut().set_tick(Some(42));
    let err = enc.carry().expect_err("pending");
    assert!(err.to_string().contains("changes are pending"), "{err}");
    enc.patch();
    enc.carry().expect("patched");

    let mut never_sent = StateEncoder::new(State::default());
    assert!(never_sent.carry().is_err());
}

#[derive(Schema, Default, Serialize, Deserialize)]
struct Other {
    tick: Option<u16>,
}

#[test]
fn adopt_refuses_another_schema() {
    let mut old = old_encoder();
    let carry = old.carry().expect("carry");
    let mut other = StateEncoder::new(Other::default());
    let err = other.adopt(&carry).expect_err("schema");
    assert_eq!(err.to_string(), "the state's schema differs from the one clients decoded");
}

/// Adopts `carry` into the restored state after `change`, returning the error.
fn refused(change: impl FnOnce(&mut StateEncoder<State>)) -> String {
    let mut old = old_encoder();
    let (state, carry) = migrate(&mut old);
    let mut new = StateEncoder::new(state);
    change(&mut new);
    new.adopt(&carry).expect_err("adopt must fail").to_string()
}

#[test]
fn adopt_refuses_a_restored_state_that_differs() {
    let err = refused(|enc| get(enc, "a").borrow_mut().set_x(0.25));
    assert!(
        err.starts_with("the restored state differs from the state clients hold: in state.players[\"a\"]"),
        "{err}"
    );

    let err = refused(|enc| _ = enc.state_mut().players_mut().remove("d"));
    assert!(err.ends_with("it lacks state.players[\"d\"]"), "{err}");

    let err = refused(|enc| _ = enc.state_mut().players_mut().insert("zz", player("zz", 0.0)));
    assert!(err.ends_with("it has state.players[\"zz\"], which clients do not hold"), "{err}");

    let err = refused(|enc| _ = enc.state_mut().scores_mut().insert("new", 1));
    assert!(err.contains("in state.scores "), "{err}");

    let err = refused(|enc| enc.state_mut().set_tick(Some(3)));
    assert!(err.contains(": in state ("), "{err}");

    let err = refused(|enc| get(enc, "a").borrow_mut().set_gear(None));
    assert!(err.ends_with("it lacks state.players[\"a\"].gear"), "{err}");

    let err = refused(|enc| enc.state().child.borrow_mut().items_mut().push(item("extra")));
    assert!(err.contains("it has state.child.items[0], which clients do not hold"), "{err}");
}

#[test]
fn adopt_forgets_changes_made_to_the_restored_value() {
    let mut old = old_encoder();
    let (state, carry) = migrate(&mut old);
    let mut new = StateEncoder::new(state);
    // Changes undone before adopt: the value is the one clients hold, the records are stale.
    get(&new, "a").borrow_mut().set_x(0.0);
    get(&new, "a").borrow_mut().set_x(1.5);
    {
        let mut s = new.state_mut();
        s.set_tick(Some(4));
        s.set_tick(None);
        let b = s.scores_mut().remove("b").expect("b");
        s.scores_mut().insert("b", b);
        s.log_mut().set(0, "changed");
        s.log_mut().set(0, "y");
    }
    new.adopt(&carry).expect("adopt");
    // No empty patch first: it would drop the stale records by itself.
    for round in 0..3 {
        mutate(&mut old, round);
        mutate(&mut new, round);
        assert_eq!(new.patch(), old.patch(), "round {round}");
    }
}

#[test]
fn adopt_refuses_a_map_that_numbers_keys_differently() {
    let err = refused(|enc| {
        enc.state_mut().players_mut().insert("zz", player("zz", 0.0));
        enc.state_mut().players_mut().remove("zz");
    });
    assert!(err.ends_with("state.players numbers new keys from 7, clients from 6 (restore maps with their serde implementation)"), "{err}");
}

#[test]
fn adopt_needs_a_fresh_encoder() {
    let mut old = old_encoder();
    let (state, carry) = migrate(&mut old);
    let mut new = StateEncoder::new(state);
    new.full_state();
    assert!(new.adopt(&carry).is_err());
}

#[test]
fn an_instance_placed_twice_is_not_carried() {
    let child = Shared::new(Child::default());
    let state = State { child: child.clone(), spare_child: Some(child), ..State::default() };
    let mut old = StateEncoder::new(state);
    old.full_state();
    let (state, carry) = migrate(&mut old);
    let mut new = StateEncoder::new(state);
    let err = new.adopt(&carry).expect_err("two copies").to_string();
    assert!(err.contains("two instances at state.child and state.spareChild"), "{err}");
}

#[test]
fn carry_round_trips_with_named_fields_too() {
    let mut old = old_encoder();
    let carry = old.carry().expect("carry");
    let bytes = rmp_serde::to_vec_named(&carry).expect("serialize");
    assert_eq!(rmp_serde::from_slice::<StateCarry>(&bytes).expect("deserialize"), carry);
}

#[derive(Schema, Default, Serialize, Deserialize)]
struct Scores {
    m: MapSchema<u8>,
    list: ArraySchema<u8>,
}

#[test]
fn map_serde_keeps_indexes_and_order() {
    let mut m: MapSchema<u8> = [("a", 1u8), ("b", 2), ("c", 3)].into_iter().collect();
    m.remove("b");
    m.insert("b", 4); // same window: keeps index 1, moves to the end
    m.remove("a");
    m.insert("x", 5);
    m.remove("x"); // the highest index is gone, the next index stays 4
    let bytes = rmp_serde::to_vec(&m).expect("serialize");
    let raw: (u32, Vec<(String, u32, u8)>) = rmp_serde::from_slice(&bytes).expect("format");
    assert_eq!(raw, (4, vec![("c".into(), 2, 3), ("b".into(), 1, 4)]));

    let restored: MapSchema<u8> = rmp_serde::from_slice(&bytes).expect("deserialize");
    assert_eq!(restored.keys().collect::<Vec<_>>(), ["c", "b"]);
    let mut enc = StateEncoder::new(Scores { m: restored, list: [5, 6].into_iter().collect() });
    // Entries by index: "b" at 1, "c" at 2.
    assert_eq!(
        hex(&enc.full_state()),
        "80 01 81 02 ff 01 80 01 a1 62 04 80 02 a1 63 03 ff 02 80 00 05 80 01 06"
    );
    assert_eq!(enc.patch(), None, "a restored map records no changes");
    enc.state_mut().m_mut().insert("d", 9);
    assert_eq!(hex(&enc.patch().expect("insert")), "ff 01 80 04 a1 64 09");
}

#[test]
fn malformed_maps_are_serde_errors() {
    type Raw = (u32, Vec<(&'static str, u32, u8)>);
    let cases: [(Raw, &str); 3] = [
        ((2, vec![("a", 0, 1), ("a", 1, 2)]), "map key \"a\" appears twice"),
        ((2, vec![("a", 0, 1), ("b", 0, 2)]), "map index 0 appears twice"),
        ((2, vec![("a", 2, 1)]), "map key \"a\" has index 2, not below the next index 2"),
    ];
    for (raw, message) in cases {
        let bytes = rmp_serde::to_vec(&raw).expect("serialize");
        let err = rmp_serde::from_slice::<MapSchema<u8>>(&bytes).expect_err("malformed");
        assert!(err.to_string().contains(message), "{err}");
    }
    assert!(rmp_serde::from_slice::<MapSchema<u8>>(&rmp_serde::to_vec(&[1, 2]).expect("ok")).is_err());
}

#[test]
fn shared_serializes_its_instance() {
    let shared = Shared::new(item("gem"));
    let bytes = rmp_serde::to_vec(&shared).expect("serialize");
    assert_eq!(bytes, rmp_serde::to_vec(&item("gem")).expect("serialize"));
    let back: Shared<Item> = rmp_serde::from_slice(&bytes).expect("deserialize");
    assert_eq!(back.borrow().kind, "gem");
    assert!(!Shared::ptr_eq(&back, &shared));
}

#[test]
fn carry_error_is_an_error() {
    let mut enc = StateEncoder::new(Other::default());
    let err: Box<dyn std::error::Error> = Box::new(enc.carry().expect_err("never sent"));
    assert!(err.to_string().contains("patch before carrying"));
}
