//! Colyseus WebSocket frames: codes, close codes, the client-frame parser and server-frame builders.
//!
//! Every frame is a binary WebSocket message whose first byte is the code.

use crate::abi::MessageType;
use crate::codec::{self, CodecError, Cursor};
use crate::profile::Profile;

/// Frame codes.
pub mod code {
    /// Server: room joined (token, serializer, handshake). Client: the join ack.
    pub const JOIN_ROOM: u8 = 10;
    /// Server: an error with a code and message.
    pub const ERROR: u8 = 11;
    /// Client: consented leave. Server: asks the client to leave.
    pub const LEAVE_ROOM: u8 = 12;
    /// A message with a MessagePack payload.
    pub const ROOM_DATA: u8 = 13;
    /// Server: full state.
    pub const ROOM_STATE: u8 = 14;
    /// Server: state patch.
    pub const ROOM_STATE_PATCH: u8 = 15;
    /// A message with raw bytes.
    pub const ROOM_DATA_BYTES: u8 = 17;
    /// Application ping (0.17+).
    pub const PING: u8 = 18;
    /// Client: one input of a room with inputs (0.18).
    pub const ROOM_INPUT_RELIABLE: u8 = 19;
    /// Client: the last few inputs, for unreliable transports (0.18).
    pub const ROOM_INPUT_UNRELIABLE: u8 = 20;
    /// Client: a request expecting one ROOM_RESPONSE (0.18).
    pub const ROOM_REQUEST: u8 = 21;
    /// Server: the answer to a ROOM_REQUEST (0.18).
    pub const ROOM_RESPONSE: u8 = 22;
}

/// ROOM_RESPONSE statuses.
pub mod status {
    /// The handler answered.
    pub const OK: u8 = 0;
    /// The handler refused on purpose, with a reason.
    pub const REJECTED: u8 = 1;
    /// The handler failed, or there is none: `{name, message, code?}`.
    pub const ERROR: u8 = 2;
}

/// WebSocket close codes Colyseus uses.
pub mod close {
    /// The client left, or the room disconnected it normally.
    pub const CONSENTED: u16 = 4000;
    /// The server is shutting down.
    pub const SERVER_SHUTDOWN: u16 = 4001;
    /// A protocol or room error.
    pub const WITH_ERROR: u16 = 4002;
    /// A reconnection was refused.
    pub const FAILED_TO_RECONNECT: u16 = 4003;
    /// The client may reconnect (devMode restart in 0.16).
    pub const MAY_TRY_RECONNECT: u16 = 4010;
    /// No status code was received (the close frame carried none).
    pub const NO_STATUS: u16 = 1005;
    /// The connection dropped without a close frame.
    pub const ABNORMAL: u16 = 1006;
}

/// A decoded client frame. Borrowed from the WebSocket message; nothing is copied.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame<'a> {
    /// `[10]`: the client processed JOIN_ROOM.
    JoinAck,
    /// `[12]`: consented leave.
    Leave,
    /// `[13]`: a message; `payload` is MessagePack (possibly msgpackr records), empty if none.
    Data {
        /// The message type.
        kind: MessageType,
        /// The raw payload.
        payload: &'a [u8],
    },
    /// `[17]`: a bytes message.
    Bytes {
        /// The message type.
        kind: MessageType,
        /// The raw bytes.
        payload: &'a [u8],
    },
    /// `[18]`.
    Ping,
    /// `[21]` (0.18): a request; `payload` is MessagePack, empty if none.
    Request {
        /// The client's request id, echoed in the response.
        id: f64,
        /// The request type (`"undefined"` when the client sent none).
        kind: MessageType,
        /// The raw payload.
        payload: &'a [u8],
    },
    /// `[19]` (0.18): one input, its delta (see `input::apply_delta`).
    Input {
        /// The delta.
        delta: &'a [u8],
    },
    /// `[20]` (0.18): the last inputs (see `input::unreliable_slots`).
    InputUnreliable {
        /// Base seq and slots.
        body: &'a [u8],
    },
    /// A code this server does not handle; Colyseus ignores these.
    Unknown(u8),
}

/// A client frame that cannot be processed; the connection is closed with 4002 and this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An empty binary message.
    #[error("empty frame")]
    Empty,
    /// A message frame without a readable type.
    #[error("room onMessage for \"undefined\" not registered.")]
    NoType,
    /// The type could not be read.
    #[error("malformed message type: {0}")]
    Type(CodecError),
}

/// Parses a client frame.
pub fn parse_client(bytes: &[u8], profile: Profile) -> Result<ClientFrame<'_>, FrameError> {
    let (&first, _) = bytes.split_first().ok_or(FrameError::Empty)?;
    // 0.18 reserves the top three bits for modifiers.
    let code = if profile.length_prefixed_join() { first & 0x1f } else { first };
    let mut cur = Cursor::new(&bytes[1..]);
    Ok(match code {
        code::JOIN_ROOM => ClientFrame::JoinAck,
        code::LEAVE_ROOM => ClientFrame::Leave,
        code::PING => ClientFrame::Ping,
        code::ROOM_DATA => {
            let kind = read_type(&mut cur)?;
            ClientFrame::Data { kind, payload: cur.rest() }
        }
        code::ROOM_DATA_BYTES => {
            let kind = read_type(&mut cur)?;
            ClientFrame::Bytes { kind, payload: cur.rest() }
        }
        code::ROOM_REQUEST if profile.has_requests() => {
            // A request without a readable id cannot be answered: ignored, as unknown codes are.
            let Ok(id) = cur.number() else { return Ok(ClientFrame::Unknown(code)) };
            let kind = if cur.peek().is_some() {
                read_type(&mut cur)?
            } else {
                MessageType::Str("undefined".into())
            };
            ClientFrame::Request { id, kind, payload: cur.rest() }
        }
        // The TIMED bit on an input announces a lag-compensation stamp, which is only sent to
        // rooms that advertise render or reckon time; none does, so such frames are not inputs.
        code::ROOM_INPUT_RELIABLE if profile.has_requests() && first & 0x80 == 0 => {
            ClientFrame::Input { delta: cur.rest() }
        }
        code::ROOM_INPUT_UNRELIABLE if profile.has_requests() && first & 0x80 == 0 => {
            ClientFrame::InputUnreliable { body: cur.rest() }
        }
        other => ClientFrame::Unknown(other),
    })
}

fn read_type(cur: &mut Cursor<'_>) -> Result<MessageType, FrameError> {
    let first = cur.peek().ok_or(FrameError::NoType)?;
    if codec::is_string(first) {
        let s = cur.string().map_err(FrameError::Type)?;
        Ok(MessageType::Str(s.to_string()))
    } else {
        // The JS decoder yields `undefined` for anything that is not a number.
        cur.number().map(MessageType::Num).map_err(|_| FrameError::NoType)
    }
}

/// Builds JOIN_ROOM for a serializer with the given handshake bytes.
pub fn join_room(profile: Profile, token: &str, serializer: &str, handshake: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + token.len() + serializer.len() + handshake.len());
    out.push(code::JOIN_ROOM);
    out.push(token.len() as u8);
    out.extend_from_slice(token.as_bytes());
    out.push(serializer.len() as u8);
    out.extend_from_slice(serializer.as_bytes());
    if profile.length_prefixed_join() {
        codec::encode_int(&mut out, handshake.len() as i64);
    }
    out.extend_from_slice(handshake);
    out
}

/// Builds ROOM_RESPONSE: `[22][id: number][status][payload]`, the payload left out when `None`.
pub fn room_response(id: f64, status: u8, payload: Option<&[u8]>) -> Vec<u8> {
    let payload = payload.unwrap_or_default();
    let mut out = Vec::with_capacity(12 + payload.len());
    out.push(code::ROOM_RESPONSE);
    codec::encode_number(&mut out, id);
    out.push(status);
    out.extend_from_slice(payload);
    out
}

/// The payload of an ERROR response: the MessagePack map `{name, message}`, plus `code` (an
/// encoded MessagePack value) when there is one.
pub fn request_error(name: &str, message: &str, code: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + name.len() + message.len() + code.map_or(0, <[u8]>::len));
    let write = |out: &mut Vec<u8>, s: &str| rmp::encode::write_str(out, s).expect("writing to a Vec");
    rmp::encode::write_map_len(&mut out, 2 + code.is_some() as u32).expect("writing to a Vec");
    write(&mut out, "name");
    write(&mut out, name);
    write(&mut out, "message");
    write(&mut out, message);
    if let Some(code) = code {
        write(&mut out, "code");
        out.extend_from_slice(code);
    }
    out
}

/// Builds ERROR.
pub fn error(code: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.push(code::ERROR);
    codec::encode_number(&mut out, code as f64);
    codec::encode_string(&mut out, message);
    out
}

/// Builds ROOM_DATA (`bytes == false`) or ROOM_DATA_BYTES.
pub fn room_data(kind: &MessageType, payload: Option<&[u8]>, bytes: bool) -> Vec<u8> {
    let payload = payload.unwrap_or_default();
    let mut out = Vec::with_capacity(16 + payload.len());
    out.push(if bytes { code::ROOM_DATA_BYTES } else { code::ROOM_DATA });
    match kind {
        MessageType::Str(s) => codec::encode_string(&mut out, s),
        MessageType::Num(n) => codec::encode_number(&mut out, *n),
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_room_layout_per_profile() {
        let f = join_room(Profile::V0_17, "abcdefghi", "none", &[]);
        assert_eq!(f.len(), 16);
        assert_eq!(&f[..2], &[0x0a, 0x09]);
        assert_eq!(&f[11..], b"\x04none");
        let f = join_room(Profile::V0_18, "abcdefghi", "none", &[]);
        assert_eq!(f.len(), 17);
        assert_eq!(f[16], 0);
    }

    #[test]
    fn error_frame_matches_the_reference() {
        let f = error(4321, "requested error");
        assert_eq!(&f[..5], &[0x0b, 0xcd, 0xe1, 0x10, 0xaf]);
        let f = error(524, "seat reservation expired.");
        assert_eq!(&f[..5], &[0x0b, 0xcd, 0x0c, 0x02, 0xb9]);
    }

    #[test]
    fn parses_client_frames() {
        let p = Profile::V0_18;
        assert_eq!(parse_client(&[10], p), Ok(ClientFrame::JoinAck));
        assert_eq!(parse_client(&[12], p), Ok(ClientFrame::Leave));
        assert_eq!(parse_client(&[18], p), Ok(ClientFrame::Ping));
        assert_eq!(parse_client(&[0x1e, 0xde, 0xad], p), Ok(ClientFrame::Unknown(0x1e)));
        assert_eq!(parse_client(&[13], p), Err(FrameError::NoType));
        assert_eq!(parse_client(&[], p), Err(FrameError::Empty));
        let f = [0x0d, 0xa4, b'e', b'c', b'h', b'o', 0x92, 0x01];
        assert_eq!(
            parse_client(&f, p),
            Ok(ClientFrame::Data { kind: MessageType::Str("echo".into()), payload: &[0x92, 0x01] })
        );
        assert_eq!(
            parse_client(&[0x11, 0x05, 1, 2], p),
            Ok(ClientFrame::Bytes { kind: MessageType::Num(5.0), payload: &[1, 2] })
        );
        assert_eq!(FrameError::NoType.to_string(), "room onMessage for \"undefined\" not registered.");
    }

    #[test]
    fn requests_and_inputs_parse_in_0_18_only() {
        let p = Profile::V0_18;
        let add = [0x15, 0x00, 0xa3, b'a', b'd', b'd', 0x80];
        assert_eq!(
            parse_client(&add, p),
            Ok(ClientFrame::Request { id: 0.0, kind: MessageType::Str("add".into()), payload: &[0x80] })
        );
        // Two-byte ids, numeric types, no type at all.
        assert_eq!(
            parse_client(&[0x15, 0xcc, 0xc8, 0x05], p),
            Ok(ClientFrame::Request { id: 200.0, kind: MessageType::Num(5.0), payload: &[] })
        );
        assert_eq!(
            parse_client(&[0x15, 0x07], p),
            Ok(ClientFrame::Request { id: 7.0, kind: MessageType::Str("undefined".into()), payload: &[] })
        );
        assert_eq!(parse_client(&[0x15], p), Ok(ClientFrame::Unknown(21)));
        assert_eq!(parse_client(&[0x13, 0x80, 0x01], p), Ok(ClientFrame::Input { delta: &[0x80, 0x01] }));
        assert_eq!(parse_client(&[0x13], p), Ok(ClientFrame::Input { delta: &[] }));
        assert_eq!(parse_client(&[0x93, 0x01], p), Ok(ClientFrame::Unknown(19)));
        assert_eq!(
            parse_client(&[0x14, 0x01, 0x00], p),
            Ok(ClientFrame::InputUnreliable { body: &[0x01, 0x00] })
        );
        // A 0.17 server ignores these codes.
        for f in [&add[..], &[0x13, 0x80, 0x01], &[0x14, 0x01]] {
            assert_eq!(parse_client(f, Profile::V0_17), Ok(ClientFrame::Unknown(f[0])));
        }
    }

    #[test]
    fn responses_match_the_reference_bytes() {
        // `add {a:2,b:3}` answered {sum: 5} (map16, as the reference writes it).
        let sum = [0xde, 0x00, 0x01, 0xa3, b's', b'u', b'm', 0x05];
        let mut want = vec![0x16, 0x00, 0x00];
        want.extend_from_slice(&sum);
        assert_eq!(room_response(0.0, status::OK, Some(&sum)), want);
        assert_eq!(room_response(5.0, status::OK, None), [0x16, 0x05, 0x00]);
        assert_eq!(room_response(300.0, status::REJECTED, None), [0x16, 0xcd, 0x2c, 0x01, 0x01]);
    }

    #[test]
    fn room_data_encodes_type_and_payload() {
        let f = room_data(&MessageType::Str("bytes".into()), Some(&[3, 2, 1]), true);
        assert_eq!(f, [0x11, 0xa5, b'b', b'y', b't', b'e', b's', 3, 2, 1]);
    }
}
