//! WebSocket frame boundaries in a relayed byte stream, read from the frame headers alone (no
//! payload is copied or unmasked), and the host-to-proxy control frames
//! (`odeon_protocol::handover`) taken out of the host's stream.
//!
//! A header is byte 0 (FIN and opcode), byte 1 (MASK and a 7-bit length), 2 or 8 bytes of
//! extended length when that length is 126 or 127, and 4 mask bytes when MASK is set. The
//! trackers keep what they saw of a header cut by a read (at most 14 bytes) and how much of the
//! current payload is still to come, so any split of the stream reads the same.

use std::hash::{BuildHasher, Hasher, RandomState};

use odeon_protocol::handover::{CONTROL_FIRST_BYTE, Control};

/// The longest frame header.
const MAX_HEADER: usize = 14;
/// The longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Where a stream is in its frames.
#[derive(Debug, Default, Clone)]
pub struct Frames {
    /// The header read so far of the current frame (its first `have` bytes).
    head: [u8; MAX_HEADER],
    /// Header bytes read of the current frame; 0 at a boundary and within a payload.
    have: u8,
    /// Payload bytes of the current frame still to come.
    left: u64,
}

/// The length of a header whose byte 1 is `b1`.
#[inline]
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// The payload length of the whole header `head`.
#[inline]
fn payload_len(head: &[u8]) -> u64 {
    match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => u64::from_be_bytes(head[2..10].try_into().expect("eight bytes")),
        n => u64::from(n),
    }
}

impl Frames {
    /// Whether the bytes seen so far end at a frame boundary.
    #[inline]
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// Reads header bytes from the start of `data`: how many it took, and whether the header is
    /// now whole (then `left` is the frame's payload length).
    #[inline]
    fn header(&mut self, data: &[u8]) -> (usize, bool) {
        if self.have == 0 && data.len() >= 2 {
            // The common case: the whole header in one read, parsed where it lies.
            let need = header_len(data[1]);
            if data.len() >= need {
                self.head[..need].copy_from_slice(&data[..need]);
                self.left = payload_len(&data[..need]);
                return (need, true);
            }
        }
        let mut i = 0;
        while i < data.len() {
            self.head[usize::from(self.have)] = data[i];
            self.have += 1;
            i += 1;
            if self.have >= 2 {
                let need = header_len(self.head[1]);
                if usize::from(self.have) == need {
                    self.left = payload_len(&self.head[..need]);
                    self.have = 0;
                    return (i, true);
                }
            }
        }
        (i, false)
    }

    /// Reads `data` up to the first frame boundary at which `stop` holds for the next byte, and
    /// returns where that is (`data.len()` when there is none).
    #[inline]
    fn scan(&mut self, data: &[u8], stop: impl Fn(u8) -> bool) -> usize {
        let mut i = 0;
        loop {
            if self.have == 0 {
                let rest = (data.len() - i) as u64;
                if self.left >= rest {
                    self.left -= rest;
                    return data.len();
                }
                i += self.left as usize;
                self.left = 0;
                if stop(data[i]) {
                    return i;
                }
            }
            i += self.header(&data[i..]).0;
            if i == data.len() {
                return i;
            }
        }
    }

    /// Reads all of `data`.
    #[inline]
    pub fn advance(&mut self, data: &[u8]) {
        self.scan(data, |_| false);
    }

    /// Reads `data` up to its first frame boundary: where it is, if `data` has one (its end
    /// included). Past it nothing is read.
    pub fn until_boundary(&mut self, data: &[u8]) -> Option<usize> {
        if self.at_boundary() {
            return Some(0);
        }
        let at = self.scan(data, |_| true);
        (at < data.len() || self.at_boundary()).then_some(at)
    }
}

/// A piece of the host's stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// This many bytes of the frames for the client.
    Forward(usize),
    /// This many bytes of a control frame, and the control when they end it (and it parses).
    Control(usize, Option<Control>),
}

/// The host's stream: its frames, and the control frame being read, if one is.
#[derive(Debug, Default)]
pub struct HostFrames {
    frames: Frames,
    control: Reading,
}

#[derive(Debug, Default)]
enum Reading {
    /// Not in a control frame.
    #[default]
    Frames,
    /// In a control frame's header.
    Header,
    /// In a control frame's payload: what of it was read (nothing kept when it is too long),
    /// and its mask, if it has one.
    Payload { payload: Vec<u8>, keep: bool, mask: Option<[u8; 4]> },
}

impl HostFrames {
    /// The next piece of `data` (the rest of the host's stream so far): what to forward up to
    /// the next control frame, or what to take out of the stream.
    #[inline]
    pub fn next(&mut self, data: &[u8]) -> Piece {
        let mut i = 0;
        if let Reading::Frames = self.control {
            let n = self.frames.scan(data, |b| b == CONTROL_FIRST_BYTE);
            if n > 0 || data.is_empty() {
                return Piece::Forward(n);
            }
            self.control = Reading::Header;
        }
        if let Reading::Header = self.control {
            let (n, whole) = self.frames.header(data);
            i = n;
            if !whole {
                return Piece::Control(i, None);
            }
            let len = header_len(self.frames.head[1]);
            let mask = (self.frames.head[1] & 0x80 != 0)
                .then(|| self.frames.head[len - 4..len].try_into().expect("four bytes"));
            let keep = self.frames.left <= MAX_CONTROL_PAYLOAD as u64;
            let payload = Vec::with_capacity(if keep { self.frames.left as usize } else { 0 });
            self.control = Reading::Payload { payload, keep, mask };
        }
        let Reading::Payload { payload, keep, .. } = &mut self.control else {
            unreachable!("a control frame's payload follows its header")
        };
        let take = self.frames.left.min((data.len() - i) as u64) as usize;
        if *keep {
            payload.extend_from_slice(&data[i..i + take]);
        }
        self.frames.left -= take as u64;
        i += take;
        if self.frames.left > 0 {
            return Piece::Control(i, None);
        }
        let Reading::Payload { mut payload, keep, mask } = std::mem::take(&mut self.control) else {
            unreachable!("read above")
        };
        if !keep {
            return Piece::Control(i, None);
        }
        if let Some(mask) = mask {
            for (j, b) in payload.iter_mut().enumerate() {
                *b ^= mask[j % 4];
            }
        }
        Piece::Control(i, Control::parse(&payload))
    }
}

/// A masked Ping frame (client to server) with `payload` (at most 125 bytes).
pub fn masked_ping(payload: &[u8]) -> Vec<u8> {
    debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
    let mask: [u8; 4] = (random_u64() as u32).to_be_bytes();
    let mut frame = Vec::with_capacity(6 + payload.len());
    frame.extend_from_slice(&[0x89, 0x80 | payload.len() as u8]);
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(j, b)| b ^ mask[j % 4]));
    frame
}

/// An unmasked Close frame (server to client) with `code` and a short `reason`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(MAX_CONTROL_PAYLOAD - 2)];
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.extend_from_slice(&[0x88, 2 + reason.len() as u8]);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

/// 64 unpredictable-enough bits (masks and WebSocket keys, not secrets): std's per-process
/// random hash keys, which differ for every `RandomState`.
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame: `first` byte, payload of `len` bytes (pattern), masked or not.
    pub(crate) fn frame(first: u8, len: usize, masked: bool, seed: u8) -> Vec<u8> {
        let mut f = vec![first];
        let m = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => f.push(m | len as u8),
            126..=0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(m | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[0x8B, 0x82, 126, 127]);
        }
        // Payload bytes that look like headers, control first bytes included.
        f.extend((0..len).map(|i| [0x8B, 126, 127, seed, 0x82][i % 5]));
        f
    }

    /// The same stream read in pieces of these sizes (cycled).
    fn split(stream: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (mut at, mut k) = (0, 0);
        while at < stream.len() {
            let n = sizes[k % sizes.len()].min(stream.len() - at);
            out.push(stream[at..at + n].to_vec());
            at += n;
            k += 1;
        }
        out
    }

    #[test]
    fn boundaries_are_found_across_any_split() {
        let frames = [
            frame(0x82, 3, true, 1),
            frame(0x81, 0, true, 2),
            frame(0x02, 200, true, 3),
            frame(0x80, 70_000, true, 4),
            frame(0x89, 125, true, 5),
            frame(0x82, 126, false, 6),
        ];
        let mut ends = Vec::new();
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend_from_slice(f);
            ends.push(stream.len());
        }
        for sizes in [&[1usize][..], &[2, 3, 5], &[7, 1, 13], &[16 * 1024], &[100_000]] {
            let mut t = Frames::default();
            let mut at = 0;
            let mut seen = Vec::new();
            for piece in split(&stream, sizes) {
                // Each boundary inside this piece, then the rest.
                let mut off = 0;
                loop {
                    let mut probe = t.clone();
                    match probe.until_boundary(&piece[off..]) {
                        Some(k) => {
                            let b = at + off + k;
                            if seen.last() != Some(&b) {
                                seen.push(b);
                            }
                            t = probe;
                            if off + k == piece.len() {
                                break;
                            }
                            // Step over one byte so the next boundary is a new one.
                            t.advance(&piece[off + k..off + k + 1]);
                            off += k + 1;
                        }
                        None => {
                            t.advance(&piece[off..]);
                            break;
                        }
                    }
                }
                at += piece.len();
            }
            let mut expected = vec![0];
            expected.extend_from_slice(&ends);
            assert_eq!(seen, expected, "{sizes:?}");
            assert!(t.at_boundary());
        }
    }

    #[test]
    fn control_frames_are_taken_out_across_any_split() {
        let hold = Control::Hold { nonce: "n1".into(), to: None };
        let moved = Control::Moved { process_id: "p2".into(), session_id: "s".into(), token: "t".into() };
        let mut masked_resume = vec![CONTROL_FIRST_BYTE, 0x80 | 6, 1, 2, 3, 4];
        masked_resume.extend(b"resume".iter().enumerate().map(|(j, b)| b ^ [1, 2, 3, 4][j % 4]));
        let mut stream = Vec::new();
        let mut forwarded = Vec::new();
        let mut push = |s: &mut Vec<u8>, f: Vec<u8>, fwd: bool| {
            if fwd {
                forwarded.extend_from_slice(&f);
            }
            s.extend_from_slice(&f);
        };
        push(&mut stream, hold.frame().unwrap(), false);
        push(&mut stream, frame(0x82, 300, false, 9), true);
        push(&mut stream, frame(0x82, 5, false, 8), true);
        push(&mut stream, frame(0x02, 70_000, false, 7), true);
        push(&mut stream, Control::Resume.frame().unwrap(), false);
        push(&mut stream, frame(0x80, 1, false, 6), true);
        push(&mut stream, masked_resume, false);
        push(&mut stream, vec![CONTROL_FIRST_BYTE, 5, b'h', b'e', b'l', b'l', b'o'], false);
        push(&mut stream, frame(CONTROL_FIRST_BYTE, 300, false, 5), false);
        push(&mut stream, frame(0x89, 0, false, 4), true);
        push(&mut stream, moved.frame().unwrap(), false);
        push(&mut stream, frame(0x88, 2, false, 3), true);
        for sizes in [&[1usize][..], &[2, 3, 5], &[4096], &[16 * 1024], &[1 << 20]] {
            let mut h = HostFrames::default();
            let (mut out, mut controls) = (Vec::new(), Vec::new());
            for piece in split(&stream, sizes) {
                let mut off = 0;
                while off < piece.len() {
                    match h.next(&piece[off..]) {
                        Piece::Forward(n) => {
                            out.extend_from_slice(&piece[off..off + n]);
                            off += n;
                        }
                        Piece::Control(n, c) => {
                            controls.extend(c);
                            off += n;
                        }
                    }
                    assert!(off <= piece.len());
                }
            }
            assert!(
                out == forwarded,
                "{sizes:?}: {} bytes forwarded, {} expected",
                out.len(),
                forwarded.len()
            );
            assert_eq!(
                controls,
                [hold.clone(), Control::Resume, Control::Resume, moved.clone()],
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn pings_are_masked_and_closes_are_not() {
        let ping = masked_ping(b"odeon-held abc");
        assert_eq!(ping[..2], [0x89, 0x80 | 14]);
        let unmasked: Vec<u8> = ping[6..].iter().enumerate().map(|(j, b)| b ^ ping[2 + j % 4]).collect();
        assert_eq!(unmasked, b"odeon-held abc");
        assert_eq!(close_frame(4010, "moved"), [0x88, 7, 0x0f, 0xaa, b'm', b'o', b'v', b'e', b'd']);
        assert_ne!(random_u64(), random_u64());
    }
}
