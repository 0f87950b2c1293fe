//! The reflection handshake: the state's types, sent in JOIN_ROOM so a client can decode
//! without the server's classes. It is a function of the state's type alone.
//!
//! The official encoder sends an `encodeAll` of a `Reflection` instance. Its layout differs
//! between schema generations: v4 (schema 3.x/4.x: colyseus.js 0.16, SDK 0.17) writes
//! `ReflectionType.fields` before `id` and a field's `referencedType` before its `type`, and
//! names a primitive collection `"array:string"`; v5 (SDK 0.18) writes fields in declaration
//! order and puts the primitive in `childPrimitive`.

use std::any::TypeId;

use odeon_protocol::codec::{encode_int, encode_string};

use crate::Schema;
use crate::walk::{ADD, SWITCH};

/// The generation of `@colyseus/schema` a client decodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaVersion {
    /// Schema 3.x and 4.x: colyseus.js 0.16 and `@colyseus/sdk` 0.17 (identical layouts).
    V4,
    /// Schema 5.x: `@colyseus/sdk` 0.18.
    V5,
}

/// A field's schema type, for the reflection.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A primitive, by name.
    Primitive(&'static str),
    /// A child struct, by type id.
    Ref(u32),
    /// A map of the child type.
    Map(ChildType),
    /// An array of the child type.
    Array(ChildType),
}

/// The item type of a collection.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildType {
    /// A primitive, by name.
    Primitive(&'static str),
    /// A struct, by type id.
    Ref(u32),
}

/// The struct types reachable from a root type, numbered as the official `TypeContext` does:
/// the root is 0, then depth first in field order.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Registry {
    types: Vec<(TypeId, Vec<(&'static str, FieldType)>)>,
}

impl Registry {
    /// The type id of `T`, registering it and the types it refers to on first sight.
    pub fn register<T: Schema>(&mut self) -> u32 {
        let key = TypeId::of::<T>();
        if let Some(id) = self.types.iter().position(|(k, _)| *k == key) {
            return id as u32;
        }
        let id = self.types.len();
        self.types.push((key, Vec::new()));
        let fields = T::__describe(self);
        self.types[id].1 = T::__FIELDS.iter().copied().zip(fields).collect();
        id as u32
    }
}

/// The reflection handshake for state type `T`: the bytes JOIN_ROOM carries after the
/// serializer id ("schema").
pub fn reflection<T: Schema>(version: SchemaVersion) -> Vec<u8> {
    let mut registry = Registry::default();
    registry.register::<T>();
    Writer::new(version).write(&registry)
}

/// The fields of `T` itself in index order, each with its primitive type name (`"number"`,
/// `"string"`…); `Err` names the first field that is not a primitive. Input types (flat structs
/// of primitives) are described to the host with this.
pub fn primitive_fields<T: Schema>() -> Result<Vec<(&'static str, &'static str)>, &'static str> {
    let mut registry = Registry::default();
    registry.register::<T>();
    registry.types[0]
        .1
        .iter()
        .map(|(name, ty)| match ty {
            FieldType::Primitive(p) => Ok((*name, *p)),
            _ => Err(*name),
        })
        .collect()
}

/// Writes the `Reflection` instance as the official `encodeAll` does: refIds depth first in the
/// order the instance was built, sessions in the same order.
struct Writer {
    version: SchemaVersion,
    out: Vec<u8>,
    next_ref: u32,
}

impl Writer {
    fn new(version: SchemaVersion) -> Self {
        Self { version, out: Vec::new(), next_ref: 1 }
    }

    fn take_ref(&mut self) -> u32 {
        let id = self.next_ref;
        self.next_ref += 1;
        id
    }

    fn switch(&mut self, ref_id: u32) {
        self.out.push(SWITCH);
        encode_int(&mut self.out, i64::from(ref_id));
    }

    fn op(&mut self, field: u8) {
        self.out.push(ADD | field);
    }

    fn number(&mut self, value: i64) {
        encode_int(&mut self.out, value);
    }

    fn string(&mut self, value: &str) {
        encode_string(&mut self.out, value);
    }

    fn write(mut self, registry: &Registry) -> Vec<u8> {
        // refIds: types array, then per type: the type, its fields array, each field.
        let types_ref = self.take_ref();
        let mut layout = Vec::new();
        for (_, fields) in &registry.types {
            let type_ref = self.take_ref();
            let fields_ref = self.take_ref();
            let field_refs: Vec<u32> = fields.iter().map(|_| self.take_ref()).collect();
            layout.push((type_ref, fields_ref, field_refs));
        }

        // Reflection: types (0); rootType (1) is left out because the root's type id is 0.
        self.op(0);
        self.number(i64::from(types_ref));
        self.switch(types_ref);
        for (i, (type_ref, _, _)) in layout.iter().enumerate() {
            self.op(0);
            self.number(i as i64);
            self.number(i64::from(*type_ref));
        }
        for (id, ((_, fields), (type_ref, fields_ref, field_refs))) in
            registry.types.iter().zip(&layout).enumerate()
        {
            // ReflectionType: id (0), fields (2).
            self.switch(*type_ref);
            match self.version {
                SchemaVersion::V4 => {
                    self.op(2);
                    self.number(i64::from(*fields_ref));
                    self.op(0);
                    self.number(id as i64);
                }
                SchemaVersion::V5 => {
                    self.op(0);
                    self.number(id as i64);
                    self.op(2);
                    self.number(i64::from(*fields_ref));
                }
            }
            if !fields.is_empty() {
                self.switch(*fields_ref);
                for (i, field_ref) in field_refs.iter().enumerate() {
                    self.op(0);
                    self.number(i as i64);
                    self.number(i64::from(*field_ref));
                }
            }
            for ((name, ty), field_ref) in fields.iter().zip(field_refs) {
                self.switch(*field_ref);
                self.field(name, *ty);
            }
        }
        self.out
    }

    /// A `ReflectionField`: name (0), type (1), referencedType (2), v5 childPrimitive (3).
    fn field(&mut self, name: &str, ty: FieldType) {
        let (kind, referenced, child) = match ty {
            FieldType::Primitive(p) => (p, None, None),
            FieldType::Ref(id) => ("ref", Some(i64::from(id)), None),
            FieldType::Map(ChildType::Ref(id)) => ("map", Some(i64::from(id)), None),
            FieldType::Array(ChildType::Ref(id)) => ("array", Some(i64::from(id)), None),
            FieldType::Map(ChildType::Primitive(p)) => ("map", Some(-1), Some(p)),
            FieldType::Array(ChildType::Primitive(p)) => ("array", Some(-1), Some(p)),
        };
        self.op(0);
        self.string(name);
        match self.version {
            SchemaVersion::V4 => {
                if let Some(referenced) = referenced {
                    self.op(2);
                    self.number(referenced);
                }
                self.op(1);
                match child {
                    Some(p) => self.string(&format!("{kind}:{p}")),
                    None => self.string(kind),
                }
            }
            SchemaVersion::V5 => {
                self.op(1);
                self.string(kind);
                if let Some(referenced) = referenced {
                    self.op(2);
                    self.number(referenced);
                }
                if let Some(p) = child {
                    self.op(3);
                    self.string(p);
                }
            }
        }
    }
}
