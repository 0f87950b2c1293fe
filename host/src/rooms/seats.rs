//! Who may take a seat: reservations waiting for their WebSocket, seats held for a reconnection,
//! and dropped clients whose fate the guest has not decided yet.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A seat reserved by matchmaking.
pub(super) struct Reservation {
    pub options: Vec<u8>,
    pub auth: Vec<u8>,
    /// The auth hook proved the session: a live connection of it is replaced.
    pub takeover: bool,
    expires: Instant,
}

struct PendingReconnection {
    token: String,
    code: u16,
    expires: Instant,
}

pub(super) struct Seats {
    timeout: Duration,
    reservations: HashMap<String, Reservation>,
    reconnections: HashMap<String, PendingReconnection>,
    /// Dropped clients' tokens and close codes, until the guest has seen the drop.
    dropped: HashMap<String, (String, u16)>,
    /// Until the first reservation, the room waits for it until `first_seat_by`, as Colyseus
    /// does, whatever else happens in it.
    ever_seated: bool,
    first_seat_by: Instant,
}

impl Seats {
    pub(super) fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            timeout,
            reservations: HashMap::new(),
            reconnections: HashMap::new(),
            dropped: HashMap::new(),
            ever_seated: false,
            first_seat_by: now + timeout,
        }
    }

    /// Seats taken or promised, not counting connected clients. A dropped client whose fate the
    /// guest has not decided yet still holds its seat: a room whose last client was just kicked
    /// must not be disposed before the guest can keep that seat for a reconnection.
    pub(super) fn held(&self) -> usize {
        self.reservations.len() + self.reconnections.len() + self.dropped.len()
    }

    pub(super) fn reserve(
        &mut self,
        session_id: String,
        options: Vec<u8>,
        auth: Vec<u8>,
        takeover: bool,
        now: Instant,
    ) {
        let expires = now + self.timeout;
        self.reservations.insert(session_id, Reservation { options, auth, takeover, expires });
        self.ever_seated = true;
    }

    pub(super) fn take_reservation(&mut self, session_id: &str) -> Option<Reservation> {
        self.reservations.remove(session_id)
    }

    /// The session a reconnection token belongs to, while its window is open.
    pub(super) fn session_of_token(&self, token: &str) -> Option<String> {
        self.reconnections.iter().find(|(_, p)| p.token == token).map(|(sid, _)| sid.clone())
    }

    /// Takes the seat held for `session_id` if `token` is its token.
    pub(super) fn take_reconnection(&mut self, session_id: &str, token: &str) -> bool {
        if self.reconnections.get(session_id).is_some_and(|p| p.token == token) {
            self.reconnections.remove(session_id);
            true
        } else {
            false
        }
    }

    /// A client dropped without consent: keep its token until the guest has seen the drop.
    pub(super) fn remember_drop(&mut self, session_id: String, token: String, code: u16) {
        self.dropped.insert(session_id, (token, code));
    }

    /// The guest keeps a dropped client's seat for `seconds`.
    pub(super) fn allow_reconnection(&mut self, session_id: &str, seconds: u32, now: Instant) {
        if let Some((token, code)) = self.dropped.remove(session_id) {
            let expires = now + Duration::from_secs(u64::from(seconds));
            self.reconnections.insert(session_id.to_string(), PendingReconnection { token, code, expires });
        }
    }

    /// The guest saw the drop and kept no seat.
    pub(super) fn forget_drop(&mut self, session_id: &str) {
        self.dropped.remove(session_id);
    }

    /// Expires reservations and reconnection windows; returns the sessions whose window closed,
    /// with the code they dropped with.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<(String, u16)> {
        self.reservations.retain(|_, r| r.expires > now);
        let expired: Vec<_> = self
            .reconnections
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(s, p)| (s.clone(), p.code))
            .collect();
        for (sid, _) in &expired {
            self.reconnections.remove(sid);
        }
        expired
    }

    /// Whether the room has had a seat, or its first seat is overdue.
    pub(super) fn past_first_seat(&self, now: Instant) -> bool {
        self.ever_seated || now >= self.first_seat_by
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let seats = self.reservations.values().map(|r| r.expires).min();
        let reconnects = self.reconnections.values().map(|r| r.expires).min();
        let first_seat = (!self.ever_seated).then_some(self.first_seat_by);
        [seats, reconnects, first_seat].into_iter().flatten().min()
    }
}
