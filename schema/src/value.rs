//! Primitive field values: their schema type names, wire encoding and the JSON a client sees.

use odeon_protocol::codec::{encode_number, encode_string};

/// A borrowed primitive value, tagged with the schema type it is encoded as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prim<'a> {
    /// `string`.
    String(&'a str),
    /// `number`: integers take the smallest tag, other values float32 or float64.
    Number(f64),
    /// `boolean`.
    Boolean(bool),
    /// `int8`.
    Int8(i8),
    /// `uint8`.
    Uint8(u8),
    /// `int16`.
    Int16(i16),
    /// `uint16`.
    Uint16(u16),
    /// `int32`.
    Int32(i32),
    /// `uint32`.
    Uint32(u32),
    /// `int64` (a JS client reads it as a double).
    Int64(i64),
    /// `uint64` (a JS client reads it as a double).
    Uint64(u64),
    /// `float32`.
    Float32(f32),
    /// `float64`.
    Float64(f64),
}

impl Prim<'_> {
    /// Appends the value's wire bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Prim::String(s) => encode_string(out, s),
            Prim::Number(v) => encode_number(out, v),
            Prim::Boolean(v) => out.push(u8::from(v)),
            Prim::Int8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Uint8(v) => out.push(v),
            Prim::Int16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Uint16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Int32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Uint32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Int64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Uint64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Float32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Prim::Float64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }

    /// Appends the value as JSON, as a client's decoder reads it back (a `number` that went
    /// out as float32 comes back with float32 precision).
    pub fn write_json(&self, out: &mut String) {
        use std::fmt::Write;
        match *self {
            Prim::String(s) => write_json_string(out, s),
            Prim::Number(v) => write_json_f64(out, number_as_decoded(v)),
            Prim::Boolean(v) => out.push_str(if v { "true" } else { "false" }),
            Prim::Int8(v) => _ = write!(out, "{v}"),
            Prim::Uint8(v) => _ = write!(out, "{v}"),
            Prim::Int16(v) => _ = write!(out, "{v}"),
            Prim::Uint16(v) => _ = write!(out, "{v}"),
            Prim::Int32(v) => _ = write!(out, "{v}"),
            Prim::Uint32(v) => _ = write!(out, "{v}"),
            Prim::Int64(v) => _ = write!(out, "{v}"),
            Prim::Uint64(v) => _ = write!(out, "{v}"),
            Prim::Float32(v) => write_json_f64(out, f64::from(v)),
            Prim::Float64(v) => write_json_f64(out, v),
        }
    }
}

/// What a decoder reads back for a `number`.
fn number_as_decoded(value: f64) -> f64 {
    // The integer path turns -0 into 0.
    odeon_protocol::codec::NumberRepr::of(value).decoded() + 0.0
}

fn write_json_f64(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_finite() {
        // `Display` prints the shortest representation that round-trips, as JS does; JSON has
        // no -0 (`JSON.stringify(-0)` is "0").
        _ = write!(out, "{}", v + 0.0);
    } else {
        out.push_str("null");
    }
}

pub(crate) fn write_json_string(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => _ = write!(out, "\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A Rust type that is a schema primitive by itself.
///
/// `String` is `string`, `bool` is `boolean`, `i8`…`u64` are `int8`…`uint64`, `f32` is
/// `float32` and `f64` is `number` (use `#[schema(float64)]` on the field for `float64`).
pub trait Primitive: Clone + PartialEq + 'static {
    /// The schema type name sent in the reflection handshake.
    const TYPE: &'static str;
    /// The value tagged with its schema type.
    fn prim(&self) -> Prim<'_>;
}

macro_rules! primitive {
    ($($ty:ty => $name:literal, $variant:ident;)*) => {$(
        impl Primitive for $ty {
            const TYPE: &'static str = $name;
            fn prim(&self) -> Prim<'_> {
                Prim::$variant(*self)
            }
        }
    )*};
}

primitive! {
    bool => "boolean", Boolean;
    i8 => "int8", Int8;
    u8 => "uint8", Uint8;
    i16 => "int16", Int16;
    u16 => "uint16", Uint16;
    i32 => "int32", Int32;
    u32 => "uint32", Uint32;
    i64 => "int64", Int64;
    u64 => "uint64", Uint64;
    f32 => "float32", Float32;
    f64 => "number", Number;
}

impl Primitive for String {
    const TYPE: &'static str = "string";
    fn prim(&self) -> Prim<'_> {
        Prim::String(self)
    }
}

/// An alternative wire type for a primitive field, chosen with `#[schema(float64)]` or
/// `#[schema(number)]`.
#[diagnostic::on_unimplemented(
    message = "this #[schema(...)] wire type does not apply to `{V}`",
    label = "not a field for this wire type",
    note = "#[schema(float64)] applies to `f64` and `Option<f64>`; #[schema(number)] to integer and float \
            fields and their `Option`"
)]
pub trait Codec<V> {
    /// The schema type name.
    const TYPE: &'static str;
    /// The value tagged with that type.
    fn prim(value: &V) -> Prim<'_>;
}

/// `#[schema(float64)]`: an `f64` sent as 8 bytes instead of `number`.
#[derive(Debug)]
pub enum Float64 {}

impl Codec<f64> for Float64 {
    const TYPE: &'static str = "float64";
    fn prim(value: &f64) -> Prim<'_> {
        Prim::Float64(*value)
    }
}

/// `#[schema(number)]`: a numeric field sent as a variable-length `number`.
#[derive(Debug)]
pub enum Number {}

macro_rules! number_codec {
    ($($ty:ty),*) => {$(
        impl Codec<$ty> for Number {
            const TYPE: &'static str = "number";
            fn prim(value: &$ty) -> Prim<'_> {
                Prim::Number(*value as f64)
            }
        }
    )*};
}

number_codec!(i8, u8, i16, u16, i32, u32, i64, u64, f32, f64);

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(p: Prim<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        p.encode(&mut out);
        out
    }

    fn json(p: Prim<'_>) -> String {
        let mut out = String::new();
        p.write_json(&mut out);
        out
    }

    #[test]
    fn fixed_width_primitives_are_little_endian() {
        assert_eq!(bytes(Prim::Uint16(7)), [0x07, 0x00]);
        assert_eq!(bytes(Prim::Int16(-2)), [0xfe, 0xff]);
        assert_eq!(bytes(Prim::Uint32(0x0102_0304)), [4, 3, 2, 1]);
        assert_eq!(bytes(Prim::Int64(-1)), [0xff; 8]);
        assert_eq!(bytes(Prim::Uint64(1 << 32)), [0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(bytes(Prim::Float32(1.5)), [0x00, 0x00, 0xc0, 0x3f]);
        assert_eq!(bytes(Prim::Float64(1.0)), [0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        assert_eq!(bytes(Prim::Boolean(true)), [1]);
        assert_eq!(bytes(Prim::String("ab")), [0xa2, b'a', b'b']);
        assert_eq!(bytes(Prim::Number(-2.5)), [0xca, 0x00, 0x00, 0x20, 0xc0]);
    }

    #[test]
    fn json_shows_what_the_client_decodes() {
        assert_eq!(json(Prim::Number(0.1)), "0.10000000149011612");
        assert_eq!(json(Prim::Number(-0.0)), "0");
        assert_eq!(json(Prim::Number(f64::NAN)), "0");
        assert_eq!(json(Prim::Number(1e300)), format!("{}", 1e300));
        assert_eq!(json(Prim::Float32(0.1)), "0.10000000149011612");
        assert_eq!(json(Prim::Float64(0.1)), "0.1");
        assert_eq!(json(Prim::Float32(-0.0)), "0");
        assert_eq!(json(Prim::String("a\"\n\u{1}")), r#""a\"\n\u0001""#);
    }
}
