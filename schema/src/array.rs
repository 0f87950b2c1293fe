//! [`ArraySchema`], a list that records its changes.
//!
//! The clients' array decoders differ between schema versions (an ADD at an occupied index
//! overwrites in v4 but inserts in v5), so a patch only uses operations both read the same
//! way: removals are DELETEs at the positions the clients hold (holes that close when the
//! decoder leaves the array), values go out as REPLACE (DELETE_AND_ADD for structs) at
//! occupied positions and as ADD past the end. An insertion in the middle needs the holes
//! closed first, so its operations follow in a second session on the same array; when that
//! would cost more than resending the array, the patch sends CLEAR and every item instead.

use std::cell::RefCell;
use std::fmt;
use std::ops::{Index, IndexMut};

use odeon_protocol::codec::encode_int;

use crate::carry::{Carrier, CarryError, Segment};
use crate::field::{Element, ItemRef};
use crate::walk::{
    ADD, CLEAR, Collection, Cx, DELETE, DELETE_AND_ADD, Ident, Mode, REPLACE, Work, bump_mutations,
    ensure_child,
};

/// A list in the state (`ArraySchema` on the client): items are primitives or
/// `#[derive(Schema)]` structs (held as [`crate::Shared`] handles).
pub struct ArraySchema<V: Element> {
    ident: Ident,
    items: Vec<V::Item>,
    track: RefCell<ArrayTrack<V::Item>>,
}

const NEW: u32 = u32::MAX;

/// Where an item came from, relative to the array the clients hold.
struct Slot<I> {
    /// The item's position in the clients' array, or `NEW`.
    origin: u32,
    /// The item at that position was replaced, or handed out to be changed in place.
    changed: bool,
    /// The item the clients hold, when it was handed out to be changed in place: an item
    /// written back as it was is not sent.
    before: Option<I>,
}

impl<I> Slot<I> {
    fn new(origin: u32) -> Self {
        Self { origin, changed: false, before: None }
    }
}

/// The array's edits since the previous patch.
struct ArrayTrack<I> {
    dirty: bool,
    cleared: bool,
    /// The clients' length at the previous patch.
    known_len: u32,
    /// Parallel to the items while `dirty`.
    slots: Vec<Slot<I>>,
    /// The clients' positions removed, in the order they were removed.
    removed: Vec<u32>,
}

impl<I> Default for ArrayTrack<I> {
    fn default() -> Self {
        Self { dirty: false, cleared: false, known_len: 0, slots: Vec::new(), removed: Vec::new() }
    }
}

impl<I> ArrayTrack<I> {
    /// Starts recording against the array as the clients hold it (the current items).
    fn begin(&mut self, len: usize) {
        if !self.dirty {
            self.dirty = true;
            self.known_len = len as u32;
            self.slots.clear();
            self.slots.extend((0..len as u32).map(Slot::new));
            self.removed.clear();
        }
        bump_mutations();
    }

    fn forget(&mut self, slot: Slot<I>) {
        if slot.origin != NEW {
            self.removed.push(slot.origin);
        }
    }

    fn reset(&mut self) {
        self.dirty = false;
        self.cleared = false;
        self.slots.clear();
        self.removed.clear();
    }
}

impl<V: Element> ArraySchema<V> {
    /// An empty array.
    pub fn new() -> Self {
        Self { ident: Ident::default(), items: Vec::new(), track: RefCell::default() }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the array has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Option<&V::Item> {
        self.items.get(index)
    }

    /// The first item.
    pub fn first(&self) -> Option<&V::Item> {
        self.items.first()
    }

    /// The last item.
    pub fn last(&self) -> Option<&V::Item> {
        self.items.last()
    }

    /// The items in order.
    pub fn iter(&self) -> std::slice::Iter<'_, V::Item> {
        self.items.iter()
    }

    /// The items as a slice.
    pub fn as_slice(&self) -> &[V::Item] {
        &self.items
    }

    /// Appends an item.
    pub fn push(&mut self, value: impl Into<V::Item>) {
        let track = self.track.get_mut();
        track.begin(self.items.len());
        self.items.push(value.into());
        track.slots.push(Slot::new(NEW));
    }

    /// Removes and returns the last item.
    pub fn pop(&mut self) -> Option<V::Item> {
        if self.items.is_empty() {
            return None;
        }
        let track = self.track.get_mut();
        track.begin(self.items.len());
        if let Some(slot) = track.slots.pop() {
            track.forget(slot);
        }
        self.items.pop()
    }

    /// Inserts an item at `index`, shifting the later ones.
    ///
    /// # Panics
    ///
    /// If `index > len`.
    pub fn insert(&mut self, index: usize, value: impl Into<V::Item>) {
        assert!(index <= self.items.len(), "ArraySchema::insert: index {index} out of bounds");
        let track = self.track.get_mut();
        track.begin(self.items.len());
        self.items.insert(index, value.into());
        track.slots.insert(index, Slot::new(NEW));
    }

    /// Removes and returns the item at `index`, shifting the later ones.
    ///
    /// # Panics
    ///
    /// If `index >= len`.
    pub fn remove(&mut self, index: usize) -> V::Item {
        assert!(index < self.items.len(), "ArraySchema::remove: index {index} out of bounds");
        let track = self.track.get_mut();
        track.begin(self.items.len());
        let slot = track.slots.remove(index);
        track.forget(slot);
        self.items.remove(index)
    }

    /// Replaces the item at `index`, returning the previous one. The same primitive value or
    /// struct instance again changes nothing.
    ///
    /// # Panics
    ///
    /// If `index >= len`.
    pub fn set(&mut self, index: usize, value: impl Into<V::Item>) -> V::Item {
        assert!(index < self.items.len(), "ArraySchema::set: index {index} out of bounds");
        let value = value.into();
        if V::same(&self.items[index], &value) {
            return value;
        }
        let track = self.track.get_mut();
        track.begin(self.items.len());
        track.slots[index].changed = true;
        std::mem::replace(&mut self.items[index], value)
    }

    /// Write access to the item at `index`: `&mut` for a primitive (`*array.get_mut(0)? = 5`),
    /// the struct's `*Mut` type for a struct (`array.get_mut(0)?.x = 1.0`). What changed is
    /// sent with the next patch; an item written back as it was is not.
    pub fn get_mut(&mut self, index: usize) -> Option<V::ItemMut<'_>> {
        if index >= self.items.len() {
            return None;
        }
        Some(V::item_mut(self.hand_out(index)))
    }

    /// Write access to every item, in order (see [`get_mut`](ArraySchema::get_mut)).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = V::ItemMut<'_>> {
        for index in 0..self.items.len() {
            self.hand_out(index);
        }
        self.items.iter_mut().map(V::item_mut)
    }

    /// The item at `index`, to be changed in place: a primitive's slot remembers what the
    /// clients hold, to compare at the next patch; a struct records its own changes.
    fn hand_out(&mut self, index: usize) -> &mut V::Item {
        if matches!(V::view(&self.items[index]), ItemRef::Prim(_)) {
            self.replace_in_place(index);
        }
        &mut self.items[index]
    }

    /// Marks the item at `index` as possibly replaced in place.
    fn replace_in_place(&mut self, index: usize) {
        let track = self.track.get_mut();
        track.begin(self.items.len());
        let slot = &mut track.slots[index];
        if !slot.changed {
            slot.changed = true;
            slot.before = Some(self.items[index].clone());
        }
    }

    /// Keeps the first `len` items.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.items.len() {
            return;
        }
        let track = self.track.get_mut();
        track.begin(self.items.len());
        for slot in track.slots.drain(len..) {
            if slot.origin != NEW {
                track.removed.push(slot.origin);
            }
        }
        self.items.truncate(len);
    }

    /// Keeps the items for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&V::Item) -> bool) {
        let mut index = 0;
        while index < self.items.len() {
            if keep(&self.items[index]) {
                index += 1;
            } else {
                self.remove(index);
            }
        }
    }

    /// Removes every item (one CLEAR on the wire). Clearing an empty array changes nothing.
    pub fn clear(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let track = self.track.get_mut();
        track.begin(self.items.len());
        track.cleared = true;
        track.slots.clear();
        track.removed.clear();
        self.items.clear();
    }

    /// An array of these items with no changes recorded.
    pub(crate) fn from_vec(items: Vec<V::Item>) -> Self {
        Self { ident: Ident::default(), items, track: RefCell::default() }
    }

    fn write_item(op: u8, index: u32, item: &V::Item, out: &mut Vec<u8>) {
        out.push(op);
        encode_int(out, i64::from(index));
        match V::view(item) {
            ItemRef::Prim(p) => p.encode(out),
            ItemRef::Child(c) => encode_int(out, i64::from(Cx::ref_id(c.ident()))),
        }
    }

    fn replace_op(item: &V::Item) -> u8 {
        match V::view(item) {
            ItemRef::Prim(_) => REPLACE,
            ItemRef::Child(_) => DELETE_AND_ADD,
        }
    }

    /// Writes every item, after a CLEAR when `clear`.
    fn write_all(&self, clear: bool, out: &mut Vec<u8>) {
        if clear {
            out.push(CLEAR);
        }
        for (i, item) in self.items.iter().enumerate() {
            Self::write_item(ADD, i as u32, item, out);
        }
    }

    /// Writes the edits since the previous patch; the session for `ref_id` is open.
    fn write_changes(&self, track: &ArrayTrack<V::Item>, ref_id: u32, cx: &Cx, out: &mut Vec<u8>) {
        // A slot handed out but written back as the clients hold it did not change.
        let changed = |i: usize| {
            let slot = &track.slots[i];
            slot.changed && slot.before.as_ref().is_none_or(|before| !V::same(before, &self.items[i]))
        };
        if !track.dirty {
            return;
        }
        if track.cleared || cx.fs_count > 0 {
            // A full state sent mid-window may hold some of these edits already.
            return self.write_all(true, out);
        }
        let mut gone = vec![false; track.known_len as usize];
        for &r in &track.removed {
            gone[r as usize] = true;
        }
        let survivors: Vec<u32> = (0..track.known_len).filter(|&p| !gone[p as usize]).collect();
        let kept = survivors.len();
        let in_place = track.slots.iter().zip(&survivors).all(|(slot, &origin)| slot.origin == origin);

        if in_place {
            // The clients' survivors stay where they are (before compaction): one session.
            for &r in &track.removed {
                out.push(DELETE);
                encode_int(out, i64::from(r));
            }
            for (i, item) in self.items.iter().enumerate() {
                if i < kept {
                    if changed(i) {
                        Self::write_item(Self::replace_op(item), survivors[i], item, out);
                    }
                } else {
                    Self::write_item(ADD, track.known_len + (i - kept) as u32, item, out);
                }
            }
            return;
        }

        // An insertion in the middle: positions after compaction, in a second session.
        let rewrites: Vec<usize> = (0..self.items.len())
            .filter(|&i| i >= kept || track.slots[i].origin != survivors[i] || changed(i))
            .collect();
        if track.removed.len() + rewrites.len() > self.items.len() + 1 {
            return self.write_all(true, out);
        }
        for &r in &track.removed {
            out.push(DELETE);
            encode_int(out, i64::from(r));
        }
        if !track.removed.is_empty() {
            Cx::open(out, ref_id);
        }
        for i in rewrites {
            let item = &self.items[i];
            let op = if i < kept { Self::replace_op(item) } else { ADD };
            Self::write_item(op, i as u32, item, out);
        }
    }
}

impl<V: Element> Default for ArraySchema<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Element> Clone for ArraySchema<V> {
    /// A new array with the same items (struct items are shared, not copied).
    fn clone(&self) -> Self {
        self.items.iter().cloned().collect()
    }
}

impl<V: Element> fmt::Debug for ArraySchema<V>
where
    V::Item: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.items).finish()
    }
}

impl<V: Element> Index<usize> for ArraySchema<V> {
    type Output = V::Item;
    fn index(&self, index: usize) -> &V::Item {
        &self.items[index]
    }
}

/// `array[i] = value`: the next patch sends the item if it differs from what the clients hold.
///
/// # Panics
///
/// If `index >= len`.
impl<V: Element> IndexMut<usize> for ArraySchema<V> {
    fn index_mut(&mut self, index: usize) -> &mut V::Item {
        assert!(
            index < self.items.len(),
            "ArraySchema index {index} out of bounds (len {})",
            self.items.len()
        );
        self.replace_in_place(index);
        &mut self.items[index]
    }
}

impl<'a, V: Element> IntoIterator for &'a ArraySchema<V> {
    type Item = &'a V::Item;
    type IntoIter = std::slice::Iter<'a, V::Item>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<V: Element, X: Into<V::Item>> FromIterator<X> for ArraySchema<V> {
    fn from_iter<I: IntoIterator<Item = X>>(iter: I) -> Self {
        let mut array = Self::new();
        array.extend(iter);
        array
    }
}

impl<V: Element, X: Into<V::Item>> Extend<X> for ArraySchema<V> {
    fn extend<I: IntoIterator<Item = X>>(&mut self, iter: I) {
        for item in iter {
            self.push(item);
        }
    }
}

impl<V: Element> Collection for ArraySchema<V> {
    fn ident(&self) -> &Ident {
        &self.ident
    }

    fn assign_children(&self, cx: &mut Cx) {
        for item in &self.items {
            if let ItemRef::Child(child) = V::view(item) {
                ensure_child(cx, child);
            }
        }
    }

    fn encode(&self, cx: &mut Cx, out: &mut Vec<u8>) {
        if !cx.first_visit(&self.ident) {
            return;
        }
        let mode = cx.mode(&self.ident);
        self.assign_children(cx);

        let ref_id = Cx::ref_id(&self.ident);
        let start = Cx::open(out, ref_id);
        let ops_start = out.len();
        let mut track = self.track.borrow_mut();
        match mode {
            Mode::Fresh => self.write_all(false, out),
            Mode::Resync => self.write_all(true, out),
            Mode::Changes => self.write_changes(&track, ref_id, cx, out),
        }
        Cx::close(out, start, ops_start);
        if cx.patch {
            track.reset();
        }

        for item in self.items.iter().rev() {
            if let ItemRef::Child(child) = V::view(item) {
                cx.stack.push(Work::Node(child.node()));
            }
        }
    }

    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match V::view(item) {
                ItemRef::Prim(p) => p.write_json(out),
                ItemRef::Child(c) => c.node().write_json(out),
            }
        }
        out.push(']');
    }

    fn carry(&self, carrier: &mut Carrier<'_>) -> Result<(), CarryError> {
        if !carrier.enter(&self.ident, &[])? {
            return Ok(());
        }
        {
            let mut track = self.track.borrow_mut();
            carrier.clean(!track.dirty)?;
            if carrier.adopting() {
                track.reset();
            }
        }
        for (position, item) in self.items.iter().enumerate() {
            if let ItemRef::Child(child) = V::view(item) {
                carrier.descend(Segment::Item(position as u32), |c| child.node().carry(c))?;
            }
        }
        Ok(())
    }
}
