//! The room's connected clients and fan-out: every frame to a client goes through here.
//!
//! A frame is one `Bytes` shared by every recipient and written straight to each socket (see
//! `net::wire`). Until a client acks JOIN_ROOM (and, in a room with state, gets its full
//! state) its frames wait here, bounded in bytes. A client whose queue overflows is reported as
//! too slow and closed; the room carries on.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::net::wire::Wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientState {
    /// Connected, JOIN_ROOM sent or about to be; frames are held until the ack.
    Joining,
    /// Acked in a room with state: frames stay held until its full state is sent.
    AwaitingState,
    /// Frames flow.
    Joined,
}

pub(super) struct Client {
    pub conn_id: u64,
    pub wire: Arc<Wire>,
    pub token: String,
    pub skip_handshake: bool,
    pub state: ClientState,
    held: Vec<Bytes>,
    held_bytes: usize,
}

impl Client {
    pub(super) fn new(conn_id: u64, wire: Arc<Wire>, token: String, skip_handshake: bool) -> Self {
        Self {
            conn_id,
            wire,
            token,
            skip_handshake,
            state: ClientState::Joining,
            held: Vec::new(),
            held_bytes: 0,
        }
    }
}

pub(super) struct Clients {
    map: HashMap<String, Client>,
    /// Clients found too slow since the last `take_slow`.
    slow: Vec<String>,
    /// Bytes a client that has not finished joining may have held for it.
    hold_limit: usize,
}

impl Clients {
    pub(super) fn new(hold_limit: usize) -> Self {
        Self { map: HashMap::new(), slow: Vec::new(), hold_limit }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&self, session_id: &str) -> Option<&Client> {
        self.map.get(session_id)
    }

    pub(super) fn get_mut(&mut self, session_id: &str) -> Option<&mut Client> {
        self.map.get_mut(session_id)
    }

    pub(super) fn insert(&mut self, session_id: String, client: Client) {
        if let Some(old) = self.map.insert(session_id, client) {
            old.wire.close(Some(odeon_protocol::frame::close::WITH_ERROR), "");
        }
    }

    pub(super) fn remove(&mut self, session_id: &str) -> Option<Client> {
        self.map.remove(session_id)
    }

    /// Removes every client, closing each with `code`.
    pub(super) fn close_all(&mut self, code: u16) {
        for (_, c) in self.map.drain() {
            c.wire.close(Some(code), "");
        }
    }

    /// Writes a frame now; a client that cannot take it is too slow.
    fn write(slow: &mut Vec<String>, session_id: &str, c: &Client, frame: &Bytes) {
        if c.wire.send(frame).is_err() {
            slow.push(session_id.to_string());
        }
    }

    /// Sends to one client, holding the frame while it is still joining.
    pub(super) fn send_to(&mut self, session_id: &str, frame: &Bytes) {
        if let Some(c) = self.map.get_mut(session_id) {
            Self::push(&mut self.slow, self.hold_limit, session_id, c, frame);
        }
    }

    /// Sends a frame to the client now, whether or not it has finished joining (JOIN_ROOM).
    pub(super) fn send_now(&mut self, session_id: &str, frame: &Bytes) {
        if let Some(c) = self.map.get(session_id) {
            Self::write(&mut self.slow, session_id, c, frame);
        }
    }

    fn push(slow: &mut Vec<String>, hold_limit: usize, session_id: &str, c: &mut Client, frame: &Bytes) {
        match c.state {
            ClientState::Joined => Self::write(slow, session_id, c, frame),
            ClientState::Joining | ClientState::AwaitingState => {
                c.held_bytes += frame.len();
                if c.held_bytes > hold_limit {
                    c.wire.abort();
                    slow.push(session_id.to_string());
                } else {
                    c.held.push(frame.clone());
                }
            }
        }
    }

    /// Sends to every client not in `except`.
    pub(super) fn broadcast(&mut self, frame: &Bytes, except: &[String]) {
        for (sid, c) in self.map.iter_mut() {
            if !except.iter().any(|e| e == sid) {
                Self::push(&mut self.slow, self.hold_limit, sid, c, frame);
            }
        }
    }

    /// A state patch: only for clients that have their full state.
    pub(super) fn patch(&mut self, frame: &Bytes) {
        for (sid, c) in self.map.iter().filter(|(_, c)| c.state == ClientState::Joined) {
            Self::write(&mut self.slow, sid, c, frame);
        }
    }

    /// The full state, to every client waiting for it; they then get what was held for them.
    pub(super) fn full_state(&mut self, frame: &Bytes) {
        let waiting: Vec<String> = self
            .map
            .iter()
            .filter(|(_, c)| c.state == ClientState::AwaitingState)
            .map(|(s, _)| s.clone())
            .collect();
        for sid in waiting {
            self.send_now(&sid, frame);
            self.release(&sid);
        }
    }

    /// The client may receive frames now: send what was held for it.
    pub(super) fn release(&mut self, session_id: &str) {
        let Some(c) = self.map.get_mut(session_id) else { return };
        c.state = ClientState::Joined;
        c.held_bytes = 0;
        for frame in std::mem::take(&mut c.held) {
            if c.wire.send(&frame).is_err() {
                self.slow.push(session_id.to_string());
                break;
            }
        }
    }

    /// Clients found too slow since the last call; each is already being closed.
    pub(super) fn take_slow(&mut self) -> Vec<String> {
        let mut slow = std::mem::take(&mut self.slow);
        slow.sort();
        slow.dedup();
        slow
    }
}
