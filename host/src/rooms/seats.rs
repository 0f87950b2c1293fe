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
    /// A client of a room that moved here from another host: it comes back without the guest
    /// seeing a drop or a reconnection (the guest still counts it as joined).
    silent: bool,
}

/// Seats as they move with a room to another host.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SeatsImage {
    /// Reservations waiting for their socket: session, options, auth, takeover, ms left.
    pub reservations: Vec<(String, serde_bytes::ByteBuf, serde_bytes::ByteBuf, bool, u64)>,
    /// Reconnection windows: session, token, close code, ms left, silent.
    pub reconnections: Vec<(String, String, u16, u64, bool)>,
    /// Whether the room has had a seat.
    pub ever_seated: bool,
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

    /// Takes the seat held for `session_id` if `token` is its token: `Some(silent)`, where a
    /// silent seat is a moved room's client coming back (the guest sees no reconnection).
    pub(super) fn take_reconnection(&mut self, session_id: &str, token: &str) -> Option<bool> {
        if self.reconnections.get(session_id).is_some_and(|p| p.token == token) {
            self.reconnections.remove(session_id).map(|p| p.silent)
        } else {
            None
        }
    }

    /// The seats, for the room's move to another host; `connected` (session, token) are the
    /// clients connected here, which come back there on silent reconnection windows of `window`.
    pub(super) fn export(
        &self,
        connected: Vec<(String, String)>,
        window: Duration,
        now: Instant,
    ) -> SeatsImage {
        let left = |at: Instant| at.saturating_duration_since(now).as_millis() as u64;
        let mut reconnections: Vec<_> = self
            .reconnections
            .iter()
            .map(|(sid, p)| (sid.clone(), p.token.clone(), p.code, left(p.expires), p.silent))
            .collect();
        let moved = close_code_of_move();
        reconnections.extend(
            connected.into_iter().map(|(sid, token)| (sid, token, moved, window.as_millis() as u64, true)),
        );
        SeatsImage {
            reservations: self
                .reservations
                .iter()
                .map(|(sid, r)| {
                    let (options, auth) = (r.options.clone().into(), r.auth.clone().into());
                    (sid.clone(), options, auth, r.takeover, left(r.expires))
                })
                .collect(),
            reconnections,
            ever_seated: self.ever_seated,
        }
    }

    /// The seats of a room that moved here.
    pub(super) fn import(image: SeatsImage, timeout: Duration, now: Instant) -> Self {
        let at = |ms: u64| now + Duration::from_millis(ms);
        let mut seats = Self::new(timeout, now);
        seats.ever_seated = image.ever_seated;
        for (sid, options, auth, takeover, ms) in image.reservations {
            let reservation =
                Reservation { options: options.into_vec(), auth: auth.into_vec(), takeover, expires: at(ms) };
            seats.reservations.insert(sid, reservation);
        }
        for (sid, token, code, ms, silent) in image.reconnections {
            seats.reconnections.insert(sid, PendingReconnection { token, code, expires: at(ms), silent });
        }
        seats
    }

    /// A client dropped without consent: keep its token until the guest has seen the drop.
    pub(super) fn remember_drop(&mut self, session_id: String, token: String, code: u16) {
        self.dropped.insert(session_id, (token, code));
    }

    /// The guest keeps a dropped client's seat for `seconds`.
    pub(super) fn allow_reconnection(&mut self, session_id: &str, seconds: u32, now: Instant) {
        if let Some((token, code)) = self.dropped.remove(session_id) {
            let expires = now + Duration::from_secs(u64::from(seconds));
            let pending = PendingReconnection { token, code, expires, silent: false };
            self.reconnections.insert(session_id.to_string(), pending);
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

/// The close code a moved room's client was closed with: the SDKs reconnect after it.
fn close_code_of_move() -> u16 {
    odeon_protocol::frame::close::MAY_TRY_RECONNECT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_seats_keep_their_windows_and_connected_clients_come_back_silently() {
        let t0 = Instant::now();
        let mut seats = Seats::new(Duration::from_secs(15), t0);
        seats.reserve("r".into(), vec![1], vec![2], false, t0);
        seats.remember_drop("d".into(), "tok-d".into(), 1006);
        seats.allow_reconnection("d", 20, t0);
        let image = seats.export(
            vec![("c".into(), "tok-c".into())],
            Duration::from_secs(30),
            t0 + Duration::from_secs(5),
        );
        let t1 = t0 + Duration::from_secs(60);
        let mut moved = Seats::import(image, Duration::from_secs(15), t1);
        assert_eq!(moved.held(), 3);
        // The dropped client's window kept its 15 s left; the reservation its 10 s.
        assert_eq!(moved.take_reconnection("d", "wrong"), None);
        assert_eq!(
            moved.take_reconnection("c", "tok-c"),
            Some(true),
            "a connected client comes back silently"
        );
        assert_eq!(moved.session_of_token("tok-d").as_deref(), Some("d"));
        assert_eq!(moved.expire(t1 + Duration::from_secs(14)), vec![]);
        assert_eq!(moved.expire(t1 + Duration::from_secs(16)), vec![("d".to_string(), 1006)]);
        assert!(moved.take_reservation("r").is_none(), "the reservation expired after its 10 s");
    }
}
