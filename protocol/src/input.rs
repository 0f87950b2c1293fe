//! Colyseus 0.18 inputs: what a room that declares an input type tells its clients, and how the
//! host reads their input frames.
//!
//! - The JOIN_ROOM handshake of such a room carries two sections after the state reflection:
//!   [`section::INPUT_REFLECTION`] (the input type's reflection, as the state's) and
//!   [`section::INPUT_OPTIONS`] ([`options`]).
//! - `ROOM_INPUT_RELIABLE` (`[0x13][delta]`) is one input: the delta (`[0x80 | field][value]…`,
//!   possibly empty) is applied to the client's current values ([`apply_delta`]) and a copy is
//!   buffered, so an empty frame repeats the previous values.
//! - `ROOM_INPUT_UNRELIABLE` (`[0x14][baseSeq][len][delta]…`) carries the last few inputs, the
//!   slot `i` having seq `baseSeq + i` ([`unreliable_slots`]).
//! - State frames to such clients are TIMED: [`timed_prefix`] before the usual body.

use crate::codec::{self, CodecError, Cursor};

/// Handshake section tags after the state reflection.
pub mod section {
    /// The input type's reflection.
    pub const INPUT_REFLECTION: u8 = 1;
    /// The input options ([`super::options`]).
    pub const INPUT_OPTIONS: u8 = 2;
}

/// Flag bits of the input options.
pub mod flag {
    /// Inputs carry a render-time stamp (never advertised here).
    pub const RENDER_TIME: u8 = 1;
    /// The room steps on a fixed timestep (the tick rate follows).
    pub const FIXED_TIMESTEP: u8 = 2;
    /// The patch rate follows.
    pub const PATCH_RATE: u8 = 4;
    /// Sub-steps per step follow (only when 2 or more).
    pub const SUB_STEPS: u8 = 8;
}

/// The TIMED modifier bit of a frame's first byte.
pub const TIMED: u8 = 0x80;

/// The INPUT_OPTIONS section: `[flags]` then, per set flag in bit order, its number.
pub fn options(tick_rate_hz: u32, patch_rate_ms: u32, sub_steps: u32) -> Vec<u8> {
    let mut flags = flag::FIXED_TIMESTEP | flag::PATCH_RATE;
    if sub_steps >= 2 {
        flags |= flag::SUB_STEPS;
    }
    let mut out = vec![flags];
    codec::encode_number(&mut out, tick_rate_hz as f64);
    codec::encode_number(&mut out, patch_rate_ms as f64);
    if sub_steps >= 2 {
        codec::encode_number(&mut out, sub_steps as f64);
    }
    out
}

/// Appends a handshake section: `[tag][len: number][bytes]`.
pub fn push_section(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    codec::encode_int(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// The 9-byte head of a TIMED state frame: `[code | 0x80][sNow u32 LE][ack u32 LE]`. A heartbeat
/// is this head of a patch with no body.
pub fn timed_prefix(code: u8, server_now_ms: u32, ack: u32) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = code | TIMED;
    out[1..5].copy_from_slice(&server_now_ms.to_le_bytes());
    out[5..9].copy_from_slice(&ack.to_le_bytes());
    out
}

/// How an input field is encoded: the schema primitive types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `number`: the self-describing number.
    Number,
    /// `string`.
    String,
    /// `boolean`: one byte.
    Boolean,
    /// Fixed-width integers and floats, little-endian, by byte size and signedness/float.
    Fixed {
        /// Bytes on the wire.
        width: u8,
        /// Signed integer.
        signed: bool,
        /// IEEE float.
        float: bool,
    },
}

impl FieldKind {
    /// The kind of a schema primitive type name; `None` for a type inputs cannot hold.
    pub fn of(type_name: &str) -> Option<Self> {
        let fixed = |width, signed, float| Some(Self::Fixed { width, signed, float });
        match type_name {
            "number" => Some(Self::Number),
            "string" => Some(Self::String),
            "boolean" => Some(Self::Boolean),
            "int8" => fixed(1, true, false),
            "uint8" => fixed(1, false, false),
            "int16" => fixed(2, true, false),
            "uint16" => fixed(2, false, false),
            "int32" => fixed(4, true, false),
            "uint32" => fixed(4, false, false),
            "int64" => fixed(8, true, false),
            "uint64" => fixed(8, false, false),
            "float32" => fixed(4, false, true),
            "float64" => fixed(8, false, true),
            _ => None,
        }
    }
}

/// A field's current value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum InputValue {
    /// Any numeric field.
    Number(f64),
    /// A string field.
    String(String),
    /// A boolean field.
    Bool(bool),
}

impl InputValue {
    /// The zero value of a field kind (inputs start at zero).
    pub fn zero(kind: FieldKind) -> Self {
        match kind {
            FieldKind::Number | FieldKind::Fixed { .. } => Self::Number(0.0),
            FieldKind::String => Self::String(String::new()),
            FieldKind::Boolean => Self::Bool(false),
        }
    }
}

/// Why an input frame did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A field index the input type does not have.
    #[error("input field {0} does not exist")]
    Field(u8),
    /// An operation other than setting a field.
    #[error("unsupported input operation {0:#04x}")]
    Operation(u8),
    /// A value did not decode.
    #[error("malformed input value: {0}")]
    Value(#[from] CodecError),
}

/// Applies a delta (`[0x80 | field][value]…`) to `values`, whose kinds are `kinds`. On error
/// the fields before the bad one stay applied, as a streaming decoder leaves them.
pub fn apply_delta(values: &mut [InputValue], kinds: &[FieldKind], delta: &[u8]) -> Result<(), InputError> {
    let mut cur = Cursor::new(delta);
    while let Some(op) = cur.peek() {
        cur.u8()?;
        if op & 0xc0 != 0x80 {
            return Err(InputError::Operation(op));
        }
        let index = op & 0x3f;
        let kind = *kinds.get(index as usize).ok_or(InputError::Field(index))?;
        values[index as usize] = read_value(&mut cur, kind)?;
    }
    Ok(())
}

fn read_value(cur: &mut Cursor<'_>, kind: FieldKind) -> Result<InputValue, CodecError> {
    Ok(match kind {
        FieldKind::Number => InputValue::Number(cur.number()?),
        FieldKind::String => InputValue::String(cur.string()?.to_owned()),
        FieldKind::Boolean => InputValue::Bool(cur.u8()? != 0),
        FieldKind::Fixed { width, signed, float } => {
            let mut raw = [0u8; 8];
            for b in raw.iter_mut().take(width as usize) {
                *b = cur.u8()?;
            }
            let bits = u64::from_le_bytes(raw);
            let v = match (width, signed, float) {
                (4, _, true) => f32::from_bits(bits as u32) as f64,
                (8, _, true) => f64::from_bits(bits),
                (w, true, false) => {
                    let shift = 64 - 8 * w as u32;
                    (((bits << shift) as i64) >> shift) as f64
                }
                _ => bits as f64,
            };
            InputValue::Number(v)
        }
    })
}

/// The slots of an unreliable input frame body (after the code): `(seq, delta)` oldest first.
pub fn unreliable_slots(body: &[u8]) -> Result<Vec<(u64, &[u8])>, InputError> {
    let mut cur = Cursor::new(body);
    let base = cur.number()?;
    let mut slots = Vec::new();
    let mut seq = if base.is_finite() && base >= 0.0 { base as u64 } else { 0 };
    while cur.peek().is_some() {
        let len = cur.number()?;
        let len = if len.is_finite() && len >= 0.0 { len as usize } else { usize::MAX };
        let rest = cur.rest();
        let slot = rest.get(..len).ok_or(InputError::Value(CodecError::Truncated))?;
        cur = Cursor::new(&rest[len..]);
        slots.push((seq, slot));
        seq += 1;
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DXDY: [FieldKind; 2] = [FieldKind::Number, FieldKind::Number];

    fn values(d: &[u8], start: (f64, f64)) -> Vec<InputValue> {
        let mut v = vec![InputValue::Number(start.0), InputValue::Number(start.1)];
        apply_delta(&mut v, &DXDY, d).unwrap();
        v
    }

    #[test]
    fn deltas_set_the_fields_they_name_and_keep_the_others() {
        // The SDK's first send {dx:1, dy:0}, then dx=2 alone, then nothing.
        assert_eq!(
            values(&[0x80, 0x01, 0x81, 0x00], (0.0, 0.0)),
            [InputValue::Number(1.0), InputValue::Number(0.0)]
        );
        assert_eq!(values(&[0x80, 0x02], (1.0, 7.0)), [InputValue::Number(2.0), InputValue::Number(7.0)]);
        assert_eq!(values(&[], (3.0, 7.0)), [InputValue::Number(3.0), InputValue::Number(7.0)]);
        let mut f64_delta = vec![0x80, 0xcb];
        f64_delta.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(values(&f64_delta, (0.0, 0.0))[0], InputValue::Number(1.5));
    }

    #[test]
    fn bad_deltas_are_refused_with_a_reason() {
        let mut v = vec![InputValue::Number(0.0), InputValue::Number(0.0)];
        assert_eq!(apply_delta(&mut v, &DXDY, &[0x85, 0x01]), Err(InputError::Field(5)));
        assert_eq!(apply_delta(&mut v, &DXDY, &[0xff, 0x09]), Err(InputError::Operation(0xff)));
        assert!(matches!(apply_delta(&mut v, &DXDY, &[0x80]), Err(InputError::Value(_))));
    }

    #[test]
    fn fixed_width_strings_and_booleans_decode() {
        let kinds = [
            FieldKind::of("int16").unwrap(),
            FieldKind::of("string").unwrap(),
            FieldKind::of("boolean").unwrap(),
        ];
        let mut v: Vec<InputValue> = kinds.iter().map(|k| InputValue::zero(*k)).collect();
        apply_delta(&mut v, &kinds, &[0x80, 0xfe, 0xff, 0x81, 0xa2, b'h', b'i', 0x82, 0x01]).unwrap();
        assert_eq!(v, [InputValue::Number(-2.0), InputValue::String("hi".into()), InputValue::Bool(true)]);
        assert_eq!(FieldKind::of("map"), None);
    }

    #[test]
    fn options_and_sections_match_the_reference() {
        // pilot: FIXED_TIMESTEP | PATCH_RATE, 20 Hz, 50 ms.
        assert_eq!(options(20, 50, 1), [0x06, 0x14, 0x32]);
        assert_eq!(options(60, 50, 4), [0x0e, 0x3c, 0x32, 0x04]);
        let mut out = Vec::new();
        push_section(&mut out, section::INPUT_OPTIONS, &options(20, 50, 1));
        assert_eq!(out, [0x02, 0x03, 0x06, 0x14, 0x32]);
        assert_eq!(timed_prefix(0x0f, 0x34, 5), [0x8f, 0x34, 0, 0, 0, 5, 0, 0, 0]);
    }

    #[test]
    fn unreliable_frames_list_their_slots() {
        // What the SDK sent with historySize 3: base seq 1, then slots of 4, 0 and 0 bytes.
        let slots = unreliable_slots(&[0x01, 0x04, 0x80, 0x00, 0x81, 0xff, 0x00, 0x00]).unwrap();
        assert_eq!(slots, [(1, &[0x80, 0x00, 0x81, 0xff][..]), (2, &[][..]), (3, &[][..])]);
        assert!(unreliable_slots(&[0x01, 0x09, 0x80]).is_err());
    }
}
