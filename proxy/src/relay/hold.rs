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

/// The client-to-host direction.
#[derive(Default)]
pub struct Up {
    frames: Frames,
    mode: Mode,
    /// Client bytes read since the hold's cut, from a frame boundary on.
    pub held: Vec<u8>,
    moved: bool,
}

#[derive(Default)]
enum Mode {
    /// Relaying.
    #[default]
    Relay,
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
        !matches!(self.mode, Mode::Relay)
    }

    /// Whether the client's bytes are held from a frame boundary on.
    pub fn is_held(&self) -> bool {
        matches!(self.mode, Mode::Held)
    }

    /// Whether the room moved.
    pub fn is_moved(&self) -> bool {
        self.moved
    }

    /// Applies a hold or a resume; whether a hold started (or started again).
    pub fn control(&mut self, half: &mut Half, control: Control) -> bool {
        match control {
            Control::Hold { nonce } => {
                let payload = held_payload(&nonce);
                if payload.len() > MAX_PING {
                    tracing::warn!("a hold's nonce is too long to answer; ignored");
                    return false;
                }
                match self.mode {
                    // Every client frame read so far goes on before the Ping, none after it.
                    Mode::Held => half.pending.extend_from_slice(&masked_ping(&payload)),
                    _ if self.frames.at_boundary() => {
                        half.pending.extend_from_slice(&masked_ping(&payload));
                        self.mode = Mode::Held;
                    }
                    // A client frame is partly through: the cut comes at its end.
                    _ => self.mode = Mode::Cut { ping: Some(payload) },
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
        self.mode = Mode::Relay;
        let held = std::mem::take(&mut self.held);
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
        self.moved = true;
        let dropped = half.pending.len() - half.written;
        half.pending = Vec::new();
        half.written = 0;
        let cut = match self.mode {
            Mode::Held => true,
            _ if self.frames.at_boundary() => {
                self.mode = Mode::Held;
                true
            }
            _ => {
                self.mode = Mode::Cut { ping: None };
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

    /// Holds `data` (from a frame boundary on).
    fn hold(&mut self, data: &[u8]) {
        self.frames.advance(data);
        self.held.extend_from_slice(data);
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
        match &mut self.mode {
            Mode::Relay => {
                self.frames.advance(data);
                half.forward(cx, data, dst)
            }
            Mode::Cut { ping } => {
                let cut = self.frames.until_boundary(data);
                let end = cut.unwrap_or(data.len());
                if !self.moved {
                    half.forward(cx, &data[..end], dst)?;
                }
                if let Some(at) = cut {
                    if let Some(payload) = ping.take() {
                        half.pending.extend_from_slice(&masked_ping(&payload));
                    }
                    self.mode = Mode::Held;
                    self.hold(&data[at..]);
                }
                Ok(())
            }
            Mode::Held => {
                self.hold(data);
                Ok(())
            }
        }
    }

    fn may_read(&self) -> bool {
        !matches!(self.mode, Mode::Held) || self.held.len() < HELD_CAP
    }

    fn may_close(&self) -> bool {
        matches!(self.mode, Mode::Relay)
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
    /// Where the room moved (process, session, token) and when the marker was read; nothing
    /// more is read from the host.
    pub moved: Option<(String, String, String, Instant)>,
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
                            self.moved = Some((process_id, session_id, token, Instant::now()));
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
