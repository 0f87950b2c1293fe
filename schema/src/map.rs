//! [`MapSchema`], a string-keyed map that records its changes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use odeon_protocol::codec::{encode_int, encode_string};

use crate::carry::{Carrier, CarryError, Segment};
use crate::field::{Element, ItemRef};
use crate::value::write_json_string;
use crate::walk::{
    ADD, CLEAR, Collection, Cx, DELETE, DELETE_AND_ADD, Ident, Mode, REPLACE, Work, bump_mutations,
    ensure_child,
};

/// A string-keyed map in the state (`MapSchema` on the client): values are primitives or
/// `#[derive(Schema)]` structs (held as [`crate::Shared`] handles).
///
/// Iteration follows insertion order (a key removed and inserted again moves to the end), as a
/// JS `Map` does. Every client numbers the entries as the encoder does: a key gets the next
/// index when inserted, and a key inserted again after a patch removed it gets a new index.
pub struct MapSchema<V: Element> {
    ident: Ident,
    /// Entries in insertion order.
    entries: BTreeMap<u64, Entry<V::Item>>,
    by_key: BTreeMap<String, u64>,
    /// Wire index → insertion sequence.
    by_index: BTreeMap<u32, u64>,
    next_seq: u64,
    next_index: u32,
    track: RefCell<MapTrack<V::Item>>,
}

struct Entry<I> {
    key: String,
    index: u32,
    item: I,
}

/// The map's operations since the previous patch.
struct MapTrack<I> {
    /// `(index, op)` in the order each index first changed.
    ops: Vec<(u32, u8)>,
    position: BTreeMap<u32, usize>,
    cleared: bool,
    /// Keys removed since the previous patch keep their index: inserted again before the
    /// patch, they go out as DELETE_AND_ADD at that index.
    removed: BTreeMap<String, u32>,
    /// The values the clients hold at indexes handed out to be changed in place: a value
    /// written back as it was is not sent.
    before: BTreeMap<u32, I>,
}

impl<I> Default for MapTrack<I> {
    fn default() -> Self {
        Self {
            ops: Vec::new(),
            position: BTreeMap::new(),
            cleared: false,
            removed: BTreeMap::new(),
            before: BTreeMap::new(),
        }
    }
}

impl<I> MapTrack<I> {
    fn record(&mut self, index: u32, op: u8) {
        match self.position.get(&index) {
            None => {
                self.position.insert(index, self.ops.len());
                self.ops.push((index, op));
            }
            Some(&at) => {
                let previous = self.ops[at].1;
                self.ops[at].1 = match previous {
                    DELETE => DELETE_AND_ADD,
                    REPLACE => op,
                    ADD if op == DELETE_AND_ADD => DELETE_AND_ADD,
                    _ => previous,
                };
            }
        }
    }

    fn record_delete(&mut self, index: u32) {
        match self.position.get(&index) {
            None => {
                self.position.insert(index, self.ops.len());
                self.ops.push((index, DELETE));
            }
            Some(&at) => self.ops[at].1 = DELETE,
        }
    }

    fn reset(&mut self) {
        self.ops.clear();
        self.position.clear();
        self.cleared = false;
        self.removed.clear();
        self.before.clear();
    }
}

impl<V: Element> MapSchema<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self {
            ident: Ident::default(),
            entries: BTreeMap::new(),
            by_key: BTreeMap::new(),
            by_index: BTreeMap::new(),
            next_seq: 0,
            next_index: 0,
            track: RefCell::default(),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` has an entry.
    pub fn contains_key(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&V::Item> {
        self.by_key.get(key).and_then(|seq| self.entries.get(seq)).map(|e| &e.item)
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V::Item)> {
        self.entries.values().map(|e| (e.key.as_str(), &e.item))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.values().map(|e| e.key.as_str())
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &V::Item> {
        self.entries.values().map(|e| &e.item)
    }

    /// Sets `key` to `value`, returning the previous value. Setting the same primitive value or
    /// the same struct instance again changes nothing.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<V::Item>) -> Option<V::Item> {
        let key = key.into();
        let value = value.into();
        let is_ref = matches!(V::view(&value), ItemRef::Child(_));
        let replace_op = if is_ref { DELETE_AND_ADD } else { REPLACE };
        let track = self.track.get_mut();
        if let Some(&seq) = self.by_key.get(&key)
            && let Some(entry) = self.entries.get_mut(&seq)
        {
            if V::same(&entry.item, &value) {
                return Some(value);
            }
            track.record(entry.index, replace_op);
            bump_mutations();
            return Some(std::mem::replace(&mut entry.item, value));
        }
        let index = match track.removed.remove(&key) {
            Some(index) => {
                track.record(index, replace_op);
                index
            }
            None => {
                let index = self.next_index;
                self.next_index += 1;
                track.record(index, ADD);
                index
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key.insert(key.clone(), seq);
        self.by_index.insert(index, seq);
        self.entries.insert(seq, Entry { key, index, item: value });
        bump_mutations();
        None
    }

    /// Write access to the value at `key`: `&mut` for a primitive (`*map.get_mut("a")? += 1`),
    /// the struct's `*Mut` type for a struct (`map.get_mut(id)?.x = 3.0`). What changed is sent
    /// with the next patch; a value written back as it was is not.
    pub fn get_mut(&mut self, key: &str) -> Option<V::ItemMut<'_>> {
        let seq = *self.by_key.get(key)?;
        Some(V::item_mut(self.hand_out(seq)))
    }

    /// Write access to every value, in insertion order (see [`get_mut`](MapSchema::get_mut)).
    pub fn values_mut(&mut self) -> impl Iterator<Item = V::ItemMut<'_>> {
        let seqs: Vec<u64> = self.entries.keys().copied().collect();
        for seq in seqs {
            self.hand_out(seq);
        }
        self.entries.values_mut().map(|e| V::item_mut(&mut e.item))
    }

    /// The entry `seq`'s value, to be changed in place: for a primitive, a REPLACE is recorded
    /// with the value the clients hold, to compare at the next patch; a struct records its own
    /// changes.
    fn hand_out(&mut self, seq: u64) -> &mut V::Item {
        let entry = self.entries.get_mut(&seq).expect("a map's keys name its entries");
        if matches!(V::view(&entry.item), ItemRef::Prim(_)) {
            let track = self.track.get_mut();
            // With an operation already recorded this window, the clients hold no value here
            // that this one could be compared with.
            if !track.position.contains_key(&entry.index) {
                track.before.insert(entry.index, entry.item.clone());
            }
            track.record(entry.index, REPLACE);
            bump_mutations();
        }
        &mut entry.item
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<V::Item> {
        let seq = self.by_key.remove(key)?;
        let entry = self.entries.remove(&seq)?;
        self.by_index.remove(&entry.index);
        let track = self.track.get_mut();
        track.record_delete(entry.index);
        track.removed.insert(entry.key, entry.index);
        bump_mutations();
        Some(entry.item)
    }

    /// Removes every entry (one CLEAR on the wire). Indexes start again from 0.
    pub fn clear(&mut self) {
        let track = self.track.get_mut();
        track.reset();
        track.cleared = true;
        self.entries.clear();
        self.by_key.clear();
        self.by_index.clear();
        self.next_index = 0;
        bump_mutations();
    }

    /// The index the next new key gets.
    pub(crate) fn next_index(&self) -> u32 {
        self.next_index
    }

    /// The entries in insertion order, with their wire indexes.
    pub(crate) fn indexed(&self) -> impl Iterator<Item = (&str, u32, &V::Item)> {
        self.entries.values().map(|e| (e.key.as_str(), e.index, &e.item))
    }

    /// A map of these entries (in insertion order, at these wire indexes) that numbers new keys
    /// from `next_index`, with no changes recorded. Errs on duplicate keys or indexes and on
    /// indexes not below `next_index`.
    pub(crate) fn from_parts(next_index: u32, entries: Vec<(String, u32, V::Item)>) -> Result<Self, String> {
        let mut map = Self::new();
        for (key, index, item) in entries {
            if index >= next_index {
                return Err(format!(
                    "map key {key:?} has index {index}, not below the next index {next_index}"
                ));
            }
            if map.by_key.contains_key(&key) {
                return Err(format!("map key {key:?} appears twice"));
            }
            if map.by_index.contains_key(&index) {
                return Err(format!("map index {index} appears twice"));
            }
            let seq = map.next_seq;
            map.next_seq += 1;
            map.by_key.insert(key.clone(), seq);
            map.by_index.insert(index, seq);
            map.entries.insert(seq, Entry { key, index, item });
        }
        map.next_index = next_index;
        Ok(map)
    }

    fn write_item(item: &V::Item, out: &mut Vec<u8>) {
        match V::view(item) {
            ItemRef::Prim(p) => p.encode(out),
            ItemRef::Child(c) => encode_int(out, i64::from(Cx::ref_id(c.ident()))),
        }
    }

    fn write_entry(op: u8, index: u32, key: &str, item: &V::Item, out: &mut Vec<u8>) {
        out.push(op);
        encode_int(out, i64::from(index));
        if op & ADD == ADD {
            encode_string(out, key);
        }
        Self::write_item(item, out);
    }
}

impl<V: Element> Default for MapSchema<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Element> Clone for MapSchema<V> {
    /// A new map with the same entries (struct values are shared, not copied).
    fn clone(&self) -> Self {
        self.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect()
    }
}

impl<V: Element> fmt::Debug for MapSchema<V>
where
    V::Item: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Element, K: Into<String>, X: Into<V::Item>> FromIterator<(K, X)> for MapSchema<V> {
    fn from_iter<I: IntoIterator<Item = (K, X)>>(iter: I) -> Self {
        let mut map = Self::new();
        map.extend(iter);
        map
    }
}

impl<V: Element, K: Into<String>, X: Into<V::Item>> Extend<(K, X)> for MapSchema<V> {
    fn extend<I: IntoIterator<Item = (K, X)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V: Element> Collection for MapSchema<V> {
    fn ident(&self) -> &Ident {
        &self.ident
    }

    fn assign_children(&self, cx: &mut Cx) {
        for entry in self.entries.values() {
            if let ItemRef::Child(child) = V::view(&entry.item) {
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

        let start = Cx::open(out, Cx::ref_id(&self.ident));
        let ops_start = out.len();
        let mut track = self.track.borrow_mut();
        match mode {
            Mode::Fresh | Mode::Resync => {
                if mode == Mode::Resync {
                    out.push(CLEAR);
                }
                // Operations by index, as the official encoder writes them.
                for seq in self.by_index.values() {
                    if let Some(e) = self.entries.get(seq) {
                        Self::write_entry(ADD, e.index, &e.key, &e.item, out);
                    }
                }
            }
            Mode::Changes => {
                if track.cleared {
                    out.push(CLEAR);
                }
                for &(index, op) in &track.ops {
                    if op == DELETE {
                        out.push(DELETE);
                        encode_int(out, i64::from(index));
                    } else if let Some(e) = self.by_index.get(&index).and_then(|seq| self.entries.get(seq)) {
                        let unchanged =
                            op == REPLACE && track.before.get(&index).is_some_and(|b| V::same(b, &e.item));
                        if !unchanged {
                            Self::write_entry(op, index, &e.key, &e.item, out);
                        }
                    }
                }
            }
        }
        Cx::close(out, start, ops_start);
        if cx.patch {
            track.reset();
        }

        for entry in self.entries.values().rev() {
            if let ItemRef::Child(child) = V::view(&entry.item) {
                cx.stack.push(Work::Node(child.node()));
            }
        }
    }

    fn write_json(&self, out: &mut String) {
        out.push('{');
        for (i, entry) in self.entries.values().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, &entry.key);
            out.push(':');
            match V::view(&entry.item) {
                ItemRef::Prim(p) => p.write_json(out),
                ItemRef::Child(c) => c.node().write_json(out),
            }
        }
        out.push('}');
    }

    fn carry(&self, carrier: &mut Carrier<'_>) -> Result<(), CarryError> {
        if !carrier.enter(&self.ident, &[])? {
            return Ok(());
        }
        {
            let mut track = self.track.borrow_mut();
            carrier.clean(track.ops.is_empty() && !track.cleared)?;
            if carrier.adopting() {
                track.reset();
            }
        }
        for entry in self.entries.values() {
            if let ItemRef::Child(child) = V::view(&entry.item) {
                carrier.descend(Segment::Key(entry.key.clone()), |c| child.node().carry(c))?;
            }
        }
        // After the entries: a key clients do not hold explains a different next index better.
        carrier.map_index(&self.ident, self.next_index);
        Ok(())
    }
}
