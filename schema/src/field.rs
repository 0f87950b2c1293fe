//! Which Rust types a `#[derive(Schema)]` struct may hold, and how each maps to a schema type.

use crate::reflection::{ChildType, FieldType, Registry};
use crate::value::{Codec, Prim, Primitive};
use crate::walk::{ChildRef, Collection};
use crate::{ArraySchema, MapSchema, Schema, Shared};

/// One field of a struct instance, as the encoder reads it.
#[doc(hidden)]
pub enum FieldRef<'a> {
    /// A primitive; `None` when an optional field is unset.
    Prim(Option<Prim<'a>>),
    /// A child struct; `None` when an optional child is unset.
    Child(Option<&'a dyn ChildRef>),
    /// A map or an array.
    Collection(&'a dyn Collection),
}

/// A Rust type usable as a field of a `#[derive(Schema)]` struct.
///
/// Implemented for the primitives (`String`, `bool`, `i8`…`u64`, `f32`, `f64`), `Option` of a
/// primitive (unset means the client sees `undefined`), [`Shared<T>`] and `Option<Shared<T>>`
/// for child structs, [`MapSchema<V>`] and [`ArraySchema<V>`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a field of a #[derive(Schema)] struct",
    label = "not a schema field type",
    note = "use a primitive (String, bool, i8…u64, f32, f64), `Shared<T>` for a child struct, \
            `MapSchema<V>`, `ArraySchema<V>`, an `Option` of a primitive or of `Shared<T>`, \
            or mark the field #[schema(skip)] to keep it out of the synchronised state"
)]
pub trait Field {
    #[doc(hidden)]
    fn describe(reg: &mut Registry) -> FieldType;
    #[doc(hidden)]
    fn view(&self) -> FieldRef<'_>;
    /// Whether assigning `new` over `self` changes nothing a client sees.
    #[doc(hidden)]
    fn unchanged(&self, new: &Self) -> bool;
    /// Whether the field currently has a value (optional fields may not).
    #[doc(hidden)]
    fn is_set(&self) -> bool {
        true
    }
}

macro_rules! primitive_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            fn describe(_: &mut Registry) -> FieldType {
                FieldType::Primitive(<$ty as Primitive>::TYPE)
            }
            fn view(&self) -> FieldRef<'_> {
                FieldRef::Prim(Some(self.prim()))
            }
            fn unchanged(&self, new: &Self) -> bool {
                self == new
            }
        }

        impl Field for Option<$ty> {
            fn describe(_: &mut Registry) -> FieldType {
                FieldType::Primitive(<$ty as Primitive>::TYPE)
            }
            fn view(&self) -> FieldRef<'_> {
                FieldRef::Prim(self.as_ref().map(Primitive::prim))
            }
            fn unchanged(&self, new: &Self) -> bool {
                self == new
            }
            fn is_set(&self) -> bool {
                self.is_some()
            }
        }

        impl<C: Codec<$ty>> FieldWith<C> for $ty {
            fn describe(_: &mut Registry) -> FieldType {
                FieldType::Primitive(C::TYPE)
            }
            fn view(&self) -> FieldRef<'_> {
                FieldRef::Prim(Some(C::prim(self)))
            }
        }

        impl<C: Codec<$ty>> FieldWith<C> for Option<$ty> {
            fn describe(_: &mut Registry) -> FieldType {
                FieldType::Primitive(C::TYPE)
            }
            fn view(&self) -> FieldRef<'_> {
                FieldRef::Prim(self.as_ref().map(C::prim))
            }
        }

        impl Element for $ty {
            type Item = $ty;
            type ItemMut<'a> = &'a mut $ty;
            fn item_mut(item: &mut $ty) -> &mut $ty {
                item
            }
            fn describe(_: &mut Registry) -> ChildType {
                ChildType::Primitive(<$ty as Primitive>::TYPE)
            }
            fn view(item: &$ty) -> ItemRef<'_> {
                ItemRef::Prim(item.prim())
            }
            fn same(a: &$ty, b: &$ty) -> bool {
                a == b
            }
        }
    )*};
}

primitive_field!(String, bool, i8, u8, i16, u16, i32, u32, i64, u64, f32, f64);

impl<T: Schema> Field for Shared<T> {
    fn describe(reg: &mut Registry) -> FieldType {
        FieldType::Ref(reg.register::<T>())
    }
    fn view(&self) -> FieldRef<'_> {
        FieldRef::Child(Some(self))
    }
    fn unchanged(&self, new: &Self) -> bool {
        Shared::ptr_eq(self, new)
    }
}

impl<T: Schema> Field for Option<Shared<T>> {
    fn describe(reg: &mut Registry) -> FieldType {
        FieldType::Ref(reg.register::<T>())
    }
    fn view(&self) -> FieldRef<'_> {
        FieldRef::Child(self.as_ref().map(|c| c as &dyn ChildRef))
    }
    fn unchanged(&self, new: &Self) -> bool {
        match (self, new) {
            (Some(a), Some(b)) => Shared::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

impl<V: Element> Field for MapSchema<V> {
    fn describe(reg: &mut Registry) -> FieldType {
        FieldType::Map(V::describe(reg))
    }
    fn view(&self) -> FieldRef<'_> {
        FieldRef::Collection(self)
    }
    fn unchanged(&self, _: &Self) -> bool {
        false
    }
}

impl<V: Element> Field for ArraySchema<V> {
    fn describe(reg: &mut Registry) -> FieldType {
        FieldType::Array(V::describe(reg))
    }
    fn view(&self) -> FieldRef<'_> {
        FieldRef::Collection(self)
    }
    fn unchanged(&self, _: &Self) -> bool {
        false
    }
}

/// A field whose wire type is chosen by an attribute: `#[schema(float64)]` (codec
/// [`crate::value::Float64`]) or `#[schema(number)]` (codec [`crate::value::Number`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot take this #[schema(...)] type",
    note = "#[schema(float64)] applies to `f64` and `Option<f64>`; #[schema(number)] to integer \
            and float fields and their `Option`"
)]
pub trait FieldWith<C> {
    #[doc(hidden)]
    fn describe(reg: &mut Registry) -> FieldType;
    #[doc(hidden)]
    fn view(&self) -> FieldRef<'_>;
}

/// One collection item, as the encoder reads it.
#[doc(hidden)]
pub enum ItemRef<'a> {
    /// A primitive item.
    Prim(Prim<'a>),
    /// A child struct.
    Child(&'a dyn ChildRef),
}

/// A type usable as the value of a [`MapSchema`] or the item of an [`ArraySchema`]: a primitive,
/// or a `#[derive(Schema)]` struct (stored as a [`Shared`] handle).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an item of a MapSchema or ArraySchema",
    note = "items are primitives (String, bool, i8…u64, f32, f64) or #[derive(Schema)] structs"
)]
pub trait Element: 'static {
    /// How an item is stored: the primitive itself, or `Shared<T>` for a struct.
    type Item: Clone;
    /// Write access to a stored item: `&mut` for a primitive, the struct's generated `*Mut`
    /// type for a struct (whose fields are then assigned as plain fields).
    type ItemMut<'a>;
    /// Write access to `item`.
    #[doc(hidden)]
    fn item_mut(item: &mut Self::Item) -> Self::ItemMut<'_>;
    #[doc(hidden)]
    fn describe(reg: &mut Registry) -> ChildType;
    #[doc(hidden)]
    fn view(item: &Self::Item) -> ItemRef<'_>;
    /// Whether two items are the same value (primitives) or instance (structs).
    #[doc(hidden)]
    fn same(a: &Self::Item, b: &Self::Item) -> bool;
}
