//! serde for the state's containers, so a room's state value can be saved and restored (live
//! migration, see [`crate::StateCarry`]).
//!
//! - [`Shared<T>`] is the instance itself: a handle placed twice is written twice and restored
//!   as two separate instances.
//! - [`MapSchema<V>`] is `(next_index, [(key, index, value), ...])`, entries in insertion order:
//!   the restored map numbers its entries, and the keys inserted later, exactly as the original
//!   does.
//! - [`ArraySchema<V>`] is a sequence of its items.
//!
//! A restored value records no changes: it is new, as if built with `new()` and filled.

use serde::de::Error as _;
use serde::ser::{Error as _, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::field::Element;
use crate::{ArraySchema, MapSchema, Schema, Shared};

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.try_borrow() {
            Some(value) => value.serialize(s),
            None => Err(S::Error::custom("a Shared instance is being changed (borrowed mutably)")),
        }
    }
}

impl<'de, T: Schema + Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Shared::new)
    }
}

/// A map's entries as serialised: `(key, index, value)` in insertion order.
struct Entries<'a, V: Element>(&'a MapSchema<V>);

impl<V: Element> Serialize for Entries<'_, V>
where
    V::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.indexed())
    }
}

impl<V: Element> Serialize for MapSchema<V>
where
    V::Item: Serialize,
{
    /// `(next_index, [(key, index, value), ...])`, entries in insertion order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.next_index())?;
        t.serialize_element(&Entries(self))?;
        t.end()
    }
}

impl<'de, V: Element> Deserialize<'de> for MapSchema<V>
where
    V::Item: Deserialize<'de>,
{
    /// Errs on duplicate keys or indexes and on indexes not below `next_index`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (next_index, entries) = <(u32, Vec<(String, u32, V::Item)>)>::deserialize(d)?;
        MapSchema::from_parts(next_index, entries).map_err(D::Error::custom)
    }
}

impl<V: Element> Serialize for ArraySchema<V>
where
    V::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, V: Element> Deserialize<'de> for ArraySchema<V>
where
    V::Item: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<V::Item>::deserialize(d).map(ArraySchema::from_vec)
    }
}
