//! A client's view of the state, rebuilt from the frames it got: the schema v5 handshake
//! (JOIN_ROOM's reflection), the full state it joined with and every patch since, decoded the
//! way `@colyseus/schema` decodes them, with no knowledge of the room's Rust types. So what a
//! test reads back is what an official 0.18 client would hold as `room.state`.
//!
//! It reads what the encoder writes: structure switches, field and collection operations
//! (ADD, REPLACE, DELETE, DELETE_AND_ADD, CLEAR), and array removals as holes that close when
//! the stream leaves the array.

use std::collections::BTreeMap;

use odeon_protocol::codec::{CodecError, Cursor};
use odeon_schema::Prim;

const SWITCH: u8 = 0xff;
const CLEAR: u8 = 0x0a;
const ADD: u8 = 0x80;
const DELETE: u8 = 0x40;

/// A field's or an item's type.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Prim(String),
    Ref(usize),
    Map(Box<Ty>),
    Array(Box<Ty>),
}

/// A struct type: its fields' names and types, by index.
type Struct = Vec<(String, Ty)>;

/// A decoded value: a primitive, or the refId of a struct or collection.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Ref(u32),
}

/// One operation of a frame, read for the kind of ref it applies to.
enum Op {
    Field(u8, Option<Val>),
    Entry(u32, Option<String>, Option<Val>),
    Item(usize, Option<Val>),
    Clear,
}

/// What a refId holds.
#[derive(Debug)]
enum Node {
    Struct {
        ty: usize,
        fields: BTreeMap<u8, Val>,
    },
    /// Entries by wire index, in insertion order.
    Map {
        item: Ty,
        entries: Vec<(u32, String, Val)>,
    },
    /// Items, with `None` for a hole a DELETE left until the stream leaves the array.
    Array {
        item: Ty,
        items: Vec<Option<Val>>,
    },
}

/// Why a frame did not decode; the test that reads the state fails with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// A value could not be read.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// The stream is not what the handshake announced.
    #[error("{0}")]
    Stream(String),
}

fn stream<T>(message: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Stream(message.into()))
}

/// One client's decoder.
#[derive(Debug)]
pub(super) struct Decoder {
    types: Vec<Struct>,
    refs: BTreeMap<u32, Node>,
}

impl Decoder {
    /// A decoder for the types a v5 reflection handshake announces, holding the empty root.
    pub(super) fn new(reflection_v5: &[u8]) -> Result<Self, DecodeError> {
        let types = read_reflection(reflection_v5)?;
        if types.is_empty() {
            return stream("the reflection announces no root type");
        }
        Ok(Self::with_types(types))
    }

    fn with_types(types: Vec<Struct>) -> Self {
        let root = Node::Struct { ty: 0, fields: BTreeMap::new() };
        Self { types, refs: BTreeMap::from([(0, root)]) }
    }

    /// Applies a ROOM_STATE or ROOM_STATE_PATCH body.
    pub(super) fn apply(&mut self, frame: &[u8]) -> Result<(), DecodeError> {
        let mut cursor = Cursor::new(frame);
        let mut current = 0u32;
        while let Some(byte) = cursor.peek() {
            if byte == SWITCH {
                cursor.u8()?;
                self.close_holes(current);
                current = cursor.number()? as u32;
                if !self.refs.contains_key(&current) {
                    return stream(format!("switch to refId {current}, which no operation introduced"));
                }
                continue;
            }
            self.operation(current, &mut cursor)?;
        }
        self.close_holes(current);
        Ok(())
    }

    fn operation(&mut self, current: u32, cursor: &mut Cursor<'_>) -> Result<(), DecodeError> {
        let byte = cursor.u8()?;
        let op = match self.refs.get(&current) {
            None => return stream(format!("operation on refId {current}, which no operation introduced")),
            Some(Node::Map { .. } | Node::Array { .. }) if byte == CLEAR => Op::Clear,
            Some(Node::Struct { ty, .. }) => {
                let index = byte & 0x3f;
                let Some((_, field_ty)) = self.types[*ty].get(index as usize).cloned() else {
                    return stream(format!("refId {current} has no field {index}"));
                };
                Op::Field(index, self.read(byte & 0xc0, &field_ty, cursor)?)
            }
            Some(Node::Map { item, .. }) => {
                let item = item.clone();
                let index = cursor.number()? as u32;
                let key = (byte & ADD == ADD).then(|| cursor.string().map(str::to_owned)).transpose()?;
                Op::Entry(index, key, self.read(byte, &item, cursor)?)
            }
            Some(Node::Array { item, .. }) => {
                let item = item.clone();
                let index = cursor.number()? as usize;
                Op::Item(index, self.read(byte, &item, cursor)?)
            }
        };
        let node = self.refs.get_mut(&current).expect("the operation's ref exists");
        match (node, op) {
            (Node::Struct { fields, .. }, Op::Field(index, Some(value))) => _ = fields.insert(index, value),
            (Node::Struct { fields, .. }, Op::Field(index, None)) => _ = fields.remove(&index),
            (Node::Map { entries, .. }, Op::Clear) => entries.clear(),
            (Node::Array { items, .. }, Op::Clear) => items.clear(),
            (Node::Map { entries, .. }, Op::Entry(index, key, value)) => {
                let at = entries.iter().position(|(i, _, _)| *i == index);
                match (value, at, key) {
                    (None, Some(at), _) => _ = entries.remove(at),
                    (Some(value), Some(at), None) => entries[at].2 = value,
                    // A key added again moves to the end, as in a JS Map.
                    (Some(value), at, Some(key)) => {
                        if let Some(at) = at {
                            entries.remove(at);
                        }
                        entries.push((index, key, value));
                    }
                    (Some(_), None, None) => {
                        return stream(format!("map {current} replaces unknown index {index}"));
                    }
                    (None, None, _) => {}
                }
            }
            (Node::Array { items, .. }, Op::Item(index, value)) => {
                if index >= items.len() {
                    items.resize(index + 1, None);
                }
                items[index] = value;
            }
            _ => unreachable!("operations are read for the kind of their ref"),
        }
        Ok(())
    }

    /// The value an operation carries: none for a DELETE.
    fn read(&mut self, op: u8, ty: &Ty, cursor: &mut Cursor<'_>) -> Result<Option<Val>, DecodeError> {
        if op == DELETE { Ok(None) } else { self.value(ty, cursor).map(Some) }
    }

    /// Reads a value of type `ty`; a struct or collection value is a refId, created on first
    /// sight.
    fn value(&mut self, ty: &Ty, cursor: &mut Cursor<'_>) -> Result<Val, DecodeError> {
        let prim = match ty {
            Ty::Prim(name) => name,
            Ty::Ref(_) | Ty::Map(_) | Ty::Array(_) => {
                let ref_id = cursor.number()? as u32;
                self.refs.entry(ref_id).or_insert_with(|| match ty {
                    Ty::Ref(t) => Node::Struct { ty: *t, fields: BTreeMap::new() },
                    Ty::Map(item) => Node::Map { item: (**item).clone(), entries: Vec::new() },
                    Ty::Array(item) => Node::Array { item: (**item).clone(), items: Vec::new() },
                    Ty::Prim(_) => unreachable!("matched above"),
                });
                return Ok(Val::Ref(ref_id));
            }
        };
        let fixed = |cursor: &mut Cursor<'_>, n: usize| -> Result<Vec<u8>, DecodeError> {
            (0..n).map(|_| cursor.u8().map_err(DecodeError::from)).collect()
        };
        let le = |b: Vec<u8>| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        Ok(match prim.as_str() {
            "string" => Val::Str(cursor.string()?.to_owned()),
            "number" => Val::Num(cursor.number()?),
            "boolean" => Val::Bool(cursor.u8()? != 0),
            "int8" => Val::Num(f64::from(cursor.u8()? as i8)),
            "uint8" => Val::Num(f64::from(cursor.u8()?)),
            "int16" => Val::Num(f64::from(le(fixed(cursor, 2)?) as u16 as i16)),
            "uint16" => Val::Num(le(fixed(cursor, 2)?) as f64),
            "int32" => Val::Num(f64::from(le(fixed(cursor, 4)?) as u32 as i32)),
            "uint32" => Val::Num(le(fixed(cursor, 4)?) as f64),
            "int64" => Val::Num(le(fixed(cursor, 8)?) as i64 as f64),
            "uint64" => Val::Num(le(fixed(cursor, 8)?) as f64),
            "float32" => Val::Num(f64::from(f32::from_bits(le(fixed(cursor, 4)?) as u32))),
            "float64" => Val::Num(f64::from_bits(le(fixed(cursor, 8)?))),
            other => return stream(format!("unknown primitive type {other:?}")),
        })
    }

    /// Closes the holes DELETEs left in `ref_id`, if it is an array.
    fn close_holes(&mut self, ref_id: u32) {
        if let Some(Node::Array { items, .. }) = self.refs.get_mut(&ref_id) {
            items.retain(Option::is_some);
        }
    }

    /// The state as `room.state.toJSON()` shows it.
    pub(super) fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&Val::Ref(0), &mut out);
        out
    }

    fn write(&self, value: &Val, out: &mut String) {
        match value {
            Val::Str(s) => Prim::String(s).write_json(out),
            Val::Bool(b) => Prim::Boolean(*b).write_json(out),
            // Printed as decoded, at full precision.
            Val::Num(n) => Prim::Float64(*n).write_json(out),
            Val::Ref(id) => match self.refs.get(id) {
                Some(Node::Struct { ty, fields }) => {
                    out.push('{');
                    for (i, (index, value)) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        Prim::String(&self.types[*ty][*index as usize].0).write_json(out);
                        out.push(':');
                        self.write(value, out);
                    }
                    out.push('}');
                }
                Some(Node::Map { entries, .. }) => {
                    out.push('{');
                    for (i, (_, key, value)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        Prim::String(key).write_json(out);
                        out.push(':');
                        self.write(value, out);
                    }
                    out.push('}');
                }
                Some(Node::Array { items, .. }) => {
                    out.push('[');
                    for (i, value) in items.iter().flatten().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        self.write(value, out);
                    }
                    out.push(']');
                }
                None => out.push_str("null"),
            },
        }
    }
}

/// The types of a v5 reflection: `Reflection{types: array<ReflectionType>}`,
/// `ReflectionType{id, extendsId, fields: array<ReflectionField>}`,
/// `ReflectionField{name, type, referencedType, childPrimitive}`, decoded with this decoder.
fn read_reflection(bytes: &[u8]) -> Result<Vec<Struct>, DecodeError> {
    let prim = |name: &str| Ty::Prim(name.to_owned());
    let field = |name: &str, ty: Ty| (name.to_owned(), ty);
    let meta = vec![
        vec![field("types", Ty::Array(Box::new(Ty::Ref(1)))), field("rootType", prim("number"))],
        vec![
            field("id", prim("number")),
            field("extendsId", prim("number")),
            field("fields", Ty::Array(Box::new(Ty::Ref(2)))),
        ],
        vec![
            field("name", prim("string")),
            field("type", prim("string")),
            field("referencedType", prim("number")),
            field("childPrimitive", prim("string")),
        ],
    ];
    let mut reflection = Decoder::with_types(meta);
    reflection.apply(bytes)?;
    let get = |fields: &BTreeMap<u8, Val>, i: u8| fields.get(&i).cloned();
    let structs = |id: u32| match reflection.refs.get(&id) {
        Some(Node::Struct { fields, .. }) => Ok(fields),
        _ => stream(format!("reflection refId {id} is not a struct")),
    };
    let array = |value: Option<Val>| -> Result<Vec<u32>, DecodeError> {
        let Some(Val::Ref(id)) = value else { return Ok(Vec::new()) };
        match reflection.refs.get(&id) {
            Some(Node::Array { items, .. }) => Ok(items
                .iter()
                .flatten()
                .filter_map(|v| if let Val::Ref(r) = v { Some(*r) } else { None })
                .collect()),
            _ => stream(format!("reflection refId {id} is not an array")),
        }
    };
    let mut types = BTreeMap::new();
    for type_ref in array(get(structs(0)?, 0))? {
        let ty = structs(type_ref)?;
        let Some(Val::Num(id)) = get(ty, 0) else { return stream("a reflection type without an id") };
        let mut fields = Vec::new();
        for field_ref in array(get(ty, 2))? {
            let f = structs(field_ref)?;
            let (Some(Val::Str(name)), Some(Val::Str(kind))) = (get(f, 0), get(f, 1)) else {
                return stream("a reflection field without a name or type");
            };
            let referenced = match get(f, 2) {
                Some(Val::Num(n)) if n >= 0.0 => Some(n as usize),
                _ => None,
            };
            let child = match (referenced, get(f, 3)) {
                (Some(t), _) => Ty::Ref(t),
                (None, Some(Val::Str(p))) => Ty::Prim(p),
                (None, _) => Ty::Prim(String::new()),
            };
            let ty = match kind.as_str() {
                "ref" => child,
                "map" => Ty::Map(Box::new(child)),
                "array" => Ty::Array(Box::new(child)),
                primitive => Ty::Prim(primitive.to_owned()),
            };
            fields.push((name, ty));
        }
        types.insert(id as usize, fields);
    }
    // Type ids count from 0 with the root.
    Ok(types.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_schema::{ArraySchema, MapSchema, Schema, SchemaVersion, Shared, StateEncoder};

    #[derive(Schema, Default)]
    struct Piece {
        x: f32,
        tag: Option<String>,
    }

    #[derive(Schema, Default)]
    struct Board {
        turn_of: String,
        cells: ArraySchema<u8>,
        pieces: MapSchema<Piece>,
        lead: Option<Shared<Piece>>,
        big: i64,
    }

    #[test]
    fn follows_full_states_and_patches_as_a_client_does() {
        let mut enc =
            StateEncoder::new(Board { cells: [1u8, 2, 3].into_iter().collect(), ..Board::default() });
        let mut client = Decoder::new(&StateEncoder::<Board>::reflection(SchemaVersion::V5)).unwrap();
        client.apply(&enc.full_state()).unwrap();
        assert_eq!(client.to_json(), enc.to_json());
        {
            let mut s = enc.state_mut();
            s.turn_of = "a\"b".into();
            s.cells.remove(0);
            s.cells[1] = 9;
            s.pieces.insert("p", Piece { x: 0.1, tag: Some("t".into()) });
            s.big = -(1 << 40);
        }
        client.apply(&enc.patch().unwrap()).unwrap();
        assert_eq!(client.to_json(), enc.to_json());
        let lead = enc.state().pieces.get("p").cloned();
        enc.state_mut().lead = lead;
        enc.state_mut().pieces.remove("p");
        enc.state_mut().cells.clear();
        client.apply(&enc.patch().unwrap()).unwrap();
        assert_eq!(client.to_json(), enc.to_json());
        assert!(
            client.to_json().contains(r#""lead":{"x":0.10000000149011612,"tag":"t"}"#),
            "{}",
            client.to_json()
        );
        // A client that joins now gets the same state from one full state.
        let mut joiner = Decoder::new(&StateEncoder::<Board>::reflection(SchemaVersion::V5)).unwrap();
        joiner.apply(&enc.full_state()).unwrap();
        assert_eq!(joiner.to_json(), client.to_json());
    }

    #[test]
    fn a_broken_stream_is_an_error_not_a_panic() {
        let mut client = Decoder::new(&StateEncoder::<Board>::reflection(SchemaVersion::V5)).unwrap();
        assert!(client.apply(&[0xff, 0x07]).is_err());
        assert!(client.apply(&[0x9f]).is_err());
        assert!(client.apply(&[0x80, 0xd9]).is_err());
        assert!(Decoder::new(&[0x80]).is_err());
    }
}
