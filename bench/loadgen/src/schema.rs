//! A small @colyseus/schema decoder for the arena state, `{players: map<Player{x, y}>}`.
//!
//! It follows ROOM_STATE and ROOM_STATE_PATCH bodies far enough to know which refId is the
//! client's own Player (the map ADD whose key is its session id) and that Player's `x`/`y`.
//! The shape is fixed, so no reflection is needed: the root's field 0 is the players map, a
//! Player's fields 0 and 1 are `x` and `y` (declaration order, in both servers' rooms).
//! Anything else (another field, an unknown op, a switch to an unknown refId) is an error for
//! the rest of that frame: the decoder stops there, keeps what it already applied, and the
//! caller counts it. Nothing here panics or allocates per frame.

use odeon_protocol::codec::{CodecError, Cursor};

const SWITCH_TO_STRUCTURE: u8 = 0xff;
const TYPE_ID: u8 = 0xd5;
const ADD: u8 = 0x80;
const REPLACE: u8 = 0x00;
const DELETE: u8 = 0x40;
const DELETE_AND_ADD: u8 = 0xc0;
const CLEAR: u8 = 0x0a;

/// RefIds beyond this are treated as corrupt. Both encoders assign them per room from 0
/// upwards (a benchmark room sees a few hundred); the cap bounds the per-client `kinds` table
/// (one byte per refId) even against a broken stream.
const MAX_REF_ID: u32 = 1 << 16;

/// What a refId stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unknown,
    Root,
    Players,
    Player,
}

/// Why a frame could not be followed to its end.
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// A number or string could not be read.
    Codec(CodecError),
    /// A refId that was never introduced (or is not an integer).
    UnknownRef(f64),
    /// A field index the arena types do not have.
    UnknownField { kind: &'static str, index: u8 },
    /// An operation byte the decoder does not support here.
    UnsupportedOp { kind: &'static str, op: u8 },
}

impl From<CodecError> for DecodeError {
    fn from(e: CodecError) -> Self {
        DecodeError::Codec(e)
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Codec(e) => write!(f, "{e}"),
            DecodeError::UnknownRef(r) => write!(f, "unknown refId {r}"),
            DecodeError::UnknownField { kind, index } => write!(f, "{kind} has no field {index}"),
            DecodeError::UnsupportedOp { kind, op } => write!(f, "unsupported op {op:#04x} on {kind}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// One client's view of the arena state: its own Player and the refIds it has seen.
#[derive(Debug)]
pub struct ArenaTracker {
    session_id: Box<str>,
    /// Kind of each refId seen so far, indexed by refId.
    kinds: Vec<Kind>,
    /// The client's own Player refId and its index in the players map.
    own_ref: Option<u32>,
    own_index: Option<u32>,
    /// The client's own position, as last decoded.
    pub x: f64,
    /// See [`Self::x`].
    pub y: f64,
}

/// What one frame changed for the client.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Applied {
    /// Whether the frame set the own Player's `x` (even to the same value).
    pub own_x_set: bool,
}

impl ArenaTracker {
    /// A tracker for the client with `session_id`, before any state.
    pub fn new(session_id: &str) -> Self {
        let mut kinds = Vec::with_capacity(64);
        kinds.push(Kind::Root);
        ArenaTracker { session_id: session_id.into(), kinds, own_ref: None, own_index: None, x: 0.0, y: 0.0 }
    }

    /// The refId of the client's own Player, once a state or patch has introduced it.
    pub fn own_ref(&self) -> Option<u32> {
        self.own_ref
    }

    fn kind(&self, ref_id: u32) -> Kind {
        self.kinds.get(ref_id as usize).copied().unwrap_or(Kind::Unknown)
    }

    fn set_kind(&mut self, ref_id: u32, kind: Kind) {
        let i = ref_id as usize;
        if self.kinds.len() <= i {
            self.kinds.resize(i + 1, Kind::Unknown);
        }
        self.kinds[i] = kind;
    }

    /// Applies a ROOM_STATE or ROOM_STATE_PATCH body (the bytes after the frame code).
    ///
    /// On an error, what came before it in the frame stays applied; `applied` then tells what it
    /// changed.
    pub fn apply(&mut self, body: &[u8], applied: &mut Applied) -> Result<(), DecodeError> {
        *applied = Applied::default();
        let mut cur = Cursor::new(body);
        // The stream starts on the root; the encoder omits the switch for it.
        let mut current = 0u32;
        while let Some(byte) = cur.peek() {
            if byte == SWITCH_TO_STRUCTURE {
                cur.u8()?;
                let r = read_ref(&mut cur)?;
                if self.kind(r) == Kind::Unknown {
                    return Err(DecodeError::UnknownRef(r as f64));
                }
                current = r;
                continue;
            }
            match self.kind(current) {
                Kind::Root => self.root_op(&mut cur)?,
                Kind::Players => self.map_op(&mut cur)?,
                Kind::Player => {
                    self.player_op(&mut cur, current == self.own_ref.unwrap_or(u32::MAX), applied)?
                }
                Kind::Unknown => return Err(DecodeError::UnknownRef(current as f64)),
            }
        }
        Ok(())
    }

    /// `ArenaState`: field 0 is the players map.
    fn root_op(&mut self, cur: &mut Cursor<'_>) -> Result<(), DecodeError> {
        let byte = cur.u8()?;
        let (op, index) = split_field_byte(byte);
        if index != 0 {
            return Err(DecodeError::UnknownField { kind: "ArenaState", index });
        }
        match op {
            DELETE => {}
            _ => {
                let r = read_ref(cur)?;
                self.set_kind(r, Kind::Players);
            }
        }
        Ok(())
    }

    /// The players map: `op, num index, [str key if ADD bit], [num refId unless DELETE]`.
    fn map_op(&mut self, cur: &mut Cursor<'_>) -> Result<(), DecodeError> {
        let op = cur.u8()?;
        if op == CLEAR {
            self.own_ref = None;
            self.own_index = None;
            return Ok(());
        }
        if !matches!(op, ADD | REPLACE | DELETE | DELETE_AND_ADD) {
            return Err(DecodeError::UnsupportedOp { kind: "map", op });
        }
        let index = read_ref(cur)?;
        let is_own_key = if op & ADD == ADD {
            let key = cur.string()?;
            key == &*self.session_id
        } else {
            self.own_index == Some(index)
        };
        if op == DELETE {
            if self.own_index == Some(index) {
                self.own_ref = None;
                self.own_index = None;
            }
            return Ok(());
        }
        let r = read_ref(cur)?;
        if cur.peek() == Some(TYPE_ID) {
            cur.u8()?;
            cur.number()?;
        }
        self.set_kind(r, Kind::Player);
        if is_own_key {
            self.own_ref = Some(r);
            self.own_index = Some(index);
        }
        Ok(())
    }

    /// `Player`: fields 0 (`x`) and 1 (`y`), numbers; DELETE carries no value.
    fn player_op(
        &mut self,
        cur: &mut Cursor<'_>,
        own: bool,
        applied: &mut Applied,
    ) -> Result<(), DecodeError> {
        let byte = cur.u8()?;
        let (op, index) = split_field_byte(byte);
        if index > 1 {
            return Err(DecodeError::UnknownField { kind: "Player", index });
        }
        let value = if op == DELETE { 0.0 } else { cur.number()? };
        if own {
            if index == 0 {
                self.x = value;
                applied.own_x_set = true;
            } else {
                self.y = value;
            }
        }
        Ok(())
    }
}

/// A schema-instance op byte: `(op, field index)`, as the JS decoder computes it.
fn split_field_byte(byte: u8) -> (u8, u8) {
    (byte & 0xc0, byte & 0x3f)
}

fn read_ref(cur: &mut Cursor<'_>) -> Result<u32, DecodeError> {
    let v = cur.number()?;
    if v >= 0.0 && v < MAX_REF_ID as f64 && v.fract() == 0.0 {
        Ok(v as u32)
    } else {
        Err(DecodeError::UnknownRef(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use odeon_schema::{MapSchema, Schema, StateEncoder};

    #[derive(Schema, Default)]
    struct Player {
        x: f64,
        y: f64,
    }

    #[derive(Schema, Default)]
    struct ArenaState {
        players: MapSchema<Player>,
    }

    fn apply(t: &mut ArenaTracker, body: &[u8]) -> Applied {
        let mut a = Applied::default();
        t.apply(body, &mut a).unwrap();
        a
    }

    fn set(enc: &mut StateEncoder<ArenaState>, sid: &str, x: f64, y: f64) {
        let p = enc.state().players.get(sid).unwrap().clone();
        let mut p = p.borrow_mut();
        p.set_x(x);
        p.set_y(y);
    }

    #[test]
    fn reads_back_what_the_encoder_wrote() {
        let mut enc = StateEncoder::new(ArenaState::default());
        for i in 0..50 {
            enc.state_mut().players_mut().insert(format!("sid{i:02}"), Player::default());
        }
        set(&mut enc, "sid07", 3.0, 4.0);
        let full = enc.full_state();
        let mut me = ArenaTracker::new("sid07");
        let mut other = ArenaTracker::new("nobody");
        apply(&mut other, &full);
        assert!(apply(&mut me, &full).own_x_set);
        assert!(me.own_ref().is_some());
        assert_eq!(other.own_ref(), None);
        assert_eq!((me.x, me.y), (3.0, 4.0));

        // Everyone moves; the patch carries every Player.
        for i in 0..50 {
            set(&mut enc, &format!("sid{i:02}"), 700_000.0 + i as f64, -1.5 * i as f64);
        }
        let patch = enc.patch().unwrap();
        assert!(apply(&mut me, &patch).own_x_set);
        assert_eq!((me.x, me.y), (700_007.0, -10.5));
        apply(&mut other, &patch);

        // Someone else moves: the own x is untouched.
        set(&mut enc, "sid03", 1.0, 1.0);
        let patch = enc.patch().unwrap();
        assert!(!apply(&mut me, &patch).own_x_set);
        assert_eq!(me.x, 700_007.0);
    }

    #[test]
    fn follows_joins_leaves_and_rejoins() {
        let mut enc = StateEncoder::new(ArenaState::default());
        enc.state_mut().players_mut().insert("a", Player::default());
        let mut me = ArenaTracker::new("b");
        apply(&mut me, &enc.full_state());
        enc.state_mut().players_mut().insert("b", Player::default());
        apply(&mut me, &enc.patch().unwrap());
        let first = me.own_ref().unwrap();
        enc.state_mut().players_mut().remove("b");
        apply(&mut me, &enc.patch().unwrap());
        assert_eq!(me.own_ref(), None);
        enc.state_mut().players_mut().insert("b", Player { x: 9.0, y: 0.0 });
        assert!(apply(&mut me, &enc.patch().unwrap()).own_x_set);
        assert!(me.own_ref().unwrap() > first, "a re-added key gets a new refId");
        assert_eq!(me.x, 9.0);
    }

    #[test]
    fn reads_the_colyseus_transcript() {
        // Appendix A.3/A.4: full state with player "UyyWFYn_9", then a move to (7, 9), then a
        // patch that repeats the ADDs it already got (tolerated).
        let sid = b"UyyWFYn_9";
        let mut full = vec![0x80, 0x01, 0xff, 0x01, 0x80, 0x00, 0xa9];
        full.extend_from_slice(sid);
        full.extend_from_slice(&[0x02, 0xff, 0x02, 0x80, 0x00, 0x81, 0x00]);
        let mut me = ArenaTracker::new("UyyWFYn_9");
        apply(&mut me, &full);
        assert_eq!(me.own_ref(), Some(2));
        apply(&mut me, &[0xff, 0x02, 0x80, 0x07, 0x81, 0x09]);
        assert_eq!((me.x, me.y), (7.0, 9.0));
        let mut again = vec![0x80, 0x01, 0xff, 0x01, 0x80, 0x00, 0xa9];
        again.extend_from_slice(sid);
        again.extend_from_slice(&[0x02, 0xff, 0x02, 0x80, 0xca, 0x00, 0x00, 0xc0, 0x3f, 0x81, 0x09]);
        apply(&mut me, &again);
        assert_eq!(me.x, 1.5);
        // A leave of someone else, then a map clear.
        apply(&mut me, &[0xff, 0x01, 0x40, 0x01]);
        assert_eq!(me.own_ref(), Some(2));
        apply(&mut me, &[0xff, 0x01, 0x0a]);
        assert_eq!(me.own_ref(), None);
    }

    #[test]
    fn bad_streams_are_errors_not_panics() {
        let mut me = ArenaTracker::new("s");
        let mut a = Applied::default();
        assert_eq!(me.apply(&[0xff, 0x09], &mut a), Err(DecodeError::UnknownRef(9.0)));
        assert!(matches!(me.apply(&[0x83, 0x01], &mut a), Err(DecodeError::UnknownField { .. })));
        assert!(matches!(me.apply(&[0x80], &mut a), Err(DecodeError::Codec(CodecError::Truncated))));
        apply(&mut me, &[0x80, 0x01]);
        assert!(matches!(
            me.apply(&[0xff, 0x01, 0x21, 0x00], &mut a),
            Err(DecodeError::UnsupportedOp { .. })
        ));
        assert!(matches!(me.apply(&[0xff, 0x01, 0x80, 0x00, 0xa1], &mut a), Err(DecodeError::Codec(_))));
        assert!(matches!(
            me.apply(&[0x80, 0xcb, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf], &mut a),
            Err(DecodeError::UnknownRef(_))
        ));
        // Every prefix of a real state decodes or fails cleanly.
        let mut enc = StateEncoder::new(ArenaState::default());
        enc.state_mut().players_mut().insert("s", Player { x: 1.25, y: 2.0 });
        let full = enc.full_state();
        for n in 0..full.len() {
            let _ = ArenaTracker::new("s").apply(&full[..n], &mut a);
        }
        assert!(me.apply(&[], &mut a).is_ok());
    }
}
