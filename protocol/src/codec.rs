//! The @colyseus/schema primitive codecs used inside frames: `number` and `string`.
//!
//! They look like MessagePack but carry **little-endian** payloads, and a reader must treat
//! `0xA1–0xBF`, `0xD9`, `0xDA` and `0xDB` as a string (an empty string `0xA0` reads as a number).

/// How a schema `number` goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NumberRepr {
    /// An integer within int32 range, with the smallest integer tag.
    Int(i64),
    /// A non-integer that float32 holds to within 1e-4.
    F32(f32),
    /// Anything else.
    F64(f64),
}

impl NumberRepr {
    /// The wire form of `value`: integers use the smallest tag, non-integers float32 when
    /// lossless to 1e-4, else float64. NaN is written as 0 and infinities as ±MAX_SAFE_INTEGER.
    pub fn of(value: f64) -> Self {
        const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
        let value = if value.is_nan() {
            0.0
        } else if value.is_infinite() {
            value.signum() * MAX_SAFE_INTEGER
        } else {
            value
        };
        // Mirrors the JS encoder's `value !== (value | 0)`: only int32-range integers take the
        // integer path, everything else goes as a float.
        if value.fract() != 0.0 || value < i32::MIN as f64 || value > i32::MAX as f64 {
            let as_f32 = value as f32;
            if value.abs() <= f32::MAX as f64 && (as_f32 as f64 - value).abs() < 1e-4 {
                return Self::F32(as_f32);
            }
            return Self::F64(value);
        }
        Self::Int(value as i64)
    }

    /// The value a client decodes.
    pub fn decoded(self) -> f64 {
        match self {
            Self::Int(v) => v as f64,
            Self::F32(v) => v as f64,
            Self::F64(v) => v,
        }
    }
}

/// Appends a schema `number` (see [`NumberRepr::of`]).
pub fn encode_number(out: &mut Vec<u8>, value: f64) {
    match NumberRepr::of(value) {
        NumberRepr::Int(v) => encode_int(out, v),
        NumberRepr::F32(v) => {
            out.push(0xca);
            out.extend_from_slice(&v.to_le_bytes());
        }
        NumberRepr::F64(v) => {
            out.push(0xcb);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends an integer with the schema `number` tags.
pub fn encode_int(out: &mut Vec<u8>, v: i64) {
    match v {
        0..=0x7f => out.push(v as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        -0x20..=-1 => out.push(v as i8 as u8),
        -0x80..=-0x21 => out.extend_from_slice(&[0xd0, v as i8 as u8]),
        -0x8000..=-0x81 => {
            out.push(0xd1);
            out.extend_from_slice(&(v as i16).to_le_bytes());
        }
        -0x8000_0000..=-0x8001 => {
            out.push(0xd2);
            out.extend_from_slice(&(v as i32).to_le_bytes());
        }
        v if v > 0 => {
            out.push(0xcf);
            out.extend_from_slice(&(v as u32).to_le_bytes());
            out.extend_from_slice(&((v as u64 >> 32) as u32).to_le_bytes());
        }
        v => {
            out.push(0xd3);
            out.extend_from_slice(&(v as u32).to_le_bytes());
            out.extend_from_slice(&((v >> 32) as u32).to_le_bytes());
        }
    }
}

/// Appends a schema `string`.
pub fn encode_string(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len < 0x1_0000 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// Whether the byte at the cursor starts a schema string (the receiver's `stringCheck`).
pub fn is_string(first: u8) -> bool {
    (0xa1..=0xbf).contains(&first) || matches!(first, 0xd9..=0xdb)
}

/// A reader over a frame body.
#[derive(Debug)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A schema value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame ended inside a value.
    #[error("frame ended inside a value")]
    Truncated,
    /// A tag that is neither a number nor a string.
    #[error("unexpected tag {0:#04x}")]
    Tag(u8),
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    Utf8,
}

impl<'a> Cursor<'a> {
    /// Starts reading `bytes` at offset 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// The unread rest.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated)?;
        let s = self.bytes.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a schema `number`.
    pub fn number(&mut self) -> Result<f64, CodecError> {
        let tag = self.u8()?;
        Ok(match tag {
            0x00..=0x7f => tag as f64,
            0xe0..=0xff => tag as i8 as f64,
            0xcc => self.u8()? as f64,
            0xcd => u16::from_le_bytes(self.array()?) as f64,
            0xce => u32::from_le_bytes(self.array()?) as f64,
            0xcf => {
                let lo = u32::from_le_bytes(self.array()?) as f64;
                let hi = u32::from_le_bytes(self.array()?) as f64;
                hi * 4_294_967_296.0 + lo
            }
            0xd0 => self.u8()? as i8 as f64,
            0xd1 => i16::from_le_bytes(self.array()?) as f64,
            0xd2 => i32::from_le_bytes(self.array()?) as f64,
            0xd3 => {
                let lo = u32::from_le_bytes(self.array()?) as f64;
                let hi = i32::from_le_bytes(self.array()?) as f64;
                hi * 4_294_967_296.0 + lo
            }
            0xca => f32::from_le_bytes(self.array()?) as f64,
            0xcb => f64::from_le_bytes(self.array()?),
            other => return Err(CodecError::Tag(other)),
        })
    }

    /// Reads a schema `string`.
    pub fn string(&mut self) -> Result<&'a str, CodecError> {
        let tag = self.u8()?;
        let len = match tag {
            0xa0..=0xbf => (tag & 0x1f) as usize,
            0xd9 => self.u8()? as usize,
            0xda => u16::from_le_bytes(self.array()?) as usize,
            0xdb => u32::from_le_bytes(self.array()?) as usize,
            other => return Err(CodecError::Tag(other)),
        };
        std::str::from_utf8(self.take(len)?).map_err(|_| CodecError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(v: f64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_number(&mut out, v);
        out
    }

    #[test]
    fn numbers_match_the_reference_bytes() {
        assert_eq!(number(7.0), [0x07]);
        assert_eq!(number(100_000.0), [0xce, 0xa0, 0x86, 0x01, 0x00]);
        assert_eq!(number(524.0), [0xcd, 0x0c, 0x02]);
        assert_eq!(number(4321.0), [0xcd, 0xe1, 0x10]);
        assert_eq!(number(1.5), [0xca, 0x00, 0x00, 0xc0, 0x3f]);
        assert_eq!(number(-2.25), [0xca, 0x00, 0x00, 0x10, 0xc0]);
        assert_eq!(number(0.1), [0xca, 0xcd, 0xcc, 0xcc, 0x3d]);
        assert_eq!(number(-1.0), [0xff]);
        assert_eq!(number(f64::NAN), [0x00]);
    }

    #[test]
    fn numbers_round_trip() {
        for v in [0.0, 127.0, 128.0, 65535.0, 65536.0, -33.0, -200.0, -40000.0, 1e12, -1e12, 3.25, 1e300] {
            assert_eq!(Cursor::new(&number(v)).number().unwrap(), v, "{v}");
        }
    }

    #[test]
    fn strings_round_trip_and_are_recognised() {
        for s in ["a", "seat reservation expired.", &"x".repeat(40), &"y".repeat(300)] {
            let mut out = Vec::new();
            encode_string(&mut out, s);
            assert!(is_string(out[0]));
            assert_eq!(Cursor::new(&out).string().unwrap(), s);
        }
        assert!(!is_string(0xa0), "the empty string reads as a number");
        assert_eq!(Cursor::new(&[0xa4, b'a']).string(), Err(CodecError::Truncated));
    }
}
