//! The room's connected clients and fan-out: every frame to a client goes through here.
//!
//! A frame is one `Bytes` shared by every recipient. Frames for a client collect in its outbox
//! during a guest call's effects and go to its socket together, in one `writev` (see
//! `net::wire`), when the actor flushes. Until a client acks JOIN_ROOM (and, in a room with state, gets its full
//! state) its frames wait here, bounded in bytes. A client whose queue overflows is reported as
//! too slow and closed; the room carries on.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::net::wire::{OutFrame, Wire};

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
    held: Vec<OutFrame>,
    held_bytes: usize,
    /// Frames for the socket, written at the next flush.
    outbox: Vec<OutFrame>,
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
            outbox: Vec::new(),
        }
    }
}

pub(super) struct Clients {
    map: HashMap<String, Client>,
    /// Clients found too slow since the last `take_slow`.
    slow: Vec<String>,
    /// Bytes a client that has not finished joining may have held for it.
    hold_limit: usize,
    /// Some client's outbox is not empty.
    pending: bool,
}

impl Clients {
    pub(super) fn new(hold_limit: usize) -> Self {
        Self { map: HashMap::new(), slow: Vec::new(), hold_limit, pending: false }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every client, by session.
    pub(super) fn sessions(&self) -> impl Iterator<Item = (&str, &Client)> {
        self.map.iter().map(|(sid, c)| (sid.as_str(), c))
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

    /// Removes a client, after writing what its outbox holds.
    pub(super) fn remove(&mut self, session_id: &str) -> Option<Client> {
        let mut c = self.map.remove(session_id)?;
        Self::flush_one(&mut self.slow, session_id, &mut c);
        Some(c)
    }

    /// Closes one client's connection after what was sent to it; it stays among the clients
    /// until the caller removes it.
    pub(super) fn close(&mut self, session_id: &str, code: Option<u16>) {
        if let Some(c) = self.map.get_mut(session_id) {
            Self::flush_one(&mut self.slow, session_id, c);
            c.wire.close(code, "");
        }
    }

    /// Removes every client, closing each with `code` after what was sent to it.
    pub(super) fn close_all(&mut self, code: u16) {
        for (sid, mut c) in std::mem::take(&mut self.map) {
            Self::flush_one(&mut self.slow, &sid, &mut c);
            c.wire.close(Some(code), "");
        }
    }

    /// Queues a frame for the socket, written at the next flush.
    fn write(pending: &mut bool, c: &mut Client, frame: OutFrame) {
        c.outbox.push(frame);
        *pending = true;
    }

    fn flush_one(slow: &mut Vec<String>, session_id: &str, c: &mut Client) {
        if !c.outbox.is_empty() {
            if c.wire.send_all(&c.outbox).is_err() {
                slow.push(session_id.to_string());
            }
            c.outbox.clear();
        }
    }

    /// Writes every client's outbox to its socket, one `writev` per client; a client whose
    /// socket cannot take it is reported as too slow.
    pub(super) fn flush(&mut self) {
        if std::mem::take(&mut self.pending) {
            for (sid, c) in self.map.iter_mut() {
                Self::flush_one(&mut self.slow, sid, c);
            }
        }
    }

    /// Sends to one client, holding the frame while it is still joining.
    pub(super) fn send_to(&mut self, session_id: &str, frame: &Bytes) {
        if let Some(c) = self.map.get_mut(session_id) {
            Self::push(
                &mut self.slow,
                &mut self.pending,
                self.hold_limit,
                session_id,
                c,
                frame.clone().into(),
            );
        }
    }

    /// Sends a frame to the client whether or not it has finished joining (JOIN_ROOM).
    pub(super) fn send_now(&mut self, session_id: &str, frame: &Bytes) {
        if let Some(c) = self.map.get_mut(session_id) {
            Self::write(&mut self.pending, c, frame.clone().into());
        }
    }

    fn push(
        slow: &mut Vec<String>,
        pending: &mut bool,
        hold_limit: usize,
        session_id: &str,
        c: &mut Client,
        frame: OutFrame,
    ) {
        match c.state {
            ClientState::Joined => Self::write(pending, c, frame),
            ClientState::Joining | ClientState::AwaitingState => {
                c.held_bytes += frame.len();
                if c.held_bytes > hold_limit {
                    c.wire.abort();
                    slow.push(session_id.to_string());
                } else {
                    c.held.push(frame);
                }
            }
        }
    }

    /// Sends to every client not in `except`.
    pub(super) fn broadcast(&mut self, frame: &Bytes, except: &[String]) {
        for (sid, c) in self.map.iter_mut() {
            if !except.iter().any(|e| e == sid) {
                Self::push(&mut self.slow, &mut self.pending, self.hold_limit, sid, c, frame.clone().into());
            }
        }
    }

    /// A state patch, only for clients that have their full state: `frame(session)` is one
    /// shared body, with a TIMED head of that client's own in a room with inputs (a heartbeat
    /// when the body is empty).
    pub(super) fn patch(&mut self, frame: impl Fn(&str) -> OutFrame) {
        for (sid, c) in self.map.iter_mut().filter(|(_, c)| c.state == ClientState::Joined) {
            Self::write(&mut self.pending, c, frame(sid));
        }
    }

    /// The full state, to every client waiting for it; they then get what was held for them.
    pub(super) fn full_state(&mut self, frame: impl Fn(&str) -> OutFrame) {
        for (sid, c) in self.map.iter_mut().filter(|(_, c)| c.state == ClientState::AwaitingState) {
            Self::write(&mut self.pending, c, frame(sid));
            Self::release_one(&mut self.pending, c);
        }
    }

    /// The client may receive frames now: send what was held for it.
    pub(super) fn release(&mut self, session_id: &str) {
        if let Some(c) = self.map.get_mut(session_id) {
            Self::release_one(&mut self.pending, c);
        }
    }

    fn release_one(pending: &mut bool, c: &mut Client) {
        c.state = ClientState::Joined;
        c.held_bytes = 0;
        let held = std::mem::take(&mut c.held);
        c.outbox.extend(held);
        *pending = true;
    }

    /// Clients found too slow since the last call; each is already being closed.
    pub(super) fn take_slow(&mut self) -> Vec<String> {
        let mut slow = std::mem::take(&mut self.slow);
        slow.sort();
        slow.dedup();
        slow
    }
}
