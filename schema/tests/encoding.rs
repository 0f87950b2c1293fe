//! The encoder's rules beyond the reference examples: array edits, map indexes, refIds that are
//! never reused, full states taken while changes are pending, and the derive's options.

use odeon_schema::{ArraySchema, MapSchema, Schema, SchemaVersion, Shared, StateEncoder};

mod common;

use common::{check_patch, hex};

#[derive(Schema, Default)]
struct Names {
    list: ArraySchema<String>,
}

fn names(items: &[&str]) -> StateEncoder<Names> {
    let mut enc = StateEncoder::new(Names { list: items.iter().copied().collect() });
    enc.full_state();
    enc
}

#[test]
fn array_removals_are_deletes_at_the_clients_positions() {
    let mut enc = names(&["a", "b", "c", "d"]);
    enc.state_mut().list_mut().remove(1);
    enc.state_mut().list_mut().remove(1);
    // "b" then "c" (position 2 before the first removal compacted).
    check_patch(&mut enc, "ff 01 40 01 40 02");

    // Removing and appending go in one session: the ADD lands past the clients' holes.
    enc.state_mut().list_mut().pop();
    enc.state_mut().list_mut().push("e");
    check_patch(&mut enc, "ff 01 40 01 80 02 a1 65");
    assert_eq!(enc.state().list.as_slice(), ["a", "e"]);
}

#[test]
fn array_replacements_use_the_clients_positions_before_compaction() {
    let mut enc = names(&["a", "b", "c"]);
    let mut s = enc.state_mut();
    s.list_mut().remove(0);
    s.list_mut().set(1, "z");
    drop(s);
    check_patch(&mut enc, "ff 01 40 00 00 02 a1 7a");
}

#[test]
fn array_insertions_rewrite_after_the_removals_in_a_second_session() {
    let mut enc = names(&["a", "b", "c", "d", "e", "f"]);
    let mut s = enc.state_mut();
    s.list_mut().remove(5);
    s.list_mut().insert(4, "x");
    drop(s);
    // ["a","b","c","d","x","e"]: DELETE 5, then (compacted to 5 items) REPLACE 4, ADD 5.
    check_patch(&mut enc, "ff 01 40 05 ff 01 00 04 a1 78 80 05 a1 65");

    // Two removals and an insertion in front cost more than CLEAR and the items.
    let mut s = enc.state_mut();
    s.list_mut().remove(0);
    s.list_mut().remove(0);
    s.list_mut().insert(0, "y");
    drop(s);
    check_patch(&mut enc, "ff 01 0a 80 00 a1 79 80 01 a1 63 80 02 a1 64 80 03 a1 78 80 04 a1 65");
}

#[test]
fn array_edits_undone_before_the_patch_send_nothing() {
    let mut enc = names(&["a"]);
    enc.state_mut().list_mut().push("b");
    enc.state_mut().list_mut().pop();
    enc.state_mut().list_mut().clear();
    enc.state_mut().list_mut().clear();
    check_patch(&mut enc, "ff 01 0a");
    enc.state_mut().list_mut().retain(|_| false);
    check_patch(&mut enc, "");
}

#[derive(Schema, Default)]
struct Item {
    n: u8,
}

#[derive(Schema, Default)]
struct Bag {
    items: MapSchema<Item>,
    slots: ArraySchema<Item>,
    best: Option<Shared<Item>>,
}

#[test]
fn a_removed_instance_placed_again_gets_a_new_ref_id_and_is_sent_whole() {
    let mut enc = StateEncoder::new(Bag::default());
    enc.full_state();
    let item = Shared::new(Item { n: 1 });
    enc.state_mut().items_mut().insert("k", item.clone());
    check_patch(&mut enc, "ff 01 80 00 a1 6b 03 ff 03 80 01");
    enc.state_mut().items_mut().remove("k");
    check_patch(&mut enc, "ff 01 40 00");
    // Every client garbage-collected refId 3 and key index 0.
    enc.state_mut().items_mut().insert("k", item.clone());
    check_patch(&mut enc, "ff 01 80 01 a1 6b 04 ff 04 80 01");
    // Moved within one window, the instance keeps its refId.
    enc.state_mut().items_mut().remove("k");
    enc.state_mut().set_best(item.clone());
    check_patch(&mut enc, "82 04 ff 01 40 01");
}

#[test]
fn a_key_removed_and_set_again_before_the_patch_keeps_its_index() {
    let mut enc = StateEncoder::new(Bag::default());
    enc.state_mut().items_mut().insert("k", Item { n: 1 });
    enc.full_state();
    enc.state_mut().items_mut().remove("k");
    enc.state_mut().items_mut().insert("k", Item { n: 2 });
    check_patch(&mut enc, "ff 01 c0 00 a1 6b 04 ff 04 80 02");
    enc.state_mut().items_mut().clear();
    enc.state_mut().items_mut().insert("j", Item { n: 3 });
    // Indexes start again after a CLEAR, as the official encoder's do.
    check_patch(&mut enc, "ff 01 0a 80 00 a1 6a 05 ff 05 80 03");
}

#[test]
fn a_shared_instance_is_written_once_and_counted_per_place() {
    let mut enc = StateEncoder::new(Bag::default());
    enc.full_state();
    let item = Shared::new(Item { n: 7 });
    let mut s = enc.state_mut();
    s.set_best(item.clone());
    s.slots_mut().extend([item.clone(), item.clone()]);
    s.items_mut().insert("k", item.clone());
    drop(s);
    check_patch(&mut enc, "82 03 ff 01 80 00 a1 6b 03 ff 03 80 07 ff 02 80 00 03 80 01 03");
    item.borrow_mut().set_n(8);
    check_patch(&mut enc, "ff 03 80 08");
}

#[test]
fn a_full_state_taken_mid_window_makes_the_next_patch_safe_for_both_clients() {
    let mut enc = names(&["a", "b"]);
    enc.state_mut().list_mut().push("c");
    let full = enc.full_state();
    assert_eq!(hex(&full), "80 01 ff 01 80 00 a1 61 80 01 a1 62 80 02 a1 63");
    enc.state_mut().list_mut().remove(0);
    // A joiner already has "c"; an ADD at 2 would insert it twice for a v5 client.
    check_patch(&mut enc, "ff 01 0a 80 00 a1 62 80 01 a1 63");
    enc.state_mut().list_mut().push("d");
    check_patch(&mut enc, "ff 01 80 02 a1 64");
    // Nothing pending: the full state changes nothing for the next patch.
    enc.full_state();
    enc.state_mut().list_mut().push("e");
    check_patch(&mut enc, "ff 01 80 03 a1 65");
}

#[test]
fn has_changes_follows_the_mutations() {
    let mut enc = names(&["a"]);
    assert!(!enc.has_changes());
    enc.state_mut().list_mut().push("b");
    assert!(enc.has_changes());
    enc.patch();
    assert!(!enc.has_changes());
    assert_eq!(enc.patch(), None);
}

#[derive(Schema, Default)]
#[schema(rename_all = "camelCase")]
struct Options {
    max_hp: Option<u16>,
    #[schema(float64)]
    precise_speed: f64,
    #[schema(number)]
    small_count: u32,
    #[schema(rename = "TTL")]
    ttl: i8,
    #[schema(skip)]
    cache: Vec<u8>,
}

#[test]
fn field_options() {
    let v5 = StateEncoder::<Options>::reflection(SchemaVersion::V5);
    let text = String::from_utf8_lossy(&v5);
    for name in ["maxHp", "uint16", "preciseSpeed", "float64", "smallCount", "number", "TTL", "int8"] {
        assert!(text.contains(name), "{name} in {text:?}");
    }
    assert!(!text.contains("cache"));

    let mut enc = StateEncoder::new(Options { max_hp: Some(3), precise_speed: 1.0, ..Options::default() });
    assert_eq!(hex(&enc.full_state()), "80 03 00 81 00 00 00 00 00 00 f0 3f 82 00 83 00");
    let mut s = enc.state_mut();
    s.set_max_hp(None);
    s.set_max_hp(Some(4));
    s.set_small_count(300);
    s.cache_mut().push(1);
    drop(s);
    check_patch(&mut enc, "c0 04 00 82 cd 2c 01");
    enc.state_mut().set_max_hp(None);
    check_patch(&mut enc, "40");
    assert_eq!(enc.to_json(), r#"{"preciseSpeed":1,"smallCount":300,"TTL":0}"#);
}

#[derive(Schema, Default)]
struct Deep {
    child: Shared<Leaf>,
    spare: Option<Shared<Leaf>>,
}

#[derive(Schema, Default)]
struct Leaf {
    tags: ArraySchema<String>,
    value: f32,
}

#[test]
fn replacing_a_collection_through_its_accessor_is_noticed() {
    let mut enc = StateEncoder::new(Deep::default());
    enc.full_state();
    let child = enc.state().child.clone();
    *child.borrow_mut().tags_mut() = ["x"].into_iter().collect();
    check_patch(&mut enc, "ff 01 c0 03 ff 03 80 00 a1 78");
    // Swapping two instances between fields swaps their refIds on the wire.
    let spare = Shared::new(Leaf { tags: ArraySchema::new(), value: 1.5 });
    enc.state_mut().set_spare(spare.clone());
    enc.patch();
    let mut s = enc.state_mut();
    s.set_spare(child.clone());
    s.set_child(spare);
    drop(s);
    check_patch(&mut enc, "c0 04 c1 01");
    assert_eq!(enc.to_json(), r#"{"child":{"tags":[],"value":1.5},"spare":{"tags":["x"],"value":0}}"#);
}

mod reexport {
    pub use odeon_schema as schema;
}

#[derive(Schema, Default)]
#[schema(crate = "crate::reexport::schema")]
struct ThroughReexport {
    n: u8,
}

#[test]
fn the_crate_path_can_be_a_re_export() {
    let mut enc = StateEncoder::new(ThroughReexport { n: 1 });
    assert_eq!(hex(&enc.full_state()), "80 01");
}

#[test]
fn an_instance_missing_from_a_mid_window_full_state_is_resent_whole() {
    let mut enc = StateEncoder::new(Bag::default());
    enc.state_mut().items_mut().insert("k", Item { n: 1 });
    enc.full_state();
    // A clean full state (nothing pending) changes nothing ...
    enc.full_state();
    let item = enc.state_mut().items_mut().remove("k").expect("k");
    // ... but this joiner never sees the item, so when it comes back it is sent whole.
    enc.full_state();
    enc.state_mut().items_mut().insert("j", item);
    check_patch(&mut enc, "ff 01 40 00 80 01 a1 6a 03 ff 03 80 01");
}
