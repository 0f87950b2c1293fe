//! Changes made without setters: a struct changed through `&mut T` (`player.x = 3.0`) is
//! compared field by field with a [`Snapshot`] of what it held before, and the fields that
//! differ count as set, exactly as if their setters had run.
//!
//! The snapshot is taken when write access is first handed out since the struct was last
//! encoded (its generated `*Mut` type's `DerefMut`, or the root leaving the encoder with
//! [`crate::StateEncoder::detach`]), and compared when the encoder next reaches the struct.
//! Only primitives are compared by value; for a child or a collection what counts is whether
//! the field holds another instance, since instances record their own changes.

use crate::Schema;
use crate::field::FieldRef;

/// A struct's fields as they were: each field's bytes, one after the other.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    bytes: Vec<u8>,
    /// Where each field's bytes end.
    ends: Vec<u32>,
}

/// The field tags of a snapshot.
const UNSET: u8 = 0;
const PRIM: u8 = 1;
const CHILD: u8 = 2;
const COLLECTION: u8 = 3;

/// Appends what identifies a field's current value.
fn write_field(field: FieldRef<'_>, out: &mut Vec<u8>) {
    match field {
        FieldRef::Prim(None) | FieldRef::Child(None) => out.push(UNSET),
        FieldRef::Prim(Some(prim)) => {
            out.push(PRIM);
            prim.encode(out);
        }
        FieldRef::Child(Some(child)) => {
            out.push(CHILD);
            out.extend_from_slice(&child.addr().addr().to_le_bytes());
        }
        FieldRef::Collection(coll) => {
            // A collection lives inline: another instance in the field has another identity.
            out.push(COLLECTION);
            let (ref_id, owner) = coll.ident().token();
            out.extend_from_slice(&ref_id.to_le_bytes());
            out.extend_from_slice(&owner.to_le_bytes());
        }
    }
}

impl Snapshot {
    /// Records `value`'s fields, reusing this snapshot's buffers.
    pub(crate) fn record<T: Schema>(&mut self, value: &T) {
        self.bytes.clear();
        self.ends.clear();
        for i in 0..T::__FIELDS.len() as u8 {
            write_field(value.__field(i), &mut self.bytes);
            self.ends.push(self.bytes.len() as u32);
        }
    }

    /// The fields of `value` that differ from the snapshot (bit = field index), and those of
    /// them that are unset now.
    pub(crate) fn changes<T: Schema>(&self, value: &T) -> (u64, u64) {
        let (mut changed, mut unset) = (0u64, 0u64);
        let mut now = Vec::new();
        let mut start = 0usize;
        for (i, &end) in self.ends.iter().enumerate() {
            let end = end as usize;
            now.clear();
            write_field(value.__field(i as u8), &mut now);
            if now != self.bytes[start..end] {
                changed |= 1 << i;
                if now == [UNSET] {
                    unset |= 1 << i;
                }
            }
            start = end;
        }
        (changed, unset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArraySchema, Shared};

    #[derive(crate::Schema, Default)]
    #[schema(crate = "crate")]
    struct Node {
        name: String,
        hp: Option<u8>,
        child: Option<Shared<Leaf>>,
        items: ArraySchema<u8>,
    }

    #[derive(crate::Schema, Default)]
    #[schema(crate = "crate")]
    struct Leaf {
        x: f64,
    }

    #[test]
    fn finds_changed_primitives_unset_fields_and_other_instances() {
        let mut node = Node { name: "a".into(), hp: Some(3), ..Node::default() };
        let mut snapshot = Snapshot::default();
        snapshot.record(&node);
        assert_eq!(snapshot.changes(&node), (0, 0));
        node.name = "b".into();
        node.hp = None;
        assert_eq!(snapshot.changes(&node), (0b11, 0b10));
        node.name = "a".into();
        node.hp = Some(3);
        node.child = Some(Shared::new(Leaf::default()));
        // The same values again count as no change; a new child and a new collection do.
        assert_eq!(snapshot.changes(&node), (0b100, 0));
        snapshot.record(&node);
        node.child = Some(Shared::new(Leaf::default()));
        assert_eq!(snapshot.changes(&node), (0b100, 0));
        // A collection records its own changes: pushing is not a change of the field.
        snapshot.record(&node);
        node.items.push(1u8);
        assert_eq!(snapshot.changes(&node), (0, 0));
    }
}
