//! The relay's side of a handover (`odeon_protocol::handover`): the host's control frames taken
//! out of its stream, and the client's frames held from a frame boundary on.

use std::io;
use std::task::Context;
use std::time::{Duration, Instant};

use odeon_protocol::handover::{Control, held_payload};
use tokio::io::AsyncWrite;

use super::{Filter, Half};
use crate::frames::{Frames, HostFrames, Piece, masked_ping};

/// A hold that neither Moved nor Resume ends within this long is resumed (shorter in tests,
/// which wait for it).
pub const HOLD_TIMEOUT: Duration =
    if cfg!(test) { Duration::from_millis(1500) } else { Duration::from_secs(10) };
/// Most client bytes held; past it the client is not read (its TCP window fills).
pub const HELD_CAP: usize = 1 << 20;
/// The longest Ping payload.
const MAX_PING: usize = 125;

/// The client-to-host direction. What a hold needs is allocated only while one is under way:
/// an idle relay costs its frame tracker.
#[derive(Default)]
pub struct Up {
    frames: Frames,
    hold: Option<Box<Hold>>,
}

/// A hold under way.
struct Hold {
    mode: Mode,
    /// Client bytes read since the hold's cut, from a frame boundary on.
    held: Vec<u8>,
    /// Whether the room moved (the hold then never ends).
    moved: bool,
}

enum Mode {
    /// Relaying up to the next frame boundary, then holding. The Ping answering the hold goes
    /// at the cut (none once the room moved, and then what is read up to the cut is dropped:
    /// the old host no longer takes it).
    Cut { ping: Option<Vec<u8>> },
    /// Holding.
    Held,
}

impl Up {
    /// Whether a hold is asked for (cut or not).
    pub fn is_holding(&self) -> bool {
        self.hold.is_some()
    }

    /// Whether the client's bytes are held from a frame boundary on.
    pub fn is_held(&self) -> bool {
        self.hold.as_ref().is_some_and(|h| matches!(h.mode, Mode::Held))
    }

    /// Whether the room moved.
    pub fn is_moved(&self) -> bool {
        self.hold.as_ref().is_some_and(|h| h.moved)
    }

    /// The client bytes held, from a frame boundary on.
    pub fn take_held(&mut self) -> Vec<u8> {
        self.hold.as_mut().map(|h| std::mem::take(&mut h.held)).unwrap_or_default()
    }

    /// Applies a hold or a resume; whether a hold started (or started again).
    pub fn control(&mut self, half: &mut Half, control: Control) -> bool {
        match control {
            Control::Hold { nonce, .. } => {
                let payload = held_payload(&nonce);
                if payload.len() > MAX_PING {
                    tracing::warn!("a hold's nonce is too long to answer; ignored");
                    return false;
                }
                let at_boundary = self.frames.at_boundary();
                let hold = self.hold.get_or_insert_with(|| {
                    Box::new(Hold { mode: Mode::Cut { ping: None }, held: Vec::new(), moved: false })
                });
                match hold.mode {
                    // Every client frame read so far goes on before the Ping, none after it.
                    Mode::Held => half.pending.extend_from_slice(&masked_ping(&payload)),
                    _ if at_boundary => {
                        half.pending.extend_from_slice(&masked_ping(&payload));
                        hold.mode = Mode::Held;
                    }
                    // A client frame is partly through: the cut comes at its end.
                    _ => hold.mode = Mode::Cut { ping: Some(payload) },
                }
                true
            }
            Control::Resume => {
                self.resume(half);
                false
            }
            // A move ends the host's stream (`Down::moved`); it is not applied here.
            Control::Moved { .. } => false,
        }
    }

    /// Ends a hold: what was held goes to the host, after what is pending, and relaying goes on.
    pub fn resume(&mut self, half: &mut Half) {
        let Some(hold) = self.hold.take() else { return };
        let held = hold.held;
        if half.pending.is_empty() {
            half.pending = held;
            half.written = 0;
        } else {
            half.pending.extend_from_slice(&held);
        }
    }

    /// The room moved: nothing more goes to the old host, and the client's bytes are held from
    /// the next frame boundary on (at once after a hold's cut, which is what a host does).
    pub fn moved(&mut self, half: &mut Half) {
        let dropped = half.pending.len() - half.written;
        half.pending = Vec::new();
        half.written = 0;
        let at_boundary = self.frames.at_boundary();
        let hold = self.hold.get_or_insert_with(|| {
            Box::new(Hold { mode: Mode::Cut { ping: None }, held: Vec::new(), moved: false })
        });
        hold.moved = true;
        let cut = match hold.mode {
            Mode::Held => true,
            _ if at_boundary => {
                hold.mode = Mode::Held;
                true
            }
            _ => {
                hold.mode = Mode::Cut { ping: None };
                false
            }
        };
        if dropped > 0 || !cut {
            tracing::warn!(
                dropped,
                "a room moved before the client's frames were held: what the old host did not get of them is lost"
            );
        }
    }
}

impl Filter for Up {
    #[inline]
    fn take<W: AsyncWrite + Unpin>(
        &mut self,
        half: &mut Half,
        cx: &mut Context<'_>,
        data: &[u8],
        dst: &mut W,
    ) -> io::Result<()> {
        let Some(hold) = &mut self.hold else {
            self.frames.advance(data);
            return half.forward(cx, data, dst);
        };
        match &mut hold.mode {
            Mode::Cut { ping } => {
                let cut = self.frames.until_boundary(data);
                let end = cut.unwrap_or(data.len());
                if !hold.moved {
                    half.forward(cx, &data[..end], dst)?;
                }
                if let Some(at) = cut {
                    if let Some(payload) = ping.take() {
                        half.pending.extend_from_slice(&masked_ping(&payload));
                    }
                    hold.mode = Mode::Held;
                    self.frames.advance(&data[at..]);
                    hold.held.extend_from_slice(&data[at..]);
                }
                Ok(())
            }
            Mode::Held => {
                self.frames.advance(data);
                hold.held.extend_from_slice(data);
                Ok(())
            }
        }
    }

    fn may_read(&self) -> bool {
        self.hold.as_ref().is_none_or(|h| !matches!(h.mode, Mode::Held) || h.held.len() < HELD_CAP)
    }

    fn may_close(&self) -> bool {
        self.hold.is_none()
    }

    fn interrupted(&self) -> bool {
        false
    }
}

/// The host-to-client direction.
#[derive(Default)]
pub struct Down {
    frames: HostFrames,
    /// Holds and resumes read, for the relay to apply.
    pub controls: Vec<Control>,
    /// Where the room moved; nothing more is read from the host.
    pub moved: Option<Box<Marker>>,
}

/// A host's `moved` control: where the room went, and when the proxy read it.
pub struct Marker {
    pub process_id: String,
    pub session_id: String,
    pub token: String,
    pub at: Instant,
}

impl Filter for Down {
    #[inline]
    fn take<W: AsyncWrite + Unpin>(
        &mut self,
        half: &mut Half,
        cx: &mut Context<'_>,
        data: &[u8],
        dst: &mut W,
    ) -> io::Result<()> {
        let mut off = 0;
        while off < data.len() {
            match self.frames.next(&data[off..]) {
                Piece::Forward(n) => {
                    half.forward(cx, &data[off..off + n], dst)?;
                    off += n;
                }
                Piece::Control(n, control) => {
                    off += n;
                    match control {
                        Some(Control::Moved { process_id, session_id, token }) => {
                            // The host's last word: what follows it (nothing, normally) is not read.
                            self.moved =
                                Some(Box::new(Marker { process_id, session_id, token, at: Instant::now() }));
                            return Ok(());
                        }
                        Some(control) => self.controls.push(control),
                        None => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn may_read(&self) -> bool {
        self.moved.is_none()
    }

    fn may_close(&self) -> bool {
        true
    }

    fn interrupted(&self) -> bool {
        !self.controls.is_empty() || self.moved.is_some()
    }
}
