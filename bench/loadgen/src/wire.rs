//! The few Colyseus frames a benchmark client reads and writes (0.18 wire).

use odeon_protocol::codec::Cursor;
pub use odeon_protocol::frame::{close, code};

/// The JOIN_ROOM acknowledgement a client sends back.
pub const JOIN_ACK: [u8; 1] = [code::JOIN_ROOM];

/// A Colyseus PING (0.17+): the server's connection answers it at once with the same frame,
/// without involving the room, so its round trip is the path's own latency.
pub const PING: [u8; 1] = [code::PING];

/// Length of a `move` frame from [`move_frame`].
pub const MOVE_FRAME_LEN: usize = 29;

/// `[ROOM_DATA]["move"]{x: f64, y: f64}` with a plain MessagePack map (big-endian floats).
pub fn move_frame(x: f64, y: f64) -> [u8; MOVE_FRAME_LEN] {
    let mut f = [0u8; MOVE_FRAME_LEN];
    f[..6].copy_from_slice(&[code::ROOM_DATA, 0xa4, b'm', b'o', b'v', b'e']);
    f[6..9].copy_from_slice(&[0x82, 0xa1, b'x']);
    f[9] = 0xcb;
    f[10..18].copy_from_slice(&x.to_be_bytes());
    f[18..20].copy_from_slice(&[0xa1, b'y']);
    f[20] = 0xcb;
    f[21..29].copy_from_slice(&y.to_be_bytes());
    f
}

/// The serializer id of a 0.18 JOIN_ROOM frame
/// (`[10][u8 len][token][u8 len][serializer][num reflection length][reflection]…`).
pub fn join_room_serializer(frame: &[u8]) -> Option<&str> {
    let (&first, rest) = frame.split_first()?;
    if first != code::JOIN_ROOM {
        return None;
    }
    let token_len = *rest.first()? as usize;
    let rest = rest.get(1 + token_len..)?;
    let ser_len = *rest.first()? as usize;
    std::str::from_utf8(rest.get(1..1 + ser_len)?).ok()
}

/// The reconnection token of a 0.18 JOIN_ROOM frame (the string right after the code).
pub fn join_room_token(frame: &[u8]) -> Option<&str> {
    let (&first, rest) = frame.split_first()?;
    if first != code::JOIN_ROOM {
        return None;
    }
    let len = *rest.first()? as usize;
    std::str::from_utf8(rest.get(1..1 + len)?).ok()
}

/// `[ERROR][num code][str message]` as text, for a join failure.
pub fn error_text(frame: &[u8]) -> String {
    let mut cur = Cursor::new(frame.get(1..).unwrap_or_default());
    match (cur.number(), cur.string()) {
        (Ok(code), Ok(msg)) => format!("server error {code}: {msg}"),
        _ => format!("server error frame {frame:02x?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_frame_is_plain_msgpack() {
        let f = move_frame(7.0, -1.5);
        assert_eq!(&f[..10], &[0x0d, 0xa4, b'm', b'o', b'v', b'e', 0x82, 0xa1, b'x', 0xcb]);
        assert_eq!(f64::from_be_bytes(f[10..18].try_into().unwrap()), 7.0);
        assert_eq!(&f[18..21], &[0xa1, b'y', 0xcb]);
        assert_eq!(f64::from_be_bytes(f[21..29].try_into().unwrap()), -1.5);
    }

    #[test]
    fn join_room_frames_name_their_serializer() {
        let mut f = vec![0x0a, 0x09];
        f.extend_from_slice(b"MhW2NG5DX");
        f.push(6);
        f.extend_from_slice(b"schema");
        f.extend_from_slice(&[0x01, 0x80]);
        assert_eq!(join_room_serializer(&f), Some("schema"));
        assert_eq!(join_room_token(&f), Some("MhW2NG5DX"));
        assert_eq!(join_room_token(&f[..5]), None);
        assert_eq!(join_room_serializer(&f[..5]), None);
        assert_eq!(join_room_serializer(&[0x0e]), None);
    }

    #[test]
    fn error_frames_read_as_text() {
        let mut f = vec![0x0b, 0xcd, 0x0c, 0x02, 0xb9];
        f.extend_from_slice(b"seat reservation expired.");
        assert_eq!(error_text(&f), "server error 524: seat reservation expired.");
        assert!(error_text(&[0x0b]).starts_with("server error frame"));
    }
}
