//! Holding a moving room's clients behind odeon-proxy (`odeon_protocol::handover`): each proxy
//! is asked to stop the client's frames at a frame boundary and says when it has; the room runs
//! on meanwhile. Once every proxy answered (everything its client sent before is in the inbox),
//! its presence and listing answers are in, or [`HOLD_WAIT`] is up, the hold is ready: the
//! mover is told (`RoomMsg::PrepareMove`), and the room freezes when its `MoveOut` comes. A
//! hold whose move never comes is released after [`PREPARED_WAIT`]. Each proxy is told where
//! the room is going, when the mover said, so it opens its client's WebSocket on the new host
//! while the room still runs here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use odeon_protocol::handover::{Control, Destination};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Room;
use crate::rooms::clients::ClientState;

/// How long a room waits for the proxies in front of its clients to hold them (and for its
/// presence and listing answers) before it may freeze; a client whose proxy did not answer by
/// then is closed with 4010 like a direct one.
const HOLD_WAIT: Duration = Duration::from_secs(2);

/// How long a ready hold waits for its move before the clients' frames flow again.
const PREPARED_WAIT: Duration = Duration::from_secs(8);

/// The clients of a room about to move whose proxies were asked to hold them.
pub(super) struct Hold {
    /// Sessions (and connections) asked and not answered yet.
    waiting: HashMap<String, u64>,
    /// Sessions whose proxy holds them: they travel as handovers.
    held: HashSet<String>,
    /// Until the hold is ready: when the room stops waiting for the proxies; after: when the
    /// hold is released if no move came.
    until: Instant,
    ready: bool,
    /// Whom to tell once ready (the mover's `PrepareMove`).
    tell: Option<oneshot::Sender<()>>,
}

impl Hold {
    /// Whether `session_id`'s proxy holds it.
    pub(super) fn holds(&self, session_id: &str) -> bool {
        self.held.contains(session_id)
    }

    /// When the room next has something to do about the hold.
    pub(super) fn deadline(&self) -> Instant {
        self.until
    }
}

impl Room {
    /// A move to process `to` is being prepared: hold the clients now; `ready` is told once the
    /// room may freeze.
    pub(super) fn prepare_move(&mut self, ready: oneshot::Sender<()>, to: String) {
        match &mut self.hold {
            Some(h) if h.ready => {
                let _ = ready.send(());
            }
            Some(h) => h.tell = Some(ready),
            None => self.start_hold(Instant::now(), Some(ready), Some(to)),
        }
    }

    /// Moves the hold on: starts it for a `MoveOut` that came without a `PrepareMove`, marks it
    /// ready when it is, and releases a ready hold whose move did not come. True when the room
    /// may freeze now (a hold is ready).
    pub(super) fn hold_ready(&mut self, now: Instant) -> bool {
        if self.hold.is_none() {
            if self.move_out.is_none() {
                return false;
            }
            self.start_hold(now, None, None);
        }
        // Presence and listing answers still on their way would reach this host after the room
        // left: wait for them too.
        let quiet = self.services.in_flight() == 0;
        let h = self.hold.as_mut().expect("started above");
        if !h.ready && (h.waiting.is_empty() && quiet || now >= h.until) {
            h.ready = true;
            h.until = now + PREPARED_WAIT;
            if let Some(tell) = h.tell.take() {
                let _ = tell.send(());
            }
        }
        if h.ready && self.move_out.is_none() && now >= h.until {
            tracing::warn!(room = self.tag(), "no move came for the held clients; releasing them");
            let hold = self.hold.take().expect("checked above");
            self.release_hold(hold);
            return false;
        }
        h.ready
    }

    /// Asks the proxy in front of each joined client that has one to hold it, saying the room
    /// is going to process `to` when the mover named it.
    fn start_hold(&mut self, now: Instant, tell: Option<oneshot::Sender<()>>, to: Option<String>) {
        let nonce = crate::ids::generate();
        let mut waiting = HashMap::new();
        for (sid, c) in self.clients.sessions() {
            if let Some(wire) =
                c.wire.as_ref().filter(|w| c.handover && c.state == ClientState::Joined && w.is_open())
            {
                waiting.insert(sid.to_string(), c.conn_id);
                let to = to.as_ref().map(|process_id| Destination {
                    process_id: process_id.clone(),
                    session_id: sid.to_string(),
                    token: c.token.clone(),
                });
                // Ids too long for a control frame: a plain hold, resumed after the move.
                if !wire.send_control(&Control::Hold { nonce: nonce.clone(), to }) {
                    wire.send_control(&Control::Hold { nonce: nonce.clone(), to: None });
                }
            }
        }
        self.hold = Some(Hold { waiting, held: HashSet::new(), until: now + HOLD_WAIT, ready: false, tell });
    }

    /// A client's proxy answered the hold.
    pub(super) fn held(&mut self, session_id: &str, conn_id: u64) {
        if let Some(h) = &mut self.hold
            && h.waiting.get(session_id) == Some(&conn_id)
        {
            h.waiting.remove(session_id);
            h.held.insert(session_id.to_string());
        }
    }

    /// Ends a hold without a move: the held clients' frames flow to this host again.
    pub(super) fn release_hold(&mut self, hold: Hold) {
        self.clients.flush();
        for sid in &hold.held {
            if let Some(wire) = self.clients.get(sid).and_then(|c| c.wire.as_ref()) {
                let _ = wire.send_control(&Control::Resume);
            }
        }
    }
}
