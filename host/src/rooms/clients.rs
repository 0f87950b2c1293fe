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
    /// A client of a room that moved here behind a proxy (a drain): it holds its place without
    /// a socket until the proxy resumes it, and its frames wait here, in order.
    Resuming,
}

pub(super) struct Client {
    pub conn_id: u64,
    /// The socket's outbound side; `None` while [`ClientState::Resuming`].
    pub wire: Option<Arc<Wire>>,
    pub token: String,
    pub skip_handshake: bool,
    pub state: ClientState,
    /// The proxy in front follows handover control frames (`odeon_protocol::handover`).
    pub handover: bool,
    /// A resuming client's deadline: past it, it counts as dropped.
    pub resume_by: Option<tokio::time::Instant>,
    held: Vec<OutFrame>,
    held_bytes: usize,
    /// Frames for the socket, written at the next flush.
    outbox: Vec<OutFrame>,
}

impl Client {
    pub(super) fn new(
        conn_id: u64,
        wire: Arc<Wire>,
        token: String,
        skip_handshake: bool,
        handover: bool,
    ) -> Self {
        Self {
            conn_id,
            wire: Some(wire),
            token,
            skip_handshake,
            state: ClientState::Joining,
            handover,
            resume_by: None,
            held: Vec::new(),
            held_bytes: 0,
            outbox: Vec::new(),
        }
    }

    /// A client of a room that moved here, until the proxy resumes it by `by`.
    pub(super) fn resuming(token: String, by: tokio::time::Instant) -> Self {
        Self {
            conn_id: 0,
            wire: None,
            token,
            skip_handshake: true,
            state: ClientState::Resuming,
            handover: true,
            resume_by: Some(by),
            held: Vec::new(),
            held_bytes: 0,
            outbox: Vec::new(),
        }
    }

    /// Closes the socket, if it has one.
    pub(super) fn close(&self, code: Option<u16>, reason: &str) {
        if let Some(w) = &self.wire {
            w.close(code, reason);
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
    /// The earliest deadline of a resuming client, kept so the room's loop does not scan its
    /// clients on every turn (it may be early: `overdue` recomputes it).
    resume_by: Option<tokio::time::Instant>,
}

impl Clients {
    pub(super) fn new(hold_limit: usize) -> Self {
        Self { map: HashMap::new(), slow: Vec::new(), hold_limit, pending: false, resume_by: None }
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
        if let Some(by) = client.resume_by {
            self.resume_by = Some(self.resume_by.map_or(by, |at| at.min(by)));
        }
        if let Some(old) = self.map.insert(session_id, client) {
            old.close(Some(odeon_protocol::frame::close::WITH_ERROR), "");
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
            c.close(code, "");
        }
    }

    /// Removes every client, closing each with `code` after what was sent to it.
    pub(super) fn close_all(&mut self, code: u16) {
        for (sid, mut c) in std::mem::take(&mut self.map) {
            Self::flush_one(&mut self.slow, &sid, &mut c);
            c.close(Some(code), "");
        }
    }

    /// Queues a frame for the socket, written at the next flush.
    fn write(pending: &mut bool, c: &mut Client, frame: OutFrame) {
        c.outbox.push(frame);
        *pending = true;
    }

    fn flush_one(slow: &mut Vec<String>, session_id: &str, c: &mut Client) {
        if let Some(wire) = &c.wire
            && !c.outbox.is_empty()
        {
            if wire.send_all(&c.outbox).is_err() {
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
            match c.state {
                ClientState::Resuming => {
                    let hold_limit = self.hold_limit;
                    Self::push(
                        &mut self.slow,
                        &mut self.pending,
                        hold_limit,
                        session_id,
                        c,
                        frame.clone().into(),
                    )
                }
                _ => Self::write(&mut self.pending, c, frame.clone().into()),
            }
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
            ClientState::Joining | ClientState::AwaitingState | ClientState::Resuming => {
                c.held_bytes += frame.len();
                if c.held_bytes > hold_limit {
                    if let Some(w) = &c.wire {
                        w.abort();
                    }
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
        for (sid, c) in self.map.iter_mut() {
            match c.state {
                ClientState::Joined => Self::write(&mut self.pending, c, frame(sid)),
                ClientState::Resuming => {
                    Self::push(&mut self.slow, &mut self.pending, self.hold_limit, sid, c, frame(sid))
                }
                ClientState::Joining | ClientState::AwaitingState => {}
            }
        }
    }

    /// The proxy resumed a client of a room that moved here: `wire` is its socket now, and
    /// what was held for it goes out first. False when `session_id` is not resuming with
    /// `token`.
    pub(super) fn resume(&mut self, session_id: &str, token: &str, conn_id: u64, wire: Arc<Wire>) -> bool {
        let Some(c) = self.map.get_mut(session_id) else { return false };
        if c.state != ClientState::Resuming || c.token != token {
            return false;
        }
        c.conn_id = conn_id;
        c.wire = Some(wire);
        let was = c.resume_by.take();
        Self::release_one(&mut self.pending, c);
        if was.is_some() && was == self.resume_by {
            self.resume_by = self.map.values().filter_map(|c| c.resume_by).min();
        }
        true
    }

    /// Resuming clients whose proxy did not come back by `now`.
    pub(super) fn overdue(&mut self, now: tokio::time::Instant) -> Vec<String> {
        if self.resume_by.is_none_or(|by| by > now) {
            return Vec::new();
        }
        self.resume_by = self.map.values().filter_map(|c| c.resume_by).filter(|by| *by > now).min();
        let late = |c: &Client| c.resume_by.is_some_and(|by| by <= now);
        self.map.iter().filter(|(_, c)| late(c)).map(|(sid, _)| sid.clone()).collect()
    }

    /// The earliest deadline of a resuming client.
    pub(super) fn next_resume_deadline(&self) -> Option<tokio::time::Instant> {
        self.resume_by
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::WireLimits;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::{Duration, Instant};

    #[tokio::test]
    async fn a_resuming_client_gets_what_the_room_sent_it_meanwhile_in_order_once_resumed() {
        let mut clients = Clients::new(1 << 20);
        let t0 = Instant::now();
        clients.insert("a".into(), Client::resuming("tok".into(), t0 + Duration::from_secs(10)));
        assert_eq!(clients.next_resume_deadline(), Some(t0 + Duration::from_secs(10)));
        // Broadcasts, patches and direct sends while it has no socket are held, in order.
        clients.broadcast(&Bytes::from_static(b"one"), &[]);
        clients.patch(|_| OutFrame::with_head(&[9], Bytes::from_static(b"two")));
        clients.send_to("a", &Bytes::from_static(b"three"));
        clients.send_now("a", &Bytes::from_static(b"four"));
        clients.flush();
        assert!(clients.take_slow().is_empty());
        assert!(clients.overdue(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(clients.overdue(t0 + Duration::from_secs(10)), vec!["a".to_string()]);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let wire = Arc::new(Wire::new(Arc::new(server), WireLimits::default()));
        // Only the session's own token resumes it.
        assert!(!clients.resume("a", "other", 7, wire.clone()));
        assert!(!clients.resume("b", "tok", 7, wire.clone()));
        assert!(clients.resume("a", "tok", 7, wire.clone()));
        assert!(!clients.resume("a", "tok", 8, wire.clone()), "resumed once");
        assert_eq!(clients.get("a").map(|c| (c.state, c.conn_id)), Some((ClientState::Joined, 7)));
        assert_eq!(clients.next_resume_deadline(), None);
        // Then a frame sent now goes after the held ones.
        clients.broadcast(&Bytes::from_static(b"five"), &[]);
        clients.flush();
        let want: &[&[u8]] = &[b"one", b"\x09two", b"three", b"four", b"five"];
        let expected: Vec<u8> = want.iter().flat_map(|m| [&[0x82, m.len() as u8][..], m].concat()).collect();
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_resuming_client_over_its_hold_bound_is_reported_slow() {
        let mut clients = Clients::new(8);
        clients.insert("a".into(), Client::resuming("tok".into(), Instant::now() + Duration::from_secs(10)));
        clients.broadcast(&Bytes::from_static(b"12345"), &[]);
        assert!(clients.take_slow().is_empty());
        clients.broadcast(&Bytes::from_static(b"67890"), &[]);
        assert_eq!(clients.take_slow(), vec!["a".to_string()]);
    }
}
