//! Live migration: [`StateCarry`] holds what the clients hold of a state, so that an encoder in
//! another instance (new code, same schema types) continues the stream where this one stopped.
//!
//! The state value itself travels separately (serde). The carry records, for every ref of the
//! tree, its refId at its path from the root (field index, map key, array position), plus the
//! encoder's window and next refId. [`StateEncoder::adopt`] gives the refs of the restored tree
//! those refIds, marks them as known to every client and checks that the restored state's full
//! state is byte for byte the one the clients hold.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::reflection::{SchemaVersion, reflection};
use crate::walk::{Cx, Ident, SWITCH, Work, mutations};
use crate::{Schema, StateEncoder};

/// The layout of [`StateCarry`]; another layout is refused.
const FORMAT: u32 = 1;

/// What clients hold of a state, so that another encoder can continue its stream (live
/// migration).
///
/// Taken with [`StateEncoder::carry`] from the old encoder right after a patch, serialised with
/// serde next to the state value, and given to [`StateEncoder::adopt`] of an encoder built from
/// the restored value. It holds the refId of every struct and collection at its path from the
/// root, the encoder's window and next refId, the reflection of the state type and the full
/// state the clients hold (to verify the restored state against).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateCarry {
    format: u32,
    next_id: u32,
    window: u64,
    /// Every ref reachable in the state, at the first path the encoder reaches it by.
    refs: Vec<(Vec<Segment>, u32)>,
    /// Further paths to a ref already listed (a struct instance placed twice).
    aliases: Vec<(Vec<Segment>, u32)>,
    /// Each map's next index, by refId: not in the full state, so checked separately.
    map_indexes: Vec<(u32, u32)>,
    #[serde(with = "bytes")]
    reflection_v4: Vec<u8>,
    #[serde(with = "bytes")]
    reflection_v5: Vec<u8>,
    #[serde(with = "bytes")]
    full_state: Vec<u8>,
}

/// Why a state could not be carried or adopted. The message is meant for the room's author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarryError(String);

impl CarryError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    fn pending() -> Self {
        Self::new("changes are pending since the last patch: patch before carrying the state")
    }
}

impl fmt::Display for CarryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CarryError {}

/// One step of a ref's path from the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    /// A struct's field, by index.
    Field(u8),
    /// A map entry, by key.
    Key(String),
    /// An array item, by position.
    Item(u32),
}

impl Serialize for Segment {
    /// `(0, field)`, `(1, key)` or `(2, position)`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        match self {
            Segment::Field(i) => {
                t.serialize_element(&0u8)?;
                t.serialize_element(i)?;
            }
            Segment::Key(k) => {
                t.serialize_element(&1u8)?;
                t.serialize_element(k)?;
            }
            Segment::Item(i) => {
                t.serialize_element(&2u8)?;
                t.serialize_element(i)?;
            }
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SegmentVisitor;
        impl<'de> Visitor<'de> for SegmentVisitor {
            type Value = Segment;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path segment: (0, field), (1, key) or (2, position)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Segment, A::Error> {
                let missing = |i| de::Error::invalid_length(i, &SegmentVisitor);
                let tag: u8 = seq.next_element()?.ok_or_else(|| missing(0))?;
                Ok(match tag {
                    0 => Segment::Field(seq.next_element()?.ok_or_else(|| missing(1))?),
                    1 => Segment::Key(seq.next_element()?.ok_or_else(|| missing(1))?),
                    2 => Segment::Item(seq.next_element()?.ok_or_else(|| missing(1))?),
                    other => {
                        return Err(de::Error::invalid_value(
                            de::Unexpected::Unsigned(other.into()),
                            &SegmentVisitor,
                        ));
                    }
                })
            }
        }
        d.deserialize_tuple(2, SegmentVisitor)
    }
}

/// `Vec<u8>` as serde bytes (a msgpack `bin`, not an array of integers).
mod bytes {
    use std::fmt;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// A walk over every ref of a state tree, depth first in the encoder's order: it records the
/// refIds at their paths (carrying out), or gives a restored tree the carried refIds and
/// forgets its pending changes (adopting).
#[doc(hidden)]
pub struct Carrier<'a> {
    cx: &'a Cx,
    path: Vec<Segment>,
    /// Carrying out: the refs, aliases and map indexes found.
    refs: Vec<(Vec<Segment>, u32)>,
    aliases: Vec<(Vec<Segment>, u32)>,
    map_indexes: Vec<(u32, u32)>,
    /// Adopting: the carry, its refIds by path, its maps' next indexes, and the refs matched so
    /// far with their field names (for messages).
    carry: Option<&'a StateCarry>,
    carried: HashMap<&'a [Segment], u32>,
    carried_indexes: HashMap<u32, u32>,
    /// The first map whose next index differs, reported after the full state is compared.
    index_mismatch: Option<CarryError>,
    seen: HashMap<Vec<Segment>, &'static [&'static str]>,
}

impl<'a> Carrier<'a> {
    fn new(cx: &'a Cx, carry: Option<&'a StateCarry>) -> Self {
        let carried = carry.map(|c| c.refs.iter().map(|(p, id)| (p.as_slice(), *id)).collect());
        Self {
            cx,
            path: Vec::new(),
            refs: Vec::new(),
            aliases: Vec::new(),
            map_indexes: Vec::new(),
            carry,
            carried: carried.unwrap_or_default(),
            carried_indexes: carry.map(|c| c.map_indexes.iter().copied().collect()).unwrap_or_default(),
            index_mismatch: None,
            seen: HashMap::new(),
        }
    }

    /// Whether this walk adopts a carry (rather than recording one).
    pub(crate) fn adopting(&self) -> bool {
        self.carry.is_some()
    }

    /// Enters the ref at the current path; false if the walk already visited it (an instance
    /// placed twice), so its subtree is skipped. `fields` names a struct's fields.
    pub(crate) fn enter(&mut self, id: &Ident, fields: &'static [&'static str]) -> Result<bool, CarryError> {
        let first = self.cx.first_visit(id);
        let Some(carry) = self.carry else {
            if !self.cx.known(id) {
                return Err(CarryError::pending());
            }
            let list = if first { &mut self.refs } else { &mut self.aliases };
            list.push((self.path.clone(), Cx::ref_id(id)));
            return Ok(first);
        };
        if !first {
            return Ok(false);
        }
        let Some(&ref_id) = self.carried.get(self.path.as_slice()) else {
            let here = self.show(&self.path);
            if let Some((_, id)) = carry.aliases.iter().find(|(p, _)| *p == self.path) {
                let first = carry.refs.iter().find(|(_, r)| r == id).map(|(p, _)| self.show(p));
                return Err(CarryError::new(format!(
                    "the restored state has two instances at {} and {here}, which clients hold as \
                     one (serde restores a struct instance placed twice as two copies)",
                    first.unwrap_or_default()
                )));
            }
            return Err(CarryError::new(format!(
                "the restored state differs from the state clients hold: it has {here}, which \
                 clients do not hold"
            )));
        };
        id.adopt(ref_id, self.cx.owner, carry.window);
        self.seen.insert(self.path.clone(), fields);
        Ok(true)
    }

    /// Fails a walk carrying out when a ref still records changes for the next patch.
    pub(crate) fn clean(&self, clean: bool) -> Result<(), CarryError> {
        if clean || self.adopting() { Ok(()) } else { Err(CarryError::pending()) }
    }

    /// Records (carrying out) or checks (adopting) the next index of the map being walked; a
    /// mismatch is kept for [`StateEncoder::adopt`] to report after the full state comparison.
    pub(crate) fn map_index(&mut self, id: &Ident, next_index: u32) {
        let ref_id = Cx::ref_id(id);
        if !self.adopting() {
            self.map_indexes.push((ref_id, next_index));
            return;
        }
        let carried = self.carried_indexes.get(&ref_id).copied();
        if carried != Some(next_index) && self.index_mismatch.is_none() {
            self.index_mismatch = Some(CarryError::new(format!(
                "the restored state differs from the state clients hold: {} numbers new keys from \
                 {next_index}, clients from {} (restore maps with their serde implementation)",
                self.show(&self.path),
                carried.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            )));
        }
    }

    /// Walks a child ref at `segment` below the current path.
    pub(crate) fn descend(
        &mut self,
        segment: Segment,
        walk: impl FnOnce(&mut Self) -> Result<(), CarryError>,
    ) -> Result<(), CarryError> {
        self.path.push(segment);
        let result = walk(self);
        self.path.pop();
        result
    }

    /// A path as the room's author reads it: `state.players["sid"].items[2]`.
    fn show(&self, path: &[Segment]) -> String {
        use std::fmt::Write;
        let mut out = String::from("state");
        for (i, segment) in path.iter().enumerate() {
            match segment {
                Segment::Field(f) => match self.seen.get(&path[..i]).and_then(|n| n.get(usize::from(*f))) {
                    Some(name) => _ = write!(out, ".{name}"),
                    None => _ = write!(out, ".<field {f}>"),
                },
                Segment::Key(k) => _ = write!(out, "[{k:?}]"),
                Segment::Item(p) => _ = write!(out, "[{p}]"),
            }
        }
        out
    }
}

impl<T: Schema> StateEncoder<T> {
    /// What the clients hold of this state, for [`adopt`](StateEncoder::adopt) by an encoder in
    /// another instance (live migration). The state value itself is carried separately, with
    /// serde.
    ///
    /// Take it right after a [`patch`](StateEncoder::patch), with nothing changed since: what the
    /// clients hold is then exactly the state. A state that was never sent (no patch or full
    /// state yet) counts as changed too.
    ///
    /// # Errors
    ///
    /// When changes are pending since the last patch ([`has_changes`](StateEncoder::has_changes)).
    pub fn carry(&mut self) -> Result<StateCarry, CarryError> {
        if self.has_changes() {
            return Err(CarryError::pending());
        }
        let full_state = self.full_state();
        self.cx.begin_walk(false);
        let mut carrier = Carrier::new(&self.cx, None);
        self.root.node().carry(&mut carrier)?;
        let Carrier { refs, aliases, map_indexes, .. } = carrier;
        Ok(StateCarry {
            format: FORMAT,
            next_id: self.cx.next_id,
            window: self.cx.window,
            refs,
            aliases,
            map_indexes,
            reflection_v4: reflection::<T>(SchemaVersion::V4),
            reflection_v5: reflection::<T>(SchemaVersion::V5),
            full_state,
        })
    }

    /// Continues the stream of the encoder `carry` was taken from: this encoder's state, restored
    /// from that encoder's state value, takes the refIds, map indexes and window the clients know,
    /// so its next patches are the bytes the old encoder would have written.
    ///
    /// Call it on an encoder fresh from [`new`](StateEncoder::new), before any patch or full state.
    ///
    /// # Errors
    ///
    /// When the state type's schema differs from the carried one, when the restored state differs
    /// from the state the clients hold (a ref, a map key or a value; a struct instance placed
    /// twice is restored by serde as two instances, which also differs), or when this encoder
    /// already sent something. The encoder is then unusable and should be dropped.
    pub fn adopt(&mut self, carry: &StateCarry) -> Result<(), CarryError> {
        self.assert_attached();
        if carry.format != FORMAT {
            return Err(CarryError::new(format!(
                "the carried state has layout {}, this odeon-schema reads layout {FORMAT}",
                carry.format
            )));
        }
        if self.patched_once {
            return Err(CarryError::new("adopt needs an encoder that has sent nothing yet"));
        }
        if carry.reflection_v4 != reflection::<T>(SchemaVersion::V4)
            || carry.reflection_v5 != reflection::<T>(SchemaVersion::V5)
        {
            return Err(CarryError::new("the state's schema differs from the one clients decoded"));
        }
        check_consistent(carry)?;

        self.cx.begin_walk(false);
        let mut carrier = Carrier::new(&self.cx, Some(carry));
        self.root.node().carry(&mut carrier)?;
        if carrier.seen.len() < carrier.carried.len()
            && let Some((path, _)) = carry.refs.iter().find(|(p, _)| !carrier.seen.contains_key(p))
        {
            return Err(CarryError::new(format!(
                "the restored state differs from the state clients hold: it lacks {}",
                carrier.show(path)
            )));
        }
        let seen = std::mem::take(&mut carrier.seen);
        let index_mismatch = carrier.index_mismatch.take();

        self.cx.next_id = carry.next_id;
        self.cx.window = carry.window;
        self.cx.fs_count = 0;
        self.patched_once = true;
        self.patched_at = mutations();
        let full_state = self.full_state();
        if full_state == carry.full_state {
            return index_mismatch.map_or(Ok(()), Err);
        }
        let at = full_state.iter().zip(&carry.full_state).position(|(a, b)| a != b);
        let at = at.unwrap_or(full_state.len().min(carry.full_state.len()));
        let shown = match self.session_at(at) {
            Some(ref_id) => {
                let path = carry.refs.iter().find(|(_, r)| *r == ref_id).map(|(p, _)| p.as_slice());
                let carrier = Carrier { seen, ..Carrier::new(&self.cx, Some(carry)) };
                format!("in {}", carrier.show(path.unwrap_or_default()))
            }
            None => "clients hold more".to_owned(),
        };
        Err(CarryError::new(format!(
            "the restored state differs from the state clients hold: {shown} (byte {at} of the full state)"
        )))
    }

    /// The refId of the ref whose session of a full state holds byte `at`; `None` past the end.
    fn session_at(&mut self, at: usize) -> Option<u32> {
        let mut out = Vec::new();
        let mut found = None;
        self.cx.fs_counted = false;
        self.cx.begin_walk(false);
        self.cx.stack.push(Work::Node(self.root.node()));
        while let Some(work) = self.cx.stack.pop() {
            let start = out.len();
            match work {
                Work::Node(node) => node.encode(&node, &mut self.cx, &mut out),
                Work::Field(node, field) => node.encode_field(field, &mut self.cx, &mut out),
            }
            if found.is_none() && (start..out.len()).contains(&at) {
                // Each unit writes sessions of one ref: the root's first without a switch.
                found = match out[start] {
                    SWITCH => {
                        odeon_protocol::codec::Cursor::new(&out[start + 1..]).number().ok().map(|n| n as u32)
                    }
                    _ => Some(0),
                };
            }
        }
        found
    }
}

/// Rejects a carry that no encoder could have written (a corrupted or forged one).
fn check_consistent(carry: &StateCarry) -> Result<(), CarryError> {
    let malformed = || CarryError::new("the carried state is malformed");
    if carry.window < 2 || !carry.refs.iter().any(|(p, _)| p.is_empty()) {
        return Err(malformed());
    }
    let mut ids = std::collections::HashSet::new();
    let mut paths = std::collections::HashSet::new();
    for (path, id) in &carry.refs {
        if *id >= carry.next_id || !ids.insert(*id) || !paths.insert(path.as_slice()) {
            return Err(malformed());
        }
    }
    for (path, id) in &carry.aliases {
        if !ids.contains(id) || !paths.insert(path.as_slice()) {
            return Err(malformed());
        }
    }
    if carry.map_indexes.iter().any(|(id, _)| !ids.contains(id)) {
        return Err(malformed());
    }
    Ok(())
}
