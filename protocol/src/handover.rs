//! Handing a proxied client's socket from one host to another (a drain), between `odeon-proxy`
//! and the hosts. The client sees none of it: no close, no JOIN_ROOM again, no lost frame.
//!
//! 1. The proxy asks for handover on every room upgrade it forwards: [`HANDOVER_HEADER`] next
//!    to its proven [`crate::registry::PROXY_HEADER`].
//! 2. Before a room of such a connection freezes to move, its host sends the proxy a control
//!    frame ([`CONTROL_OPCODE`], a reserved opcode no client ever sees) saying
//!    [`Control::Hold`] with a nonce, and where the room is going when the host knows it
//!    ([`Destination`]). The proxy stops forwarding the client's bytes at the next client frame
//!    boundary, holds them, and sends the host a masked Ping whose payload is [`held_payload`]:
//!    every client frame before it has reached the host, none after it will. With a
//!    destination, the proxy opens the room's WebSocket there at once (step 3's request): the
//!    new host parks it until the room arrives and attaches it then, so the connection is
//!    ready by the time the room has moved instead of being opened after.
//! 3. After the room has moved, the old host sends [`Control::Moved`] (the new process, the
//!    session and its reconnection token) after the last frame it had for the client, and
//!    closes its side. The proxy opens the room's WebSocket on the new process with
//!    [`RESUME_HEADER`] (accepted only from a proven proxy): the new host attaches the socket
//!    to the seat it took over, without JOIN_ROOM or full state, and first sends what the room
//!    sent the client meanwhile. The proxy then writes the held client bytes and splices the
//!    two streams.
//! 4. A move that did not happen ends the hold with [`Control::Resume`]: the proxy writes the
//!    held bytes to the same host and carries on.

/// The request header in which `odeon-proxy` says it can follow a room to another host.
pub const HANDOVER_HEADER: &str = "x-odeon-handover";

/// The request header of the proxy's WebSocket to a room's new host: attach this socket to the
/// session's seat as it was (no JOIN_ROOM, no full state).
pub const RESUME_HEADER: &str = "x-odeon-resume";

/// The WebSocket opcode of host-to-proxy control frames: 0xB, a reserved control opcode, so
/// nothing a client could receive. Final, unmasked, at most 125 bytes of UTF-8 payload.
pub const CONTROL_OPCODE: u8 = 0xB;

/// The first byte of a control frame (FIN and [`CONTROL_OPCODE`]).
pub const CONTROL_FIRST_BYTE: u8 = 0x80 | CONTROL_OPCODE;

/// The prefix of the proxy's Ping payload that ends a hold's client stream.
const HELD_PREFIX: &str = "odeon-held ";

/// A host-to-proxy control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop forwarding the client's frames at the next boundary; answer with [`held_payload`].
    Hold {
        /// Echoed in the Ping that answers it.
        nonce: String,
        /// Where the room is going, if the host knows: the proxy may open the client's resume
        /// there during the hold.
        to: Option<Destination>,
    },
    /// The room runs on `process_id` now: resume the session there.
    Moved {
        /// The process that runs the room now.
        process_id: String,
        /// The client's session.
        session_id: String,
        /// The session's reconnection token, which proves the seat.
        token: String,
    },
    /// The room did not move: forward the held frames to this host and carry on.
    Resume,
}

impl Control {
    /// The control frame's payload.
    pub fn payload(&self) -> String {
        match self {
            Control::Hold { nonce, to: None } => format!("hold {nonce}"),
            Control::Hold { nonce, to: Some(Destination { process_id, session_id, token }) } => {
                format!("hold {nonce} {process_id} {session_id} {token}")
            }
            Control::Moved { process_id, session_id, token } => {
                format!("moved {process_id} {session_id} {token}")
            }
            Control::Resume => "resume".to_string(),
        }
    }

    /// The whole frame: header and payload. `None` when the payload exceeds 125 bytes (ids that
    /// long are not ones Odeon makes).
    pub fn frame(&self) -> Option<Vec<u8>> {
        let payload = self.payload();
        if payload.len() > 125 {
            return None;
        }
        let mut out = Vec::with_capacity(2 + payload.len());
        out.push(CONTROL_FIRST_BYTE);
        out.push(payload.len() as u8);
        out.extend_from_slice(payload.as_bytes());
        Some(out)
    }

    /// A control message from a control frame's payload; `None` for anything else.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut words = text.split(' ');
        let control = match words.next()? {
            "hold" => {
                let nonce = words.next()?.to_string();
                let to = match words.next() {
                    None => None,
                    Some(process_id) => Some(Destination {
                        process_id: process_id.to_string(),
                        session_id: words.next()?.to_string(),
                        token: words.next()?.to_string(),
                    }),
                };
                Control::Hold { nonce, to }
            }
            "moved" => Control::Moved {
                process_id: words.next()?.to_string(),
                session_id: words.next()?.to_string(),
                token: words.next()?.to_string(),
            },
            "resume" => Control::Resume,
            _ => return None,
        };
        words.next().is_none().then_some(control)
    }
}

/// Where a held client's room is going: the process, and the session and reconnection token
/// the client resumes there with (the same as [`Control::Moved`] will say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The process the room is moving to.
    pub process_id: String,
    /// The client's session.
    pub session_id: String,
    /// The session's reconnection token.
    pub token: String,
}

impl Destination {
    /// Whether a `moved` marker names this destination.
    pub fn is(&self, process_id: &str, session_id: &str, token: &str) -> bool {
        self.process_id == process_id && self.session_id == session_id && self.token == token
    }
}

/// The Ping payload with which the proxy answers `hold <nonce>`.
pub fn held_payload(nonce: &str) -> Vec<u8> {
    format!("{HELD_PREFIX}{nonce}").into_bytes()
}

/// Whether a Ping payload answers the hold `nonce`.
pub fn is_held(payload: &[u8], nonce: &str) -> bool {
    payload.strip_prefix(HELD_PREFIX.as_bytes()) == Some(nonce.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_anything_else_is_refused() {
        for c in [
            Control::Hold { nonce: "n0nce".into(), to: None },
            Control::Hold {
                nonce: "n0nce".into(),
                to: Some(Destination { process_id: "p2".into(), session_id: "s".into(), token: "t".into() }),
            },
            Control::Moved { process_id: "p2".into(), session_id: "s".into(), token: "t".into() },
            Control::Resume,
        ] {
            let frame = c.frame().unwrap();
            assert_eq!(frame[0], 0x8B);
            assert_eq!(frame[1] as usize, frame.len() - 2);
            assert_eq!(Control::parse(&frame[2..]), Some(c));
        }
        for bad in [
            "",
            "hold",
            "hold n p",
            "hold n p s",
            "hold n p s t extra",
            "moved p s",
            "moved p s t extra",
            "resume now",
            "hello",
        ] {
            assert_eq!(Control::parse(bad.as_bytes()), None, "{bad:?}");
        }
        let long =
            Control::Moved { process_id: "p".repeat(100), session_id: "s".into(), token: "t".repeat(30) };
        assert_eq!(long.frame(), None);
        assert!(is_held(&held_payload("abc"), "abc"));
        assert!(!is_held(&held_payload("abc"), "abd"));
        assert!(!is_held(b"abc", "abc"));
    }
}
