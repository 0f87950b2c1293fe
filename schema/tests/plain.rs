//! The state changed as plain Rust values: fields assigned through `DerefMut` or on a detached
//! root, collections through `get_mut`, `values_mut`, `iter_mut` and indexing. What changed is
//! found by comparison, so the patch is what the setters would have produced, and a value
//! written back as it was is no change at all.

use odeon_schema::{ArraySchema, MapSchema, Schema, Shared, StateEncoder};

mod common;

use common::{check_patch, hex};

#[derive(Schema, Default)]
struct Piece {
    x: u8,
}

#[derive(Schema, Default)]
struct Game {
    turn: String,
    hp: Option<u8>,
    board: ArraySchema<u8>,
    counts: MapSchema<u8>,
    pieces: MapSchema<Piece>,
    lead: Option<Shared<Piece>>,
}

/// A patched encoder whose root is detached into the returned value, as a room holds it.
fn game() -> (StateEncoder<Game>, Game) {
    let game = Game { board: [0u8; 3].into_iter().collect(), ..Game::default() };
    let mut enc = StateEncoder::new(game);
    enc.patch();
    enc.state_mut().pieces.insert("p", Piece { x: 1 });
    enc.state_mut().counts.insert("c", 1);
    enc.patch();
    let mut plain = Game::default();
    enc.detach(&mut plain);
    (enc, plain)
}

/// Attaches `plain`, patches, and detaches it again.
fn patch(enc: &mut StateEncoder<Game>, plain: &mut Game) -> String {
    enc.attach(plain);
    let patch = enc.patch().map(|p| hex(&p)).unwrap_or_default();
    enc.detach(plain);
    patch
}

#[test]
fn root_fields_assigned_on_the_detached_root_are_sent_as_set_fields() {
    let (mut enc, mut plain) = game();
    plain.turn = "a".into();
    plain.hp = Some(3);
    assert_eq!(patch(&mut enc, &mut plain), "80 a1 61 81 03");
    plain.turn = "a".into();
    assert_eq!(patch(&mut enc, &mut plain), "", "the same value again is no change");
    plain.hp = None;
    assert_eq!(patch(&mut enc, &mut plain), "41");
    plain.hp = Some(4);
    enc.attach(&mut plain);
    assert!(enc.has_changes());
    enc.detach(&mut plain);
    assert_eq!(patch(&mut enc, &mut plain), "81 04");
}

#[test]
fn indexing_an_array_sends_the_items_that_differ() {
    let (mut enc, mut plain) = game();
    plain.board[1] = 7;
    plain.board[2] = 0;
    // Refs: 0 root, 1 board, 2 counts, 3 pieces, 4 the piece.
    assert_eq!(patch(&mut enc, &mut plain), "ff 01 00 01 07");
    plain.board[1] = 9;
    plain.board[1] = 7;
    assert_eq!(patch(&mut enc, &mut plain), "", "written back as the clients hold it");
    for cell in plain.board.iter_mut() {
        *cell = 1;
    }
    assert_eq!(patch(&mut enc, &mut plain), "ff 01 00 00 01 00 01 01 00 02 01");
}

#[test]
fn map_values_change_in_place() {
    let (mut enc, mut plain) = game();
    *plain.counts.get_mut("c").unwrap() += 1;
    plain.pieces.get_mut("p").unwrap().x = 5;
    assert_eq!(patch(&mut enc, &mut plain), "ff 02 00 00 02 ff 04 80 05");
    *plain.counts.get_mut("c").unwrap() = 2;
    plain.pieces.get_mut("p").unwrap().x = 5;
    assert_eq!(patch(&mut enc, &mut plain), "");
    for mut piece in plain.pieces.values_mut() {
        piece.x += 1;
    }
    assert_eq!(patch(&mut enc, &mut plain), "ff 04 80 06");
    assert!(plain.counts.get_mut("missing").is_none());
}

#[test]
fn a_child_placed_or_removed_on_the_root_is_sent() {
    let (mut enc, mut plain) = game();
    plain.lead = plain.pieces.get("p").cloned();
    assert_eq!(patch(&mut enc, &mut plain), "85 04");
    plain.lead = None;
    assert_eq!(patch(&mut enc, &mut plain), "45");
}

#[test]
fn a_collection_replaced_on_the_root_is_sent_whole() {
    let (mut enc, mut plain) = game();
    plain.counts = [("d", 4u8)].into_iter().collect();
    enc.attach(&mut plain);
    assert!(enc.has_changes(), "a new collection in a field is a change");
    assert_eq!(enc.patch().map(|p| hex(&p)).unwrap_or_default(), "c3 05 ff 05 80 00 a1 64 04");
    enc.detach(&mut plain);
}

#[test]
fn nothing_changed_is_no_change() {
    let (mut enc, mut plain) = game();
    enc.attach(&mut plain);
    assert!(!enc.has_changes(), "detaching and attaching alone changes nothing");
    enc.detach(&mut plain);
}

#[test]
#[should_panic(expected = "attach the state's root before encoding it")]
fn a_detached_root_is_not_encoded() {
    let (mut enc, _plain) = game();
    enc.patch();
}

#[test]
fn deref_mut_on_a_shared_child_counts_like_its_setters() {
    let piece = Shared::new(Piece { x: 1 });
    let mut enc = StateEncoder::new(Game { lead: Some(piece.clone()), ..Game::default() });
    enc.patch();
    piece.borrow_mut().x = 2;
    assert!(enc.has_changes());
    check_patch(&mut enc, "ff 04 80 02");
    piece.borrow_mut().x = 2;
    check_patch(&mut enc, "");
}
