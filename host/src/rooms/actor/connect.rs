//! A WebSocket arriving for a seat: a reserved seat's first connection, a reconnection within
//! its window, or the proxy resuming a client whose room moved here (a drain).

use std::sync::Arc;

use odeon_protocol::abi::Event;
use odeon_protocol::frame::close;

use super::Room;
use crate::net::wire::Wire;
use crate::rooms::ConnectError;
use crate::rooms::clients::{Client, ClientState};

/// A connection asking for its seat (the fields of `RoomMsg::Connect`).
pub(super) struct Connect {
    pub session_id: String,
    pub reconnection_token: Option<String>,
    pub conn_id: u64,
    pub wire: Arc<Wire>,
    pub skip_handshake: bool,
    pub handover: bool,
    pub resume: bool,
}

impl Room {
    /// Seats the connection, or says why not.
    pub(super) fn connect(&mut self, c: Connect, events: &mut Vec<Event>) -> Result<(), ConnectError> {
        let Connect { session_id, reconnection_token, conn_id, wire, skip_handshake, handover, resume } = c;
        if resume {
            // The proxy carries a client of a room that moved here on, as it was: no JOIN_ROOM,
            // no full state, its input acks where they were; what the room sent it meanwhile
            // goes out first.
            let token = reconnection_token.as_deref().unwrap_or_default();
            return match self.clients.resume(&session_id, token, conn_id, wire) {
                true => Ok(()),
                false => Err(ConnectError::Expired),
            };
        }
        // A reconnection keeps its token and skips the join hook; a new seat gets both.
        let (token, event) = match reconnection_token {
            Some(token) => {
                let resuming = self
                    .clients
                    .get(&session_id)
                    .is_some_and(|c| c.state == ClientState::Resuming && c.token == token);
                match self.seats.take_reconnection(&session_id, &token) {
                    // A client of a room that moved here, back by itself rather than through
                    // the proxy: the guest counts it as joined.
                    _ if resuming => (token, None),
                    None => return Err(ConnectError::Expired),
                    Some(true) => (token, None),
                    Some(false) => (token, Some(Event::Reconnect { session_id: session_id.clone() })),
                }
            }
            None => {
                let Some(seat) = self.seats.take_reservation(&session_id) else {
                    return Err(ConnectError::Expired);
                };
                // A second seat for a session still connected replaces the first connection
                // only when the auth hook proved the session (the guest sees that one leave
                // before this one joins); otherwise the live one stays.
                if !seat.takeover && self.clients.get(&session_id).is_some() {
                    return Err(ConnectError::Expired);
                }
                if let Some(old) = self.clients.remove(&session_id) {
                    old.close(Some(close::WITH_ERROR), "");
                    events.push(Event::Leave { session_id: session_id.clone(), code: close::WITH_ERROR });
                }
                let join =
                    Event::Join { session_id: session_id.clone(), options: seat.options, auth: seat.auth };
                (crate::ids::generate(), Some(join))
            }
        };
        if let Some(inputs) = &mut self.inputs {
            // A new connection starts with a fresh input buffer, and acks from 0.
            inputs.reset(&session_id);
        }
        let client = Client::new(conn_id, wire, token, skip_handshake, handover);
        self.clients.insert(session_id.clone(), client);
        match event {
            Some(event) => events.push(event),
            None => {
                // No guest call to wait for: JOIN_ROOM goes out now.
                if let Some(frame) = self.join_frame(&session_id) {
                    self.clients.send_now(&session_id, &frame);
                }
            }
        }
        Ok(())
    }
}
