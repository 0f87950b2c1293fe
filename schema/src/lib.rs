//! Room state in plain Rust structs, synchronised to the official Colyseus clients.
//!
//! A room keeps its state in `#[derive(Schema)]` structs. Every change, a field assigned or a
//! collection edited, is found and recorded, and a [`StateEncoder`] turns the
//! state into the `@colyseus/schema` wire format: the reflection handshake (schema v4 and v5
//! layouts), full states and patches. Every official client then sees it as `room.state`,
//! with its change callbacks, as if a Colyseus server were behind it.
//!
//! ```
//! use odeon_schema::{MapSchema, Schema, SchemaVersion, StateEncoder};
//!
//! #[derive(Schema, Default)]
//! struct Player {
//!     x: f64,
//!     y: f64,
//! }
//!
//! #[derive(Schema, Default)]
//! struct State {
//!     players: MapSchema<Player>,
//! }
//!
//! let handshake = StateEncoder::<State>::reflection(SchemaVersion::V4);
//! let mut state = StateEncoder::new(State::default());
//! state.state_mut().players.insert("sid", Player { x: 1.5, y: 0.0 });
//! let full = state.full_state(); // ROOM_STATE body, for a joining client
//! if let Some(mut p) = state.state_mut().players.get_mut("sid") {
//!     p.x = 7.0;
//! }
//! assert_eq!(state.patch().unwrap(), [0xff, 0x02, 0x80, 0x07]); // ROOM_STATE_PATCH body
//! # let _ = (handshake, full);
//! ```
//!
//! # Types
//!
//! | Rust field type | schema type |
//! |---|---|
//! | `String`, `bool` | `string`, `boolean` |
//! | `i8` … `u64` | `int8` … `uint64` |
//! | `f32` | `float32` |
//! | `f64` | `number` (`#[schema(float64)]` for `float64`) |
//! | any integer or float with `#[schema(number)]` | `number` |
//! | `Option<primitive>` | the primitive; `None` is `undefined` on the client |
//! | [`Shared<T>`], `Option<Shared<T>>` | a child struct (`ref`) |
//! | [`MapSchema<V>`], [`ArraySchema<V>`] | `map`, `array` of primitives or structs |
//!
//! Field indexes follow declaration order (at most 63 synchronised fields). `#[schema(skip)]`
//! keeps a field out of the state. Clients see the fields in camelCase, Colyseus's convention
//! (`player_count` is `playerCount`); `#[schema(rename = "...")]` names one field and, on the
//! struct, `#[schema(rename_all = "snake_case")]` (or `"PascalCase"`) changes the rule. The
//! generated code names this crate `::odeon_schema`; the derive that `odeon_guest` re-exports
//! names `::odeon_guest::schema` instead, so a room needs no dependency on this crate. Another
//! re-export says where with `#[schema(crate = "path::to::odeon_schema")]`.
//!
//! # Changing the state
//!
//! Change it as plain Rust values: the derive generates `{Struct}Mut`, returned by
//! [`StateEncoder::state_mut`] and [`Shared::borrow_mut`], whose `DerefMut` hands out the
//! struct (`player.x = 3.0`); the fields that differ when the encoder next reaches the struct
//! are sent, exactly as if their setters had run (a value written back as it was is no change).
//! Collections change in place too: `map.get_mut(key)`, `map.values_mut()`, `array[i] = v`,
//! `array.get_mut(i)`, `array.iter_mut()`. `{Struct}Mut` also has `set_{field}` for every field
//! and `{field}_mut` for collections and skipped fields. Reading goes through `Deref`,
//! [`StateEncoder::state`] and [`Shared::borrow`]. Child structs live in [`Shared`] handles so
//! one instance can be placed twice; it is the same object on every client.
//!
//! A host that keeps the root outside the encoder between encodings, as a plain `T` (the guest
//! SDK's `ctx.state`), takes it out with [`StateEncoder::detach`] and puts it back for each
//! encoding with [`StateEncoder::attach`].
//!
//! # Encoding rules
//!
//! RefIds are assigned depth first, monotonically, and never reused: a struct or collection
//! that a patch removes is garbage-collected by every client, and placed again later it is
//! sent whole under a new refId. A map key inserted again after a patch removed it gets a new
//! index. Sessions follow the tree depth first, so a parent's operation always introduces a
//! refId before the stream switches to it. See [`ArraySchema`] for the array rules.
//!
//! # Live migration
//!
//! A state can move to another instance (new code with the same schema types) without its
//! clients noticing. [`Shared`], [`MapSchema`] and [`ArraySchema`] implement serde's
//! `Serialize`/`Deserialize` (a map keeps its entries' wire indexes), so state structs that
//! also derive them can be saved and restored. Right after a patch, the old encoder's
//! [`StateEncoder::carry`] returns a [`StateCarry`] (serde too): the refIds clients hold, at
//! their paths in the tree, and the encoder's position in the stream. The new instance builds
//! a [`StateEncoder`] from the restored value and calls [`StateEncoder::adopt`]: its next
//! patches are then the bytes the old encoder would have written.
//!
//! ```
//! # use odeon_schema::{MapSchema, Schema, StateEncoder};
//! # use serde::{Deserialize, Serialize};
//! #[derive(Schema, Default, Serialize, Deserialize)]
//! struct Player {
//!     x: f64,
//! }
//!
//! #[derive(Schema, Default, Serialize, Deserialize)]
//! struct State {
//!     players: MapSchema<Player>,
//! }
//!
//! # fn save(_: &impl Serialize) {}
//! # fn restore<T: Default>() -> T { T::default() }
//! # fn main() -> Result<(), odeon_schema::CarryError> {
//! # let mut old = StateEncoder::new(State::default());
//! # old.patch();
//! // Old instance, after a patch:
//! let carry = old.carry()?;
//! save(&*old.state());
//! save(&carry);
//! // New instance:
//! # let (state, carry): (State, _) = (restore(), carry);
//! let mut new = StateEncoder::new(state);
//! new.adopt(&carry)?;
//! # Ok(())
//! # }
//! ```
//!
//! A struct instance placed twice in the state is restored by serde as two instances, which
//! clients do not hold: `adopt` refuses such a state.

#![deny(missing_docs)]

mod array;
mod carry;
mod encoder;
mod field;
mod map;
mod reflection;
mod serde_impls;
mod shared;
mod snapshot;
mod value;
mod walk;

pub use array::ArraySchema;
pub use carry::{CarryError, StateCarry};
pub use encoder::StateEncoder;
pub use field::{Element, Field, FieldWith};
pub use map::MapSchema;
pub use reflection::{SchemaVersion, primitive_fields, reflection};
pub use shared::{Shared, Tracked};
pub use value::{Prim, Primitive};

/// Derives [`Schema`] for a struct with named fields, and generates its `{Struct}Mut` type.
pub use odeon_schema_derive::Schema;

/// A struct that can be (part of) the state. Implemented by `#[derive(Schema)]`, and by `()`,
/// the state of a room that has none.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a schema struct",
    label = "needs #[derive(Schema)]",
    note = "put #[derive(Schema, Default)] on the struct (with `use odeon_guest::prelude::*;` in a room, \
            or `use odeon_schema::Schema;`); a room without synchronised state uses `()`"
)]
pub trait Schema: Sized + 'static {
    /// The generated `{Struct}Mut` type: setters that record changes.
    type Mut<'a>;

    /// The wire names of the synchronised fields, in index order.
    #[doc(hidden)]
    const __FIELDS: &'static [&'static str];

    /// The fields' schema types, in index order.
    #[doc(hidden)]
    fn __describe(registry: &mut reflection::Registry) -> Vec<reflection::FieldType>;

    /// Field `index` of this instance.
    #[doc(hidden)]
    fn __field(&self, index: u8) -> field::FieldRef<'_>;

    /// Wraps write access in the generated `{Struct}Mut`.
    #[doc(hidden)]
    fn __wrap(tracked: Tracked<'_, Self>) -> Self::Mut<'_>;
}

/// The empty state: what a room without synchronised state declares (`type State = ();`).
impl Schema for () {
    type Mut<'a> = ();
    const __FIELDS: &'static [&'static str] = &[];

    fn __describe(_: &mut reflection::Registry) -> Vec<reflection::FieldType> {
        Vec::new()
    }

    fn __field(&self, _: u8) -> field::FieldRef<'_> {
        __private::missing()
    }

    fn __wrap(_: Tracked<'_, Self>) {}
}

/// `value` as a client's `room.state.toJSON()` shows it, as JSON text.
pub fn to_json<T: Schema>(value: &T) -> String {
    let mut out = String::new();
    shared::write_struct_json(value, &mut out);
    out
}

/// What the generated code refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::field::{FieldRef, ItemRef};
    pub use crate::reflection::{ChildType, FieldType, Registry};
    pub use crate::value::{Codec, Float64, Number};
    pub use crate::walk::ChildRef;

    /// The `FieldRef` of a field that is not one (never produced for valid indexes).
    pub fn missing<'a>() -> FieldRef<'a> {
        FieldRef::Prim(None)
    }
}
