//! Normalises msgpackr payloads into plain MessagePack.
//!
//! The official Colyseus JavaScript SDKs pack client→server messages with msgpackr's `Packr`,
//! which has records enabled: an object is written as a record definition (its keys once) and
//! later objects with the same keys refer back to it by a one-byte id. Nothing else in Odeon
//! understands records, so [`normalize`] rewrites such a payload into standard MessagePack with
//! every record expanded into a map, and `undefined` turned into nil. Plain MessagePack from other
//! clients passes through unchanged.
//!
//! # The record extension
//!
//! - A definition is the fixext1 header `d4 72 <id>` with `<id>` in `0x40..=0x7F`, followed by an
//!   array of keys and then one value per key. The whole sequence is a single value: the object.
//! - Later in the same message, a lone byte equal to a defined `<id>` in value position is a
//!   reference: it is followed by the values only. msgpackr never writes the positive fixints
//!   `0x40..=0x7F` when records are enabled, so the byte is only read as a plain integer when no
//!   record with that id has been defined yet.
//! - A definition replaces any earlier one with the same id. Definitions live for one message.

use std::rc::Rc;

/// Errors from [`normalize`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MsgpackError {
    /// The payload ended in the middle of a value (or was empty).
    #[error("unexpected end of MessagePack data")]
    Truncated,
    /// Bytes after the single top-level value.
    #[error("trailing bytes after MessagePack value")]
    Trailing,
    /// A record reference to an id with no definition in this message.
    ///
    /// [`normalize`] never returns this: a lone `0x40..=0x7F` byte with no definition is the plain
    /// positive fixint it is in standard MessagePack. The variant stays so callers that match on
    /// it keep compiling.
    #[error("msgpackr record {0:#x} referenced before its definition")]
    UnknownRecord(u8),
    /// Expanding records would make the output larger than [`MAX_EXPANSION`] times the input (or
    /// [`MIN_OUTPUT_LIMIT`] bytes, whichever is larger).
    #[error("expanded msgpackr records exceed the output limit of {0} bytes")]
    TooLarge(usize),
    /// Anything else malformed, including nesting deeper than [`MAX_DEPTH`].
    #[error("malformed MessagePack: {0}")]
    Malformed(&'static str),
}

/// The deepest nesting of arrays, maps and records [`normalize`] accepts.
pub const MAX_DEPTH: usize = 64;

/// How many times larger than its input [`normalize`]'s output may grow.
///
/// A reference is one byte plus its values while its expansion repeats every key, so without a
/// bound a small hostile payload (one long key, thousands of references) would expand
/// quadratically. Real payloads stay far below this ratio.
pub const MAX_EXPANSION: usize = 64;

/// The output size [`normalize`] always allows, however small the input.
pub const MIN_OUTPUT_LIMIT: usize = 64 * 1024;

/// Rewrites one MessagePack value that may use msgpackr's record extension (ext 0x72) into
/// plain MessagePack, with records expanded into maps.
///
/// Records become maps with the smallest map header, `undefined` (`d4 00 00`) becomes nil, and
/// every other value is copied byte for byte. The input must hold exactly one value: an empty
/// input is [`MsgpackError::Truncated`] and anything after the value is
/// [`MsgpackError::Trailing`].
pub fn normalize(input: &[u8]) -> Result<Vec<u8>, MsgpackError> {
    normalize_within(input, usize::MAX)
}

/// [`normalize`] with an absolute cap on the output: records may expand a payload at most
/// [`MAX_EXPANSION`] times and never past `max_output` bytes (but always to
/// [`MIN_OUTPUT_LIMIT`]), so a stream of frames each under the message limit cannot make the
/// host hold many times that limit per frame.
pub fn normalize_within(input: &[u8], max_output: usize) -> Result<Vec<u8>, MsgpackError> {
    let mut normalizer = Normalizer::new(input);
    normalizer.out_limit = normalizer.out_limit.min(max_output.max(MIN_OUTPUT_LIMIT));
    normalizer.value(0)?;
    if normalizer.pos != input.len() {
        return Err(MsgpackError::Trailing);
    }
    // Records check the limit as they expand; the values copied after the last check may still
    // have gone past it (by at most one value, which is never more than the input).
    if normalizer.out.len() > normalizer.out_limit {
        return Err(MsgpackError::TooLarge(normalizer.out_limit));
    }
    Ok(normalizer.out)
}

/// The msgpackr extension type of a record definition.
const RECORD_EXT: u8 = 0x72;

/// The extension type msgpackr uses for `undefined`.
const UNDEFINED_EXT: u8 = 0x00;

/// The first record id; ids occupy the positive fixint range `0x40..=0x7F`.
const FIRST_RECORD_ID: u8 = 0x40;

/// How many record ids exist.
const RECORD_IDS: usize = 64;

/// The normalised keys of one record definition, shared so that a record being expanded keeps
/// its keys even if one of its own values redefines the same id.
type Keys = Rc<[Vec<u8>]>;

/// A single pass over the input that writes the normalised value as it reads.
struct Normalizer<'a> {
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    out_limit: usize,
    records: [Option<Keys>; RECORD_IDS],
}

impl<'a> Normalizer<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            pos: 0,
            out: Vec::with_capacity(input.len()),
            out_limit: input.len().saturating_mul(MAX_EXPANSION).max(MIN_OUTPUT_LIMIT),
            records: [const { None }; RECORD_IDS],
        }
    }

    /// Reads one value at nesting `depth` (the number of containers around it) and writes its
    /// normalised form.
    fn value(&mut self, depth: usize) -> Result<(), MsgpackError> {
        let start = self.pos;
        let marker = self.byte()?;
        match marker {
            0x00..=0x3f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => {}
            0x40..=0x7f => {
                if let Some(keys) = self.records[usize::from(marker - FIRST_RECORD_ID)].clone() {
                    return self.record_values(&keys, depth);
                }
            }
            0x80..=0x8f => {
                self.copy_from(start);
                return self.map(usize::from(marker & 0x0f), depth);
            }
            0x90..=0x9f => {
                self.copy_from(start);
                return self.array(usize::from(marker & 0x0f), depth);
            }
            0xa0..=0xbf => self.skip(usize::from(marker & 0x1f))?,
            0xc1 => return Err(MsgpackError::Malformed("reserved marker 0xc1")),
            // bin8/16/32 and str8/16/32: a length, then that many bytes.
            0xc4 | 0xd9 => self.skip_sized(1)?,
            0xc5 | 0xda => self.skip_sized(2)?,
            0xc6 | 0xdb => self.skip_sized(4)?,
            // ext8/16/32: a length, the type, then that many bytes.
            0xc7..=0xc9 => {
                let len = self.length(1 << (marker - 0xc7))?;
                self.plain_ext_type()?;
                self.skip(len)?;
            }
            0xcc | 0xd0 => self.skip(1)?,
            0xcd | 0xd1 => self.skip(2)?,
            0xca | 0xce | 0xd2 => self.skip(4)?,
            0xcb | 0xcf | 0xd3 => self.skip(8)?,
            0xd4 => match self.byte()? {
                RECORD_EXT => return self.record_definition(depth),
                UNDEFINED_EXT => {
                    // msgpackr follows the type with a filler byte that carries nothing.
                    self.skip(1)?;
                    self.out.push(0xc0);
                    return Ok(());
                }
                _ => self.skip(1)?,
            },
            // fixext2/4/8/16: the type, then 2, 4, 8 or 16 bytes.
            0xd5..=0xd8 => {
                self.plain_ext_type()?;
                self.skip(1 << (marker - 0xd4))?;
            }
            0xdc => {
                let len = self.length(2)?;
                self.copy_from(start);
                return self.array(len, depth);
            }
            0xdd => {
                let len = self.length(4)?;
                self.copy_from(start);
                return self.array(len, depth);
            }
            0xde => {
                let len = self.length(2)?;
                self.copy_from(start);
                return self.map(len, depth);
            }
            0xdf => {
                let len = self.length(4)?;
                self.copy_from(start);
                return self.map(len, depth);
            }
        }
        self.copy_from(start);
        Ok(())
    }

    /// Reads the elements of an array whose header has already been written.
    fn array(&mut self, len: usize, depth: usize) -> Result<(), MsgpackError> {
        let inner = Self::enter(depth)?;
        // Every element takes at least one input byte, so a hostile length ends in `Truncated`
        // after at most `input.len()` iterations.
        for _ in 0..len {
            self.value(inner)?;
        }
        Ok(())
    }

    /// Reads the entries of a map whose header has already been written.
    fn map(&mut self, len: usize, depth: usize) -> Result<(), MsgpackError> {
        let inner = Self::enter(depth)?;
        for _ in 0..len {
            self.value(inner)?;
            self.value(inner)?;
        }
        Ok(())
    }

    /// Reads a record definition after its `d4 72` header: the id, the keys, then the values.
    fn record_definition(&mut self, depth: usize) -> Result<(), MsgpackError> {
        let inner = Self::enter(depth)?;
        let id = self.byte()?;
        if !(FIRST_RECORD_ID..=0x7f).contains(&id) {
            return Err(MsgpackError::Malformed("record id outside 0x40..=0x7f"));
        }
        let count = match self.byte()? {
            marker @ 0x90..=0x9f => usize::from(marker & 0x0f),
            0xdc => self.length(2)?,
            0xdd => self.length(4)?,
            _ => return Err(MsgpackError::Malformed("record keys are not an array")),
        };
        // Keys are normalised like any value and then moved out of the output, since they are
        // written again between the values.
        let mut keys = Vec::new();
        for _ in 0..count {
            let key_start = self.out.len();
            self.value(inner)?;
            keys.push(self.out.split_off(key_start));
        }
        let keys: Keys = keys.into();
        // msgpackr registers the definition before reading the values, so a value may already
        // refer to it (an object nested in an object with the same keys).
        self.records[usize::from(id - FIRST_RECORD_ID)] = Some(Rc::clone(&keys));
        self.record_values(&keys, depth)
    }

    /// Writes a record as a map, reading one value per key.
    fn record_values(&mut self, keys: &[Vec<u8>], depth: usize) -> Result<(), MsgpackError> {
        let inner = Self::enter(depth)?;
        write_map_header(&mut self.out, keys.len());
        for key in keys {
            self.out.extend_from_slice(key);
            if self.out.len() > self.out_limit {
                return Err(MsgpackError::TooLarge(self.out_limit));
            }
            self.value(inner)?;
        }
        Ok(())
    }

    /// Returns the depth of the values inside a container opened at `depth`.
    fn enter(depth: usize) -> Result<usize, MsgpackError> {
        if depth >= MAX_DEPTH {
            return Err(MsgpackError::Malformed("nesting too deep"));
        }
        Ok(depth + 1)
    }

    /// Reads the type byte of an extension that must not be a record definition, which msgpackr
    /// only writes as fixext1.
    fn plain_ext_type(&mut self) -> Result<(), MsgpackError> {
        if self.byte()? == RECORD_EXT {
            return Err(MsgpackError::Malformed("record extension outside a fixext1 header"));
        }
        Ok(())
    }

    /// Copies the input consumed since `start` to the output unchanged.
    fn copy_from(&mut self, start: usize) {
        self.out.extend_from_slice(&self.input[start..self.pos]);
    }

    fn byte(&mut self) -> Result<u8, MsgpackError> {
        let byte = *self.input.get(self.pos).ok_or(MsgpackError::Truncated)?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self.pos.checked_add(len).ok_or(MsgpackError::Truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(MsgpackError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, len: usize) -> Result<(), MsgpackError> {
        self.take(len).map(drop)
    }

    /// Skips a payload preceded by a big-endian length of `width` bytes.
    fn skip_sized(&mut self, width: usize) -> Result<(), MsgpackError> {
        let len = self.length(width)?;
        self.skip(len)
    }

    /// Reads a big-endian length of `width` (1, 2 or 4) bytes.
    fn length(&mut self, width: usize) -> Result<usize, MsgpackError> {
        let len = self.take(width)?.iter().fold(0u64, |len, &byte| (len << 8) | u64::from(byte));
        // A length that does not fit in memory cannot be satisfied by the input either.
        usize::try_from(len).map_err(|_| MsgpackError::Truncated)
    }
}

/// Writes the smallest map header for `len` entries.
fn write_map_header(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        // The range check makes the narrowing exact.
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xde);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        // Record key counts come from an array header, so they always fit in a u32.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        out.push(0xdf);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
